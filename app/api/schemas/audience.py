"""Schemas of the audience endpoints: lists, members, consent, suppressions, segments, imports."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import ConsentBasis, SubscriptionStatus
from app.services.audience import imports, lists

PER_PAGE_MAX = 200

# ---- schemas ---------------------------------------------------------------------------------


class CountsSchema(Schema):
    subscribed = fields.Integer()
    unsubscribed = fields.Integer()
    pending = fields.Integer()


class ListSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    slug = fields.String(dump_only=True)
    description = fields.String(load_default="")
    is_public = fields.Boolean(load_default=False)
    opt_in = fields.String(load_default="single", validate=validate.OneOf(lists.OPT_INS))
    created_at = fields.DateTime(dump_only=True)
    counts = fields.Nested(CountsSchema, dump_only=True)
    consent_expiring_soon = fields.Integer(dump_only=True)


class ListUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String()
    is_public = fields.Boolean()
    opt_in = fields.String(validate=validate.OneOf(lists.OPT_INS))


class ConsentStateSchema(Schema):
    basis = fields.String(allow_none=True)
    source = fields.String()
    given_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    state = fields.String(metadata={"description": "valid, expiring, expired or none"})
    can_send = fields.Boolean()


class SubscriptionSchema(Schema):
    list_id = fields.Integer()
    list_name = fields.String()
    status = fields.String()
    source = fields.String()
    subscribed_at = fields.DateTime(allow_none=True)
    unsubscribed_at = fields.DateTime(allow_none=True)


class MemberSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    language = fields.String()
    postal_code = fields.String()
    local = fields.String()
    attributes = fields.Dict(keys=fields.String(), values=fields.String())
    membership_ended_at = fields.DateTime(allow_none=True)
    consent = fields.Nested(ConsentStateSchema)
    suppressed = fields.Boolean()
    subscriptions = fields.List(fields.Nested(SubscriptionSchema))
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class MemberFieldsSchema(Schema):
    first_name = fields.String(validate=validate.Length(max=200))
    last_name = fields.String(validate=validate.Length(max=200))
    language = fields.String(validate=validate.OneOf(["en", "fr"]))
    postal_code = fields.String(validate=validate.Length(max=20))
    local = fields.String(validate=validate.Length(max=100))
    attributes = fields.Dict(keys=fields.String(), values=fields.String())


class MemberCreateSchema(MemberFieldsSchema):
    email = fields.String(required=True, validate=validate.Length(max=254))
    list_ids = fields.List(
        fields.Integer(),
        load_default=list,
        metadata={"description": "Lists to subscribe to (double opt-in lists send a confirmation)"},
    )


class MemberUpdateSchema(MemberFieldsSchema):
    membership_ended_at = fields.DateTime(allow_none=True)


class ConsentInputSchema(Schema):
    basis = fields.String(
        required=True, validate=validate.OneOf([b.value for b in ConsentBasis] + ["none"])
    )
    source = fields.String(load_default="", validate=validate.Length(max=200))
    given_at = fields.DateTime(load_default=None, allow_none=True)
    expires_at = fields.DateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "Only for implied_other consent"},
    )


class UnsubscribeSchema(Schema):
    list_ids = fields.List(
        fields.Integer(),
        allow_none=True,
        load_default=None,
        metadata={"description": "Lists to leave; null for all of them"},
    )


class SubscribeSchema(MemberFieldsSchema):
    email = fields.String(required=True, validate=validate.Length(max=254))


class OutcomeSchema(Schema):
    member_id = fields.Integer()
    outcome = fields.String(
        metadata={"description": "subscribed, pending (confirmation sent), already or blocked"}
    )


class ChangedSchema(Schema):
    changed = fields.Integer()


class PageArgsSchema(Schema):
    q = fields.String(load_default="", metadata={"description": "Email (start) or name"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=PER_PAGE_MAX))
    list_id = fields.Integer(load_default=None)
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in SubscriptionStatus])
    )


class MemberPageSchema(Schema):
    items = fields.List(fields.Nested(MemberSchema))
    page = fields.Integer()
    per_page = fields.Integer()
    has_next = fields.Boolean()


class SuppressionSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(max=254))
    reason = fields.String(dump_only=True)
    detail = fields.String(load_default="", validate=validate.Length(max=500))
    created_at = fields.DateTime(dump_only=True)


class SuppressionArgsSchema(Schema):
    q = fields.String(load_default="")
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))


class RuleSchema(Schema):
    field = fields.String(required=True)
    op = fields.String(required=True)
    value = fields.Raw()
    key = fields.String()


class SegmentSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True)
    description = fields.String(load_default="")
    match = fields.String(load_default="all")
    rules = fields.List(fields.Raw(), load_default=list)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class SegmentUpdateSchema(Schema):
    name = fields.String()
    description = fields.String()
    match = fields.String()
    rules = fields.List(fields.Raw())


class SegmentCountInputSchema(Schema):
    match = fields.String(load_default="all")
    rules = fields.List(fields.Raw(), load_default=list)


class CountSchema(Schema):
    count = fields.Integer()


class ImportFormSchema(Schema):
    list_id = fields.Integer(required=True)
    consent = fields.String(
        load_default=imports.ImportConsent.MEMBERSHIP.value,
        validate=validate.OneOf([c.value for c in imports.ImportConsent]),
    )


class ImportFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})  # a CSV file


class ImportStatusSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"description": "queued, running, done, failed or refused"})
    list_id = fields.Integer(allow_none=True)
    filename = fields.String()
    origin = fields.String()
    consent = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    percent = fields.Integer()
    phase = fields.String()
    rows_read = fields.Integer()
    report = fields.Dict(
        metadata={
            "description": "When done: rows, added, updated, unchanged, skipped, subscribed, "
            "not_subscribed, warnings (values left out of imported members), and the reasons "
            "grouped with their counts (skip_reasons, not_subscribed_reasons, warning_reasons)"
        }
    )
    created_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    status_url = fields.String()


class IssueSchema(Schema):
    line = fields.Integer()
    kind = fields.String(
        metadata={
            "description": "skipped (not imported), not_subscribed (saved, not on the list) or "
            "warning (imported without the value the reason names)"
        }
    )
    email = fields.String(allow_none=True)
    reason = fields.String()


class IssueArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
