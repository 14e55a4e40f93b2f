"""Stats pages: a campaign's report (live while it sends), its problem addresses, its CSV export,
and a member's activity. Read-only: nothing here changes data, so viewers may open all of it
except the member page (people's details belong to organizers)."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from app.extensions import db
from app.infra.bounds import as_int
from app.models import Role
from app.services.organization import settings as org_settings
from app.services.stats import reports
from app.web import report_view
from app.web.roles import role_required

bp = Blueprint("stats", __name__, url_prefix="/stats")

# The parts of the report page the live endpoint re-renders (data-live="<key>").
LIVE_PARTS = {
    "status": "stats/_status.html",
    "funnel": "stats/_funnel.html",
    "timeline": "stats/_timeline.html",
    "links": "stats/_links.html",
    "breakdown": "stats/_breakdown.html",
}
PROBLEM_LABELS = {
    "": "All problems",
    "failed": "Refused when sending",
    "bounced": "Bounced",
    "dropped": "Dropped by SendGrid",
}


@bp.app_template_filter("pct")
def _pct(rate: float | None) -> str:
    return report_view.pct(rate)


@bp.app_template_filter("num")
def _num(value: int | float | None) -> str:
    return report_view.num(value)


@bp.app_template_filter("when")
def _when(moment: Any, tz: Any = None) -> str:
    """A time in the organization's zone, e.g. "Nov 26, 2:05 pm"."""
    if moment is None:
        return "—"
    local = moment.astimezone(tz) if tz is not None else moment
    hour = local.strftime("%I").lstrip("0") or "12"
    half = "am" if local.hour < 12 else "pm"
    return f"{local:%b} {local.day}, {local.year}, {hour}:{local:%M} {half}"


def _report(campaign_id: int) -> report_view.CampaignReportView:
    try:
        return report_view.campaign_report(db.session, campaign_id)
    except reports.ReportError:
        abort(404)


@bp.route("/campaigns/<int:campaign_id>")
@role_required(Role.VIEWER)
def campaign(campaign_id: int) -> ResponseReturnValue:
    r = _report(campaign_id)
    return render_template("stats/report.html", r=r, parts=LIVE_PARTS)


@bp.route("/campaigns/<int:campaign_id>/live")
@role_required(Role.VIEWER)
def campaign_live(campaign_id: int) -> ResponseReturnValue:
    """The report's figures and re-rendered parts, polled by the open page (static/report.js)."""
    r = _report(campaign_id)
    response = jsonify(
        {
            "campaign": r.campaign.as_dict(),
            "funnel": r.funnel.as_dict(),
            "poll_seconds": r.poll_seconds,
            "html": {key: render_template(name, r=r) for key, name in LIVE_PARTS.items()},
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/campaigns/<int:campaign_id>/problems")
@role_required(Role.VIEWER)
def campaign_problems(campaign_id: int) -> ResponseReturnValue:
    kind = request.args.get("kind", "")
    page = request.args.get("page", "1")
    if kind not in PROBLEM_LABELS or not as_int(page):
        abort(404)
    try:
        header = reports.campaign_header(db.session, campaign_id)
        problems = reports.campaign_problems(db.session, campaign_id, page=int(page), kind=kind)
    except reports.ReportError:
        abort(404)
    return render_template(
        "stats/problems.html",
        campaign=header,
        problems=problems,
        kind=kind,
        labels=PROBLEM_LABELS,
        tz=org_settings.org_timezone(db.session),
    )


@bp.route("/campaigns/<int:campaign_id>/outcomes.csv")
@role_required(Role.VIEWER)
def campaign_csv(campaign_id: int) -> ResponseReturnValue:
    """Each member's outcome, streamed: the response starts before the last row is read."""
    try:
        header = reports.campaign_header(db.session, campaign_id)
    except reports.ReportError:
        abort(404)
    filename = f"campaign-{header.id}-outcomes.csv"
    return Response(
        reports.outcome_csv(db.session, campaign_id),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/members/<int:member_id>")
@role_required(Role.ORGANIZER)
def member(member_id: int) -> ResponseReturnValue:
    """A minimal member page: their campaigns, opens and clicks (stats/_member_activity.html
    is the part the audience section's member page includes)."""
    try:
        activity = reports.member_activity(db.session, member_id)
    except reports.ReportError:
        abort(404)
    return render_template(
        "stats/member.html", activity=activity, tz=org_settings.org_timezone(db.session)
    )


def report_url(campaign_id: int) -> str:
    return url_for("stats.campaign", campaign_id=campaign_id)
