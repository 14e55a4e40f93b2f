"""Schemas of the petitions endpoints, in the shape and field names of OSDI 1.2.

OSDI (Open Supporter Data Interface, which Action Network implements) names a petition's
fields `name` (administrative), `title`, `description`, `petition_text`, `target` (a list of
{name}), `browser_url` and `total_signatures`, and a signature's `person` (given_name,
family_name, email_addresses, postal_addresses), `comments`, `action_date` and
`referrer_data`. Rallypoint's own additions carry a `rallypoint:` prefix-free name that OSDI
does not use (`slug`, `status`, `goal`, `languages`, `source`, `local`, `flagged`).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.services.actions import petitions

PER_PAGE_MAX = 100


class TargetSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=500))


class PetitionSchema(Schema):
    identifiers = fields.List(fields.String(), dump_only=True)
    origin_system = fields.String(dump_only=True)
    created_date = fields.DateTime(dump_only=True)
    modified_date = fields.DateTime(dump_only=True)
    name = fields.String(
        validate=validate.Length(min=1, max=petitions.LIMITS["title"]),
        metadata={"description": "For organizers (OSDI: administrative name)."},
    )
    title = fields.String(
        validate=validate.Length(max=petitions.LIMITS["title"]),
        metadata={"description": "The public title (of the default language's version)."},
    )
    description = fields.String(
        validate=validate.Length(max=petitions.LIMITS["description"]),
        metadata={"description": "Markdown; the page shows it sanitised."},
    )
    summary = fields.String(
        validate=validate.Length(max=petitions.LIMITS["headline"]),
        metadata={"description": "The headline."},
    )
    petition_text = fields.String(validate=validate.Length(max=petitions.LIMITS["petition_text"]))
    target = fields.List(fields.Nested(TargetSchema), validate=validate.Length(max=10))
    browser_url = fields.String(dump_only=True)
    total_signatures = fields.Integer(dump_only=True)
    slug = fields.String(validate=validate.Length(max=80))
    status = fields.String(validate=validate.OneOf(["draft", "open", "closed"]))
    goal = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=petitions.MAX_GOAL))
    default_language = fields.String(validate=validate.OneOf(petitions.LANGUAGES))
    languages = fields.List(fields.String(), dump_only=True)
    _links = fields.Dict(dump_only=True, data_key="_links")


class PetitionCreateSchema(PetitionSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=PER_PAGE_MAX))


class PetitionPageSchema(Schema):
    total_pages = fields.Integer()
    per_page = fields.Integer()
    page = fields.Integer()
    total_records = fields.Integer()
    _embedded = fields.Dict(data_key="_embedded")


class EmailAddressSchema(Schema):
    address = fields.String(required=True, validate=validate.Length(min=3, max=254))
    primary = fields.Boolean(load_default=True)


class PostalAddressSchema(Schema):
    postal_code = fields.String(load_default="", validate=validate.Length(max=20))
    locality = fields.String(load_default="", validate=validate.Length(max=100))
    primary = fields.Boolean(load_default=True)


class PersonSchema(Schema):
    given_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    family_name = fields.String(load_default="", validate=validate.Length(max=100))
    email_addresses = fields.List(
        fields.Nested(EmailAddressSchema), required=True, validate=validate.Length(min=1, max=5)
    )
    postal_addresses = fields.List(
        fields.Nested(PostalAddressSchema), load_default=list, validate=validate.Length(max=5)
    )
    languages_spoken = fields.List(fields.String(), load_default=list)


class ReferrerDataSchema(Schema):
    source = fields.String(load_default="", validate=validate.Length(max=100))
    referrer = fields.String(
        load_default="",
        validate=validate.Length(max=16),
        metadata={"description": "A signer's referral code: the signature credits them."},
    )
    website = fields.String(load_default="", validate=validate.Length(max=1000))


class SignatureSchema(Schema):
    identifiers = fields.List(fields.String(), dump_only=True)
    origin_system = fields.String(dump_only=True)
    created_date = fields.DateTime(dump_only=True)
    modified_date = fields.DateTime(dump_only=True)
    action_date = fields.DateTime(dump_only=True)
    comments = fields.String(load_default="", validate=validate.Length(max=1000))
    person = fields.Nested(PersonSchema, required=True)
    referrer_data = fields.Nested(ReferrerDataSchema, load_default=dict)
    consent = fields.Boolean(
        load_default=False,
        metadata={
            "description": "The person ticked the consent box: subscribe them to the "
            "petition's lists with express consent (never a suppressed or unsubscribed one)."
        },
    )
    local = fields.String(load_default="", validate=validate.Length(max=100))
    phone = fields.String(load_default="", validate=validate.Length(max=40))
    source = fields.String(dump_only=True)
    campaign_id = fields.Integer(dump_only=True, allow_none=True)
    flagged = fields.Boolean(dump_only=True)
    _links = fields.Dict(dump_only=True, data_key="_links")
