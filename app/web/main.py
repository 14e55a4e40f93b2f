"""The dashboard and the top-level sections of the navigation."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.extensions import db
from app.infra.bounds import as_int
from app.models import Role
from app.services.organization import settings as org_settings
from app.services.stats import reports
from app.web import report_view
from app.web.campaigns import campaign_list
from app.web.roles import role_required

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    return redirect(url_for("auth.login"))


@bp.route("/dashboard")
@role_required(Role.VIEWER)
def dashboard() -> ResponseReturnValue:
    # Counters and rollups only (a handful of small reads): see app.services.stats.reports.
    tz = org_settings.org_timezone(db.session)
    recent, _ = reports.reported_campaigns(db.session, per_page=5)
    health = report_view.health_view(reports.deliverability(db.session))
    growth = report_view.growth_view(reports.list_growth(db.session, tz=tz), tz)
    return render_template(
        "pages/dashboard.html", recent=recent, health=health, growth=growth, tz=tz
    )


@bp.route("/campaigns")
@role_required(Role.ORGANIZER)
def campaigns() -> ResponseReturnValue:
    return campaign_list()


@bp.route("/stats")
@role_required(Role.VIEWER)
def stats() -> ResponseReturnValue:
    """Every campaign that has begun sending, with its key rates, linking to its report."""
    page = request.args.get("page", "1")
    if not as_int(page):  # ASCII digits only, 1 or more
        abort(404)
    campaigns, total = reports.reported_campaigns(db.session, page=int(page), per_page=25)
    pages = max(1, -(-total // 25))
    return render_template(
        "stats/index.html",
        campaigns=campaigns,
        total=total,
        page=int(page),
        pages=pages,
        tz=org_settings.org_timezone(db.session),
    )
