"""Schemas of the campaign endpoints: campaigns, their variants and links, previews, test sends."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.emails.content import BODY_FORMATS, LANGUAGES, LAYOUTS


class ProblemSchema(Schema):
    field = fields.String(metadata={"description": 'e.g. "en.body", "from_email"'})
    line = fields.Integer(allow_none=True, metadata={"description": "1-based line, if known"})
    message = fields.String()


class VariantSchema(Schema):
    language = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    subject = fields.String(load_default="")
    preheader = fields.String(load_default="")
    body = fields.String(load_default="")
    body_format = fields.String(load_default="markdown", validate=validate.OneOf(BODY_FORMATS))
    # "fields" would shadow Schema.fields: the attribute has another name, the JSON key not.
    layout_fields = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "The layout's own fields, e.g. headline, cta_label, cta_url."},
    )


class LinkSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.String(dump_only=True)
    position = fields.Integer(dump_only=True)
    is_petition = fields.Boolean(required=True)


class CampaignSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(max=200))
    layout = fields.String(required=True, validate=validate.OneOf(list(LAYOUTS)))
    status = fields.String(dump_only=True)
    status_reason = fields.String(dump_only=True)
    from_email = fields.Email(required=True, metadata={"description": "An allowed sender."})
    from_name = fields.String(dump_only=True)
    reply_to = fields.String(load_default="")
    default_language = fields.String(load_default="en", validate=validate.OneOf(LANGUAGES))
    list_ids = fields.List(fields.Integer(), load_default=list)
    segment_id = fields.Integer(allow_none=True, load_default=None)
    variants = fields.List(fields.Nested(VariantSchema), required=True)
    links = fields.List(fields.Nested(LinkSchema), dump_only=True)
    send_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class CampaignPatchSchema(CampaignSchema):
    """The same fields, all optional (used with partial=True)."""


class CampaignSummarySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    layout = fields.String()
    status = fields.String()
    default_language = fields.String()
    languages = fields.List(fields.String())
    updated_at = fields.DateTime()


class PreviewRequestSchema(Schema):
    member_id = fields.Integer(
        allow_none=True, load_default=None, metadata={"description": "None: a sample member"}
    )
    language = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.OneOf(LANGUAGES),
        metadata={"description": "For a sample member; a member gets their own language."},
    )


class PreviewSchema(Schema):
    language = fields.String()
    subject = fields.String()
    html = fields.String()
    text = fields.String()
    member_id = fields.Integer(allow_none=True)
    notes = fields.List(fields.String())


class TestSendSchema(Schema):
    emails = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=5))
    language = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(LANGUAGES))
    member_id = fields.Integer(allow_none=True, load_default=None)


class TestSendResultSchema(Schema):
    queued_to = fields.List(fields.String())
