"""Marshmallow schemas of the API (they also generate the OpenAPI document), one module a domain.

audience.py, campaigns.py, sending.py, stats.py and users.py follow the blueprints of the same
names; this module holds the one error shape they all answer with.
"""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
