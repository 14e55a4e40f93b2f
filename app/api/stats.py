"""/api/v1/stats: every figure of the stats pages as JSON (viewers and up; read-only)."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Response
from flask.views import MethodView
from flask_smorest import abort

from app.api.auth import api_role
from app.api.blueprint import Blueprint
from app.api.schemas import CSV_BODY
from app.api.schemas.stats import (
    StatsBreakdownRowSchema,
    StatsCampaignReportPageSchema,
    StatsCampaignReportSchema,
    StatsDashboardSchema,
    StatsGrowthArgsSchema,
    StatsGrowthWeekSchema,
    StatsHealthArgsSchema,
    StatsHealthSchema,
    StatsLinkSchema,
    StatsMemberActivitySchema,
    StatsPageArgsSchema,
    StatsProblemArgsSchema,
    StatsProblemPageSchema,
    StatsTimelineSchema,
)
from app.extensions import db
from app.models import BreakdownDimension, Role
from app.services.stats import reports

blp = Blueprint(
    "stats_api",
    __name__,
    url_prefix="/stats",
    description="Delivery stats: campaign funnels, timelines, links, breakdowns, problems, "
    "list growth and deliverability. Read from counters and rollups.",
)


def _not_found(exc: reports.ReportError) -> NoReturn:
    abort(404, message=str(exc))
    raise AssertionError("flask_smorest.abort always raises")


def _header(campaign_id: int) -> reports.CampaignHeader:
    try:
        return reports.campaign_header(db.session, campaign_id)
    except reports.ReportError as exc:
        _not_found(exc)


@blp.route("/campaigns")
class Campaigns(MethodView):
    @api_role(Role.VIEWER)
    @blp.arguments(StatsPageArgsSchema, location="query")
    @blp.response(200, StatsCampaignReportPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Campaigns that have begun sending, newest first, with their funnels and rates."""
        items, total = reports.reported_campaigns(db.session, **args)
        return {"items": [s.as_dict() for s in items], "total": total, **args}


@blp.route("/campaigns/<int:campaign_id>")
class CampaignReport(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, StatsCampaignReportSchema)
    @blp.alt_response(404, description="No such campaign")
    def get(self, campaign_id: int) -> dict[str, Any]:
        """One campaign's funnel: targeted, sent, delivered, bounced, opens, clicks, petition
        clicks, unsubscribes and spam reports, with rates."""
        header = _header(campaign_id)
        return {**header.as_dict(), **reports.campaign_funnel(db.session, campaign_id).as_dict()}


@blp.route("/campaigns/<int:campaign_id>/timeline")
class CampaignTimeline(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, StatsTimelineSchema)
    @blp.alt_response(404, description="No such campaign")
    def get(self, campaign_id: int) -> dict[str, Any]:
        """Opens and clicks per hour for the first 72 hours after sending started, then per
        day. *_unique counts a delivery once, in the bucket of its first open or click."""
        try:
            buckets = reports.campaign_timeline(db.session, campaign_id)
        except reports.ReportError as exc:
            _not_found(exc)
        return {"campaign_id": campaign_id, "buckets": [b.as_dict() for b in buckets]}


@blp.route("/campaigns/<int:campaign_id>/links")
class CampaignLinks(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, StatsLinkSchema(many=True))
    @blp.alt_response(404, description="No such campaign")
    def get(self, campaign_id: int) -> list[dict[str, Any]]:
        """Clicks per link, in the order the links appear, petition links flagged."""
        _header(campaign_id)
        return [link.as_dict() for link in reports.campaign_links(db.session, campaign_id)]


@blp.route("/campaigns/<int:campaign_id>/breakdown/<string:dimension>")
class CampaignBreakdown(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, StatsBreakdownRowSchema(many=True))
    @blp.alt_response(404, description="No such campaign or dimension")
    def get(self, campaign_id: int, dimension: str) -> list[dict[str, Any]]:
        """Targeted, delivered, opens, clicks, petition clicks and unsubscribes per local
        (`local`) or per language (`language`), largest group first."""
        if dimension not in {d.value for d in BreakdownDimension}:
            abort(404, message="The breakdown is 'local' or 'language'.")
        _header(campaign_id)
        use_sent = reports.campaign_funnel(db.session, campaign_id).denominator == "sent"
        rows = reports.campaign_breakdown(db.session, campaign_id, dimension, use_sent=use_sent)
        return [row.as_dict() for row in rows]


@blp.route("/campaigns/<int:campaign_id>/problems")
class CampaignProblems(MethodView):
    @api_role(Role.VIEWER)
    @blp.arguments(StatsProblemArgsSchema, location="query")
    @blp.response(200, StatsProblemPageSchema)
    @blp.alt_response(404, description="No such campaign")
    def get(self, args: dict[str, Any], campaign_id: int) -> dict[str, Any]:
        """Failed (refused when sending), bounced and dropped addresses with their reasons,
        one page at a time."""
        _header(campaign_id)
        return reports.campaign_problems(db.session, campaign_id, **args).as_dict()


@blp.route("/campaigns/<int:campaign_id>/outcomes.csv")
class CampaignOutcomes(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(
        200, CSV_BODY, content_type="text/csv", description="One row per member, streamed"
    )
    @blp.alt_response(404, description="No such campaign")
    def get(self, campaign_id: int) -> Response:
        """Each member's outcome as CSV (cells that a spreadsheet would run as a formula are
        prefixed with an apostrophe)."""
        _header(campaign_id)
        return Response(
            reports.outcome_csv(db.session, campaign_id),
            mimetype="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-outcomes.csv"'
            },
        )


@blp.route("/dashboard")
class Dashboard(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, StatsDashboardSchema)
    def get(self) -> dict[str, Any]:
        """The dashboard: the five most recent campaigns, deliverability over 30 days and list
        growth over 12 weeks."""
        recent, _ = reports.reported_campaigns(db.session, per_page=5)
        return {
            "recent_campaigns": [s.as_dict() for s in recent],
            "deliverability": reports.deliverability(db.session).as_dict(),
            "list_growth": [w.as_dict() for w in reports.list_growth(db.session)],
        }


@blp.route("/list-growth")
class ListGrowth(MethodView):
    @api_role(Role.VIEWER)
    @blp.arguments(StatsGrowthArgsSchema, location="query")
    @blp.response(200, StatsGrowthWeekSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Subscriptions started (joined) and ended (left) per week, oldest week first; weeks
        start on Monday in the organization's time zone."""
        return [w.as_dict() for w in reports.list_growth(db.session, weeks=args["weeks"])]


@blp.route("/deliverability")
class Deliverability(MethodView):
    @api_role(Role.VIEWER)
    @blp.arguments(StatsHealthArgsSchema, location="query")
    @blp.response(200, StatsHealthSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Bounce rate (over sent) and spam-report rate (over delivered) of the campaigns
        started in the last `days` days, with levels against Gmail/Yahoo's thresholds (spam
        below 0.1% healthy, 0.3% and above alarm) and the usual 2%/5% for bounces."""
        return reports.deliverability(db.session, days=args["days"]).as_dict()


@blp.route("/members/<int:member_id>")
class MemberActivity(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, StatsMemberActivitySchema)
    @blp.alt_response(404, description="No such member")
    def get(self, member_id: int) -> dict[str, Any]:
        """A member's recent campaigns, opens, clicks and unsubscribes (organizers: this is
        about one person)."""
        try:
            return reports.member_activity(db.session, member_id).as_dict()
        except reports.ReportError as exc:
            _not_found(exc)
