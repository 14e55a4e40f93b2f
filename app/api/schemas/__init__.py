"""Marshmallow schemas of the API (they also generate the OpenAPI document), one module a domain.

audience.py, campaigns.py, sending.py, stats.py and users.py follow the blueprints of the same
names; this module holds the one error shape they all answer with.
"""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorBodySchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "Stable and machine-readable, e.g. not_found."}
    )
    message = fields.String(required=True, metadata={"description": "For people."})
    details = fields.Raw(
        required=True,
        metadata={"description": "Field errors by location and field, or {} when none."},
    )


class ErrorSchema(Schema):
    """The body of every API error (api.error_response)."""

    error = fields.Nested(ErrorBodySchema, required=True)


# A CSV download's body in the OpenAPI document (the view returns the streamed file).
CSV_BODY = {"type": "string", "description": "CSV, UTF-8"}
