"""/api/v1/campaigns/<id>/…: schedule, send now, pause, resume, cancel, and progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

from flask import current_app
from flask_smorest import abort

from app.api.auth import api_role, current_api_user
from app.api.blueprint import Blueprint
from app.api.schemas.sending import (
    ProgressSchema,
    ScheduleSchema,
)
from app.extensions import db
from app.infra import redis_client
from app.models import Campaign, Role
from app.services import sending

blp = Blueprint(
    "campaign_sending",
    __name__,
    url_prefix="/campaigns",
    description="Sending a campaign: schedule it, send it now, follow and steer it (organizers)",
)


def _fail(status: int, message: str, details: Any = None) -> NoReturn:
    abort(status, message=message, details=details)
    raise AssertionError("flask_smorest.abort always raises")


def _campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        _fail(404, f"No campaign {campaign_id}.")
    return campaign


def _run(campaign_id: int, change: Callable[[Campaign], object]) -> dict[str, Any]:
    """Apply a sending service to the campaign; 409 for a forbidden transition, 422 for
    a campaign that cannot be sent (every problem in details), then commit."""
    campaign = _campaign(campaign_id)
    try:
        change(campaign)
    except sending.TransitionError as exc:
        db.session.rollback()
        _fail(409, str(exc))
    except sending.SendingError as exc:
        db.session.rollback()
        problems = [{"field": p.field, "line": p.line, "message": p.message} for p in exc.problems]
        _fail(422, "The campaign cannot be sent as it is.", {"problems": problems})
    db.session.commit()
    return sending.progress(db.session, campaign).to_json()


@blp.route("/<int:campaign_id>/schedule", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.arguments(ScheduleSchema)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign's status does not allow scheduling")
@blp.alt_response(422, description="Not sendable, or the time is not in the future")
def schedule(data: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Schedule a draft, or move a scheduled campaign, to a time in a time zone."""
    when: datetime = data["send_at"]
    return _run(
        campaign_id,
        lambda c: sending.schedule(
            db.session, c, when, data.get("timezone"), actor=current_api_user()
        ),
    )


@blp.route("/<int:campaign_id>/send-now", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(202, ProgressSchema)
@blp.alt_response(409, description="The campaign's status does not allow sending")
@blp.alt_response(422, description="Not sendable, or nobody would receive it")
def send_now(campaign_id: int) -> dict[str, Any]:
    """Start sending now; progress follows at /campaigns/<id>/progress."""
    return _run(campaign_id, lambda c: sending.send_now(db.session, c, actor=current_api_user()))


@blp.route("/<int:campaign_id>/unschedule", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign is not scheduled")
def unschedule(campaign_id: int) -> dict[str, Any]:
    """Turn a scheduled campaign back into a draft."""
    return _run(campaign_id, lambda c: sending.unschedule(db.session, c, actor=current_api_user()))


@blp.route("/<int:campaign_id>/pause", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign is not sending")
def pause(campaign_id: int) -> dict[str, Any]:
    """Pause a sending campaign; messages already handed to SendGrid still go."""
    return _run(campaign_id, lambda c: sending.pause(db.session, c.id, current_api_user()))


@blp.route("/<int:campaign_id>/resume", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign is not paused")
def resume(campaign_id: int) -> dict[str, Any]:
    """Resume a paused campaign where it stopped."""
    return _run(
        campaign_id,
        lambda c: sending.resume(
            db.session,
            c.id,
            current_api_user(),
            client=redis_client.get_redis(),
            stall_seconds=float(current_app.config["SEND_STALL_SECONDS"]),
        ),
    )


@blp.route("/<int:campaign_id>/resend-unknown", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign is not sending, paused or sent")
def resend_unknown(campaign_id: int) -> dict[str, Any]:
    """Send now to the members a crash left unknown; some may get a second copy."""
    return _run(
        campaign_id,
        lambda c: sending.resend_unknown(
            db.session,
            c.id,
            current_api_user(),
            client=redis_client.get_redis(),
            stall_seconds=float(current_app.config["SEND_STALL_SECONDS"]),
        ),
    )


@blp.route("/<int:campaign_id>/cancel", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
@blp.alt_response(409, description="The campaign cannot be cancelled from its status")
def cancel(campaign_id: int) -> dict[str, Any]:
    """Cancel a scheduled, sending or paused campaign for good."""
    return _run(campaign_id, lambda c: sending.cancel(db.session, c.id, current_api_user()))


@blp.route("/<int:campaign_id>/progress", methods=["GET"])
@api_role(Role.ORGANIZER)
@blp.response(200, ProgressSchema)
def progress(campaign_id: int) -> dict[str, Any]:
    """Counts by status, rate and time left (or, before sending, who would receive it)."""
    return sending.progress(db.session, _campaign(campaign_id)).to_json()
