"""Public campaign pages, no login: the web archive ("view in browser"), the calendar file,
and the harmless page that untracked links point at."""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from app.emails import Recipient
from app.emails.content import LANGUAGES
from app.extensions import db
from app.models import Campaign
from app.services.campaigns import authoring as service
from app.services.campaigns.authoring import INERT_PATH
from app.web.campaigns import email_response

bp = Blueprint("archive", __name__)

_KEY = re.compile(r"(\d{1,18})-([a-z2-7]{6,32})")
ARCHIVE_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _signed_campaign(campaign_id: int, ref: str) -> Campaign:
    if not service.check_campaign_ref(campaign_id, ref):
        abort(404)
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _language(campaign: Campaign) -> str:
    wanted = request.args.get("lang", "")
    return wanted if wanted in LANGUAGES else campaign.default_language


@bp.route("/archive/<key>")
def archive(key: str) -> ResponseReturnValue:
    """The email as an anonymous reader sees it: no personal data, nothing tracked.

    404 until the campaign starts going out, and for any unsigned or mistyped address.
    """
    match = _KEY.fullmatch(key)
    if match is None:
        abort(404)
    campaign = _signed_campaign(int(match.group(1)), match.group(2))
    if not service.is_archived(campaign):
        abort(404)
    skeleton = service.skeleton_for(
        db.session, campaign, _language(campaign), tracking=False, archive=False
    )
    # An anonymous Recipient: every merge field prints its default, no name, no address.
    email = skeleton.personalize(Recipient())
    response = email_response(email.html, ARCHIVE_CSP)
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.route("/calendar/<int:campaign_id>.ics")
def calendar(campaign_id: int) -> ResponseReturnValue:
    """The day of action's calendar entry; the signed `k` keeps unsent events private."""
    campaign = _signed_campaign(campaign_id, request.args.get("k", ""))
    if campaign.layout != "day_of_action":
        abort(404)
    body = service.calendar_for(campaign, _language(campaign))
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="day-of-action-{campaign.id}.ics"'
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route(INERT_PATH)
def inert() -> ResponseReturnValue:
    """Where unsubscribe and preference links point in previews, tests and the archive."""
    return render_template("campaigns/inert.html")
