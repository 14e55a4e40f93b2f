"""Organizer pages for hosted actions: list, write, open/close, report, review, CSV and print."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.extensions import db
from app.infra.redis_client import get_redis
from app.models import Action, ActionResponse, ActionStatus, Role
from app.models.base import utcnow
from app.public.actions import action_cache
from app.services import NotFound
from app.services.actions import counts, petitions, reports, signing
from app.services.audience import lists as audience_lists
from app.web.charts import Series, time_chart
from app.web.roles import role_required

bp = Blueprint("actions", __name__, url_prefix="/actions")


def _action(action_id: int) -> Action:
    try:
        return petitions.get_action(db.session, action_id)
    except NotFound:
        abort(404)


def _form_data() -> petitions.PetitionData:
    form = request.form
    goal_text = (form.get("goal") or "").strip().replace(",", "")
    goal: int | None = None
    if goal_text:
        goal = int(goal_text) if goal_text.isdigit() and len(goal_text) < 10 else -1
    versions = {
        language: {key: form.get(f"{language}_{key}", "") for key in petitions.LIMITS}
        for language in petitions.LANGUAGES
    }
    return petitions.PetitionData(
        title=form.get("title", ""),
        slug=form.get("slug", ""),
        default_language=form.get("default_language", "en"),
        goal=goal,
        image_url=form.get("image_url", ""),
        fields={name: form.get(f"field_{name}", "off") for name in petitions.OPTIONAL_FIELDS},
        show_recent_signers=form.get("show_recent_signers") == "on",
        next_step=form.get("next_step", "share"),
        next_step_url=form.get("next_step_url", ""),
        send_thank_you=form.get("send_thank_you") == "on",
        require_confirmation=form.get("require_confirmation") == "on",
        list_ids=[int(i) for i in form.getlist("list_ids") if i.isdigit() and len(i) < 10],
        versions=versions,
    )


def _editor(action: Action | None, data: petitions.PetitionData, error: Any = None) -> str:
    return render_template(
        "actions/edit.html",
        action=action,
        data=data,
        error=error,
        lists=audience_lists.all_lists(db.session),
        languages=petitions.LANGUAGES,
        limits=petitions.LIMITS,
        optional_fields=petitions.OPTIONAL_FIELDS,
    )


@bp.get("")
@role_required(Role.VIEWER)
def index() -> ResponseReturnValue:
    items = petitions.all_actions(db.session)
    totals = {a.id: counts.count_responses(db.session, a.id) for a in items}
    return render_template("actions/list.html", actions=items, totals=totals)


@bp.route("/new", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def new() -> ResponseReturnValue:
    if request.method == "GET":
        return _editor(None, petitions.PetitionData(title=""))
    data = _form_data()
    try:
        action = petitions.create_petition(db.session, data, owner_id=current_user.id)
    except petitions.ActionError as exc:
        db.session.rollback()
        return _editor(None, data, exc), 422
    db.session.commit()
    flash("Petition saved as a draft. Open it when it is ready to sign.", "success")
    return redirect(url_for("actions.report", action_id=action.id))


@bp.route("/<int:action_id>/edit", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def edit(action_id: int) -> ResponseReturnValue:
    action = _action(action_id)
    if request.method == "GET":
        return _editor(action, petitions.as_data(db.session, action))
    data = _form_data()
    try:
        petitions.update_petition(db.session, action, data)
    except petitions.ActionError as exc:
        db.session.rollback()
        return _editor(_action(action_id), data, exc), 422
    db.session.commit()
    action_cache().forget(action.slug)  # this process shows the change at once
    flash("Petition saved.", "success")
    return redirect(url_for("actions.report", action_id=action.id))


@bp.post("/<int:action_id>/status")
@role_required(Role.ORGANIZER)
def status(action_id: int) -> ResponseReturnValue:
    action = _action(action_id)
    wanted = request.form.get("to", "")
    if wanted not in (ActionStatus.OPEN.value, ActionStatus.CLOSED.value):
        abort(400)
    try:
        petitions.transition(db.session, action, ActionStatus(wanted))
    except petitions.ActionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("actions.report", action_id=action_id))
    db.session.commit()
    action_cache().forget(action.slug)  # this process shows the change at once
    flash("Petition opened." if wanted == "open" else "Petition closed.", "success")
    return redirect(url_for("actions.report", action_id=action_id))


def _over_time_chart(report: reports.PetitionReport) -> Any:
    if not report.over_time:
        return None
    fmt = "%b %d %H:00" if report.bucket == "hour" else "%b %d"
    labels = [start.astimezone(UTC).strftime(fmt) for start, _n in report.over_time]
    values = [n for _start, n in report.over_time]
    return time_chart(
        "signatures-over-time",
        title="Signatures over time",
        desc=f"Signatures per {report.bucket} (UTC), {sum(values)} in all.",
        labels=labels,
        series=[Series("Signatures", values, "s1")],
        kind="bar",
        point_titles=[f"{label}: {n}" for label, n in zip(labels, values, strict=True)],
    )


@bp.get("/<int:action_id>")
@role_required(Role.VIEWER)
def report(action_id: int) -> ResponseReturnValue:
    action = _action(action_id)
    data = reports.petition_report(db.session, action, now=utcnow())
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    return render_template(
        "actions/report.html",
        action=action,
        r=data,
        chart=_over_time_chart(data),
        public_url=f"{base}/a/{action.slug}",
        embed_action=f"{base}/a/{action.slug}/embed",
        form_token=petitions.embed_token(current_app.config["SECRET_KEY"], action.id),
        consent_wording=signing.consent_wording(db.session, action.default_language),
        has_lists=bool(petitions.list_ids_of(db.session, action.id)),
    )


@bp.post("/<int:action_id>/responses/<int:response_id>/<verdict>")
@role_required(Role.ORGANIZER)
def review(action_id: int, response_id: int, verdict: str) -> ResponseReturnValue:
    action = _action(action_id)
    response = db.session.get(ActionResponse, response_id)
    if response is None or response.action_id != action.id or verdict not in ("keep", "remove"):
        abort(404)
    if verdict == "remove":
        signing.remove_response(db.session, response)
    else:
        signing.keep_response(db.session, response)
    db.session.commit()
    counts.forget_count(get_redis(), action.id)
    flash("Signature removed." if verdict == "remove" else "Signature kept.", "success")
    return redirect(url_for("actions.report", action_id=action.id) + "#flagged")


@bp.get("/<int:action_id>/signatures.csv")
@role_required(Role.ORGANIZER)
def signatures_csv(action_id: int) -> Response:
    action = _action(action_id)
    chunks = reports.responses_csv(db.session, action)
    return Response(
        stream_with_context(chunks),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{action.slug}-signatures.csv"'},
    )


@bp.get("/<int:action_id>/print")
@role_required(Role.ORGANIZER)
def printable(action_id: int) -> ResponseReturnValue:
    action = _action(action_id)
    version = action.version(action.default_language)
    return render_template(
        "actions/print.html",
        action=action,
        version=version,
        signers=reports.signers_for_print(db.session, action.id),
        petition_html=petitions.render_markdown(version.petition_text if version else ""),
    )
