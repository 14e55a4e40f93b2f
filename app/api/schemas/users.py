"""Schemas of the user endpoints (admins) and of /me."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import Role


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.Email(required=True)
    name = fields.String(load_default="")
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    is_active = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class UserCreateSchema(UserSchema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=10))
