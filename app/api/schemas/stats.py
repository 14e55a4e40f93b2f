"""Schemas of the stats endpoints: every figure of the stats pages, named after their counters."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.services.stats import reports


def _counts_schema(name: str, counters: tuple[str, ...]) -> type[Schema]:
    return Schema.from_dict({c: fields.Integer(required=True) for c in counters}, name=name)


def _rates_schema(name: str, rates: tuple[str, ...]) -> type[Schema]:
    return Schema.from_dict(
        {r: fields.Float(allow_none=True, required=True) for r in rates}, name=name
    )


StatsFunnelCountsSchema = _counts_schema("StatsFunnelCounts", reports.FUNNEL_COUNTERS)
StatsFunnelRatesSchema = _rates_schema(
    "StatsFunnelRates",
    (
        "sent",
        "delivered",
        "bounced",
        "opened",
        "opened_human",
        "clicked",
        "clicked_human",
        "petition_clicked",
        "petition_clicked_human",
        "unsubscribed",
        "spam_reported",
        "click_to_open",
        "signed",
    ),
)
StatsHourlyCountsSchema = _counts_schema("StatsTimelineCounts", reports.HOURLY_COUNTERS)
StatsLinkCountsSchema = _counts_schema("StatsLinkCounts", reports.LINK_COUNTERS)
StatsBreakdownCountsSchema = _counts_schema("StatsBreakdownCounts", reports.BREAKDOWN_FIGURES)
StatsBreakdownRatesSchema = _rates_schema(
    "StatsBreakdownRates",
    (
        "opened",
        "opened_human",
        "clicked_human",
        "petition_clicked_human",
        "unsubscribed",
        "signed",
    ),
)


class StatsCampaignInfoSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String()
    subject = fields.String()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    send_at = fields.DateTime(allow_none=True)


class StatsFunnelSchema(Schema):
    counts = fields.Nested(StatsFunnelCountsSchema)
    denominator = fields.String(
        metadata={
            "description": "What engagement rates are out of: 'delivered' when the transport "
            "reports deliveries, else 'sent'."
        }
    )
    denominator_count = fields.Integer()
    rates = fields.Nested(
        StatsFunnelRatesSchema,
        metadata={
            "description": "Fractions (0.25 = 25%); null when there is nothing to divide by. "
            "sent is over targeted; delivered and bounced over sent, and null while no "
            "delivery report has come back (denominator 'sent': the SMTP and outbox "
            "transports never report delivery); the rest over the denominator; click_to_open "
            "is human clicks over human opens."
        },
    )


class StatsCampaignReportSchema(StatsCampaignInfoSchema):
    counts = fields.Nested(StatsFunnelCountsSchema)
    denominator = fields.String()
    denominator_count = fields.Integer()
    rates = fields.Nested(StatsFunnelRatesSchema)


class StatsCampaignReportPageSchema(Schema):
    items = fields.List(fields.Nested(StatsCampaignReportSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class StatsBucketSchema(Schema):
    start = fields.DateTime()
    end = fields.DateTime()
    kind = fields.String(metadata={"description": "'hour' (first 72 hours) or 'day' (after)"})
    counts = fields.Nested(StatsHourlyCountsSchema)


class StatsTimelineSchema(Schema):
    campaign_id = fields.Integer()
    buckets = fields.List(fields.Nested(StatsBucketSchema))


class StatsLinkSchema(Schema):
    link_id = fields.Integer()
    url = fields.String()
    position = fields.Integer()
    is_petition = fields.Boolean()
    counts = fields.Nested(StatsLinkCountsSchema)


class StatsBreakdownRowSchema(Schema):
    dimension = fields.String()
    value = fields.String()
    label = fields.String()
    counts = fields.Nested(StatsBreakdownCountsSchema)
    rates = fields.Nested(StatsBreakdownRatesSchema)


class StatsProblemSchema(Schema):
    delivery_id = fields.Integer()
    email = fields.String()
    kind = fields.String(metadata={"description": "failed, bounced or dropped"})
    reason = fields.String()
    at = fields.DateTime(allow_none=True)


class StatsProblemPageSchema(Schema):
    items = fields.List(fields.Nested(StatsProblemSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    pages = fields.Integer()


class StatsGrowthWeekSchema(Schema):
    week_start = fields.DateTime()
    joined = fields.Integer()
    left = fields.Integer()


class StatsThresholdsSchema(Schema):
    spam_warning = fields.Float()
    spam_alarm = fields.Float()
    bounce_warning = fields.Float()
    bounce_alarm = fields.Float()


class StatsHealthSchema(Schema):
    days = fields.Integer()
    campaigns = fields.Integer()
    sent = fields.Integer()
    delivered = fields.Integer()
    bounced = fields.Integer()
    spam_reports = fields.Integer()
    bounce_rate = fields.Float(allow_none=True)
    spam_rate = fields.Float(allow_none=True)
    bounce_level = fields.String(metadata={"description": "none, healthy, warning or alarm"})
    spam_level = fields.String(metadata={"description": "none, healthy, warning or alarm"})
    thresholds = fields.Nested(StatsThresholdsSchema)


class StatsDashboardSchema(Schema):
    recent_campaigns = fields.List(fields.Nested(StatsCampaignReportSchema))
    deliverability = fields.Nested(StatsHealthSchema)
    list_growth = fields.List(fields.Nested(StatsGrowthWeekSchema))


class StatsMemberDeliverySchema(Schema):
    delivery_id = fields.Integer()
    campaign_id = fields.Integer()
    campaign_name = fields.String()
    status = fields.String()
    outcome = fields.String(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    opened_at = fields.DateTime(allow_none=True)
    human_opened_at = fields.DateTime(allow_none=True)
    clicked_at = fields.DateTime(allow_none=True)
    petition_clicked_at = fields.DateTime(allow_none=True)
    unsubscribed_at = fields.DateTime(allow_none=True)


class StatsMemberEventSchema(Schema):
    kind = fields.String()
    occurred_at = fields.DateTime()
    campaign_id = fields.Integer(allow_none=True)
    campaign_name = fields.String()
    url = fields.String(allow_none=True)
    is_petition = fields.Boolean()
    is_machine = fields.Boolean()


class StatsMemberActivitySchema(Schema):
    member_id = fields.Integer()
    email = fields.String()
    deliveries = fields.List(fields.Nested(StatsMemberDeliverySchema))
    events = fields.List(fields.Nested(StatsMemberEventSchema))
    opens = fields.Integer()
    clicks = fields.Integer()


class StatsPageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=200))


class StatsProblemArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    kind = fields.String(load_default="", validate=validate.OneOf(["", *reports.PROBLEM_KINDS]))


class StatsGrowthArgsSchema(Schema):
    weeks = fields.Integer(load_default=12, validate=validate.Range(min=1, max=104))


class StatsHealthArgsSchema(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=365))
