"""Marshmallow schemas shared by the API blueprints (they also generate the OpenAPI document)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import Role


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


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.Email(required=True)
    name = fields.String(load_default="")
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    is_active = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class UserCreateSchema(UserSchema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=10))
