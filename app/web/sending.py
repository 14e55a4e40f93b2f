"""The send panel of a campaign: who gets it, schedule or send now, live progress, pause."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, TimeField
from wtforms.validators import InputRequired

from app.extensions import db
from app.infra import redis_client
from app.models import Campaign, CampaignStatus, Role
from app.models.base import utcnow
from app.services import sending
from app.services.organization import settings as org_settings
from app.web.roles import role_required

# Named after campaigns so the navigation highlights Campaigns on these pages.
bp = Blueprint("campaigns_send", __name__, url_prefix="/campaigns")


class ScheduleForm(FlaskForm):
    date = DateField("Date", validators=[InputRequired("Choose a date.")])
    time = TimeField("Time", validators=[InputRequired("Choose a time.")])
    next = HiddenField()


class ActionForm(FlaskForm):
    """Send now, pause, resume, cancel, unschedule: a button and a CSRF token."""

    next = HiddenField()


def _campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _back(campaign: Campaign) -> ResponseReturnValue:
    # Back where the button was (the campaign page or this one); only our own paths.
    target = request.form.get("next", "")
    if not target.startswith("/campaigns/") or "//" in target or "\\" in target:
        target = url_for("campaigns_send.page", campaign_id=campaign.id)
    return redirect(target)


def send_panel_context(campaign: Campaign, *, embedded: bool = False) -> dict[str, Any]:
    """Everything `campaigns/_send_panel.html` needs; the campaign page passes it too.

    `embedded` (the campaign page) leaves out what that page shows itself: the status
    badge, the pause reason and the list of problems.
    """
    zone = org_settings.org_timezone(db.session)
    now = utcnow()
    progress = sending.progress(db.session, campaign, now)
    problems = (
        sending.check_sendable(db.session, campaign)
        if campaign.status in (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value)
        else []
    )
    if campaign.send_at and campaign.status == CampaignStatus.SCHEDULED.value:
        default = campaign.send_at.astimezone(zone)
    else:
        # The next full hour, at least 30 minutes away: a sensible first choice.
        default = (now.astimezone(zone) + timedelta(minutes=90)).replace(
            minute=0, second=0, microsecond=0
        )
    schedule_form = ScheduleForm(
        formdata=None, date=default.date(), time=default.time().replace(tzinfo=None)
    )
    # Names the campaign page does not use itself (it passes `campaign`).
    return {
        "progress": progress,
        "send_problems": problems,
        "zone": zone,
        "zone_abbreviation": now.astimezone(zone).tzname(),
        "send_at_local": campaign.send_at.astimezone(zone) if campaign.send_at else None,
        "schedule_form": schedule_form,
        "action_form": ActionForm(formdata=None),
        "next_url": request.path,
        "embedded": embedded,
    }


@bp.route("/<int:campaign_id>/send")
@role_required(Role.ORGANIZER)
def page(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign(campaign_id)
    return render_template("sending/send.html", campaign=campaign, **send_panel_context(campaign))


@bp.route("/<int:campaign_id>/send/progress.json")
@role_required(Role.ORGANIZER)
def progress_json(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign(campaign_id)
    response = jsonify(sending.progress(db.session, campaign).to_json())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:campaign_id>/send/schedule", methods=["POST"])
@role_required(Role.ORGANIZER)
def schedule(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign(campaign_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return _back(campaign)
    assert form.date.data is not None
    assert form.time.data is not None
    local = datetime.combine(form.date.data, form.time.data)
    try:
        sending.schedule(db.session, campaign, local, actor=current_user)
    except sending.SendingError as exc:
        db.session.rollback()
        for problem in exc.problems:
            flash(problem.message, "error")
        return _back(campaign)
    except sending.TransitionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(campaign)
    db.session.commit()
    zone = org_settings.org_timezone(db.session)
    when = campaign.send_at.astimezone(zone) if campaign.send_at else local
    flash(f"Scheduled: it goes out on {_format_when(when)}.", "success")
    return _back(campaign)


def _format_when(moment: datetime) -> str:
    hour = moment.strftime("%I:%M %p").lstrip("0")
    return f"{moment:%A, %B} {moment.day}, {moment.year} at {hour} {moment.tzname()}"


def _action(campaign_id: int, verb: str) -> ResponseReturnValue:
    campaign = _campaign(campaign_id)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    client = redis_client.get_redis()
    try:
        if verb == "now":
            sending.send_now(db.session, campaign, actor=current_user)
            message = "Sending has started. Progress shows below."
        elif verb == "pause":
            sending.pause(db.session, campaign.id, current_user)
            message = "Paused. Nothing more leaves until you resume."
        elif verb == "resume":
            sending.resume(
                db.session,
                campaign.id,
                current_user,
                client=client,
                stall_seconds=float(current_app.config["SEND_STALL_SECONDS"]),
            )
            message = "Resumed: sending picks up where it stopped."
        elif verb == "cancel":
            sending.cancel(db.session, campaign.id, current_user)
            message = "Cancelled. Nobody else will receive this campaign."
        elif verb == "resend_unknown":
            count = sending.resend_unknown(
                db.session,
                campaign.id,
                current_user,
                client=client,
                stall_seconds=float(current_app.config["SEND_STALL_SECONDS"]),
            )
            message = f"Sending again to {count:,} members who may not have received it."
        else:
            sending.unschedule(db.session, campaign, actor=current_user)
            message = "Unscheduled: the campaign is a draft again."
    except sending.SendingError as exc:
        db.session.rollback()
        for problem in exc.problems:
            flash(problem.message, "error")
        return _back(campaign)
    except sending.TransitionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(campaign)
    db.session.commit()
    flash(message, "success")
    return _back(campaign)


@bp.route("/<int:campaign_id>/send/now", methods=["POST"])
@role_required(Role.ORGANIZER)
def send_now(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "now")


@bp.route("/<int:campaign_id>/send/pause", methods=["POST"])
@role_required(Role.ORGANIZER)
def pause(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "pause")


@bp.route("/<int:campaign_id>/send/resume", methods=["POST"])
@role_required(Role.ORGANIZER)
def resume(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "resume")


@bp.route("/<int:campaign_id>/send/cancel", methods=["POST"])
@role_required(Role.ORGANIZER)
def cancel(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "cancel")


@bp.route("/<int:campaign_id>/send/resend-unknown", methods=["POST"])
@role_required(Role.ORGANIZER)
def resend_unknown(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "resend_unknown")


@bp.route("/<int:campaign_id>/send/unschedule", methods=["POST"])
@role_required(Role.ORGANIZER)
def unschedule(campaign_id: int) -> ResponseReturnValue:
    return _action(campaign_id, "unschedule")
