"""Campaign pages for organizers: list, write with a live preview, preview as a member, test."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from jinja2 import TemplateError
from werkzeug.datastructures import MultiDict

from app.emails import Problem
from app.emails.content import LANGUAGES, LAYOUTS
from app.emails.sandbox import MEMBER_FIELDS
from app.extensions import db, limiter
from app.models import LANGUAGE_NAMES, Campaign, Member, Role, Segment, Sender
from app.services import sending
from app.services.actions import petitions as action_petitions
from app.services.campaigns import authoring as service
from app.services.campaigns import previews
from app.services.campaigns.authoring import (
    CampaignConflict,
    CampaignError,
    CampaignInput,
    CampaignInvalid,
    VariantInput,
)
from app.services.organization import settings as org_settings
from app.web.roles import role_required
from app.web.sending import send_panel_context

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

# The pages that show organizer content: scripts only from us, frames only from us
# (the preview iframe), nothing inline but styles (the email's own).
EDITOR_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: http: data:; frame-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
# A rendered email on its own: no script at all, no forms, no plugins, sandboxed even
# when opened outside the iframe.
EMAIL_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)

LAYOUT_CHOICES = [
    (
        "action_alert",
        "Action alert",
        "One clear ask with a big button: sign a petition, email your MLA, share a post.",
    ),
    (
        "day_of_action",
        "Day of action",
        "Bring people out: the date, time and place, what to bring, and an "
        "add-to-calendar link. It can have a button too, e.g. for a petition.",
    ),
    (
        "statement",
        "Statement or news",
        "A longer text from the union: a statement of support, news, a report. "
        "With an optional byline.",
    ),
]
LAYOUT_NAMES = {key: name for key, name, _ in LAYOUT_CHOICES}
FIELD_ORDER = (
    "headline",
    "event_date",
    "event_time",
    "event_end_time",
    "timezone",
    "place",
    "address",
    "what_to_bring",
    "cta_label",
    "cta_url",
    "byline",
)


@dataclass(frozen=True)
class FieldUI:
    label: str
    kind: str  # text, url, date, time, select, textarea
    hint: str = ""


FIELD_UI: Mapping[str, FieldUI] = {
    "headline": FieldUI("Headline", "text", "The big line at the top of the email."),
    "event_date": FieldUI("Date", "date"),
    "event_time": FieldUI("Starts at", "time", "24-hour clock, e.g. 12:00"),
    "event_end_time": FieldUI("Ends at", "time", "Optional."),
    "timezone": FieldUI("Time zone", "select"),
    "place": FieldUI("Place", "text", "e.g. Alberta Legislature, south steps"),
    "address": FieldUI("Address", "textarea", "Street and city, one line each."),
    "what_to_bring": FieldUI("What to bring", "textarea", "Optional. One item per line."),
    "cta_label": FieldUI("Button label", "text", 'e.g. "Sign the petition"'),
    "cta_url": FieldUI("Button link", "url", "The full address, starting with https://"),
    "byline": FieldUI("Byline", "text", 'Optional, e.g. "Statement of the Executive Board"'),
}
FIELD_LABELS = {
    "name": "Campaign name",
    "layout": "Kind of email",
    "from_email": "From",
    "reply_to": "Reply-to",
    "list_ids": "Lists",
    "segment_id": "Segment",
    "default_language": "Default language",
    "subject": "Subject",
    "preheader": "Preview text",
    "body": "Body",
    "language": "Language",
    "identity": "Organization settings",
    "emails": "Addresses",
    "member_id": "Member",
    "variants": "Languages",
    **{name: ui.label for name, ui in FIELD_UI.items()},
}
MERGE_FIELDS = [
    ("First name", "first_name", {"en": "friend", "fr": "camarade"}),
    ("Last name", "last_name", {"en": "", "fr": ""}),
    ("Local", "local", {"en": "your local", "fr": "votre section locale"}),
    ("Email", "email", {"en": "", "fr": ""}),
    ("Postal code", "postal_code", {"en": "", "fr": ""}),
]
STATUS_BADGES = {
    "draft": "",
    "scheduled": "warn",
    "sending": "ok",
    "paused": "warn",
    "sent": "ok",
    "cancelled": "",
    "failed": "alert",
}
assert {key for _, key, _ in MERGE_FIELDS} <= set(MEMBER_FIELDS)


@bp.after_request
def _content_security(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", EDITOR_CSP)
    return response


@bp.app_context_processor
def _campaign_helpers() -> dict[str, Any]:
    return {
        "status_badge": lambda status: STATUS_BADGES.get(status, ""),
        "status_label": lambda status: service.STATUS_LABELS.get(status, status),
        "layout_name": lambda layout: LAYOUT_NAMES.get(layout, layout),
        "as_read": _as_read,
    }


def _as_read(text: str) -> str:
    """A subject as a reader with no personal data sees it (merge fields show fallbacks)."""
    try:
        return service.anonymous_text(text)
    except TemplateError:
        return text


# --- helpers ------------------------------------------------------------------------------


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = service.get_campaign(db.session, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        return -1  # refused by validation as an unknown id


def input_from_form(form: MultiDict[str, str]) -> CampaignInput:
    """Read the edit form into service input (no validation here: the service does it)."""
    sender_id = _int_or_none(form.get("sender_id"))
    sender = db.session.get(Sender, sender_id) if sender_id and sender_id > 0 else None
    variants = {
        language: VariantInput(
            subject=form.get(f"{language}-subject", ""),
            preheader=form.get(f"{language}-preheader", ""),
            body=form.get(f"{language}-body", ""),
            body_format=form.get(f"{language}-body_format", "markdown"),
            fields={name: form.get(f"{language}-{name}", "") for name in FIELD_ORDER},
        )
        for language in LANGUAGES
    }
    petitions = set(form.getlist("petition_url"))
    flags = {url: url in petitions for url in form.getlist("link_url")}
    list_ids = [i for i in (_int_or_none(v) for v in form.getlist("list_ids")) if i is not None]
    return CampaignInput(
        name=form.get("name", ""),
        layout=form.get("layout", ""),
        from_email=sender.email if sender is not None else "",
        reply_to=form.get("reply_to", ""),
        default_language=form.get("default_language", "en"),
        variants=variants,
        list_ids=list_ids,
        segment_id=_int_or_none(form.get("segment_id")),
        petition_flags=flags,
    )


def problem_label(problem: Problem) -> str:
    """ "Body (French), line 3" for the organizer."""
    language, _, name = problem.field.rpartition(".")
    label = FIELD_LABELS.get(name, name.replace("_", " ").capitalize())
    if language in LANGUAGE_NAMES:
        label += f" ({LANGUAGE_NAMES[language]})"
    if problem.line:
        label += f", line {problem.line}"
    return label


def _problems_by_field(problems: Iterable[Problem]) -> dict[str, list[Problem]]:
    grouped: dict[str, list[Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.field, []).append(problem)
    return grouped


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "field": problem.field,
        "line": problem.line,
        "message": problem.message,
        "label": problem_label(problem),
    }


def _form_values(data: CampaignInput, sender_id: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": data.name,
        "layout": data.layout,
        "sender_id": sender_id,
        "reply_to": data.reply_to,
        "default_language": data.default_language,
        "list_ids": set(data.list_ids),
        "segment_id": data.segment_id,
    }
    for language in LANGUAGES:
        variant = data.variants.get(language, VariantInput())
        values[f"{language}-subject"] = variant.subject
        values[f"{language}-preheader"] = variant.preheader
        values[f"{language}-body"] = variant.body
        values[f"{language}-body_format"] = variant.body_format
        for name in FIELD_ORDER:
            values[f"{language}-{name}"] = variant.fields.get(name, "")
    return values


def _sender_id(email: str) -> int | None:
    sender = service.sender_for(db.session, email)
    return sender.id if sender is not None else None


def _links_for_form(data: CampaignInput, campaign: Campaign | None) -> list[dict[str, Any]]:
    # `default` is what the live preview would tick: the editor re-ticks a link the organizer
    # has not touched when it becomes (or stops being) the main button.
    defaults = service.button_urls(v.fields for v in data.variants.values())
    if data.petition_flags:
        flags = list(data.petition_flags.items())
    elif campaign is not None:
        flags = [(link.url, link.is_petition) for link in campaign.links]
    else:
        flags = []
    return [{"url": url, "petition": flag, "default": url in defaults} for url, flag in flags]


def _hosted_actions() -> list[tuple[str, str, str]]:
    """(title, public address, status) of every petition, for "link to an action"."""
    base = service.base_url()
    return [
        (a.title, f"{base}/a/{a.slug}", a.status)
        for a in action_petitions.all_actions(db.session)
        if a.status != "closed"
    ]


def _render_editor(
    data: CampaignInput,
    *,
    campaign: Campaign | None,
    problems: list[Problem] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    problems = problems or []
    tz_default = org_settings.get_settings(db.session).timezone
    first_problem_language = next(
        (p.field.split(".")[0] for p in problems if p.field.split(".")[0] in LANGUAGES), None
    )
    return render_template(
        "campaigns/edit.html",
        campaign=campaign,
        values=_form_values(data, _sender_id(data.from_email)),
        problems=problems,
        by_field=_problems_by_field(problems),
        problem_label=problem_label,
        layouts=LAYOUT_CHOICES,
        layout_fields=dict(LAYOUTS),
        field_order=FIELD_ORDER,
        field_ui=FIELD_UI,
        languages=LANGUAGES,
        language_names=LANGUAGE_NAMES,
        active_language=first_problem_language or data.default_language or "en",
        senders=org_settings.allowed_senders(db.session),
        mailing_lists=service.all_lists(db.session),
        segments=service.all_segments(db.session),
        hosted_actions=_hosted_actions(),
        timezones=org_settings.timezone_choices(),
        default_timezone=tz_default,
        merge_fields=MERGE_FIELDS,
        attribute_keys=sorted(service.known_attribute_keys(db.session)),
        links=_links_for_form(data, campaign),
    ), status


def _blank_input() -> CampaignInput:
    sender = org_settings.default_sender(db.session)
    tz = org_settings.get_settings(db.session).timezone
    return CampaignInput(
        name="",
        layout="action_alert",
        from_email=sender.email if sender is not None else "",
        default_language="en",
        variants={
            lang: VariantInput(fields={"timezone": tz} if lang == "en" else {})
            for lang in LANGUAGES
        },
    )


# --- pages --------------------------------------------------------------------------------


def campaign_list() -> ResponseReturnValue:
    """The campaigns page (served at /campaigns as `main.campaigns`)."""
    rows = service.list_campaigns(db.session)
    unknown = sending.unknown_counts(db.session, [c.id for c in rows])
    response = Response(render_template("campaigns/list.html", campaigns=rows, unknown=unknown))
    response.headers["Content-Security-Policy"] = EDITOR_CSP
    return response


@bp.route("/new", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def new() -> ResponseReturnValue:
    if request.method == "GET":
        return _render_editor(_blank_input(), campaign=None)
    data = input_from_form(request.form)
    try:
        campaign = service.create_campaign(db.session, data, actor_id=current_user.id)
    except CampaignInvalid as error:
        db.session.rollback()
        return _render_editor(data, campaign=None, problems=error.problems, status=422)
    db.session.commit()
    flash(f"“{campaign.name}” is saved as a draft.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/<int:campaign_id>")
@role_required(Role.ORGANIZER)
def detail(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    problems = service.sendability_problems(db.session, campaign)
    return render_template(
        "campaigns/detail.html",
        campaign=campaign,
        lists=service.lists_of(db.session, campaign),
        segment=db.session.get(Segment, campaign.segment_id) if campaign.segment_id else None,
        editable=campaign.status_enum in service.EDITABLE_STATUSES,
        problems=problems,
        problem_label=problem_label,
        language_names=LANGUAGE_NAMES,
        archive_url=service.archive_url(campaign) if service.is_archived(campaign) else None,
        max_test=previews.MAX_TEST_ADDRESSES,
        me=current_user.email,
        # The send panel (issue 5): schedule, send now, progress, pause/resume/cancel.
        **send_panel_context(campaign, embedded=True),
    )


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def edit(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    if campaign.status_enum not in service.EDITABLE_STATUSES:
        flash(f"This campaign is {campaign.status}: it can't be edited. Duplicate it.", "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    if request.method == "GET":
        return _render_editor(service.input_of(db.session, campaign), campaign=campaign)
    data = input_from_form(request.form)
    try:
        service.update_campaign(db.session, campaign, data)
    except CampaignInvalid as error:
        db.session.rollback()
        return _render_editor(data, campaign=campaign, problems=error.problems, status=422)
    except CampaignConflict as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign_id))
    db.session.commit()
    flash("Saved.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/preview-draft", methods=["POST"])
@role_required(Role.ORGANIZER)
def preview_draft() -> ResponseReturnValue:
    """The live preview: renders the unsaved form, saves nothing, tracks nothing."""
    data = input_from_form(request.form)
    language = request.form.get("preview_language", data.default_language)
    result = previews.preview_input(db.session, data, language=language)
    db.session.rollback()  # nothing to keep: a preview reads only
    defaults = service.button_urls(v.fields for v in data.variants.values())
    body: dict[str, Any] = {
        "language": result.language,
        "problems": [_problem_json(p) for p in result.problems],
        "links": [{"url": url, "petition_default": url in defaults} for url in result.links],
    }
    if result.preview is not None:
        body.update(
            subject=result.preview.subject,
            html=result.preview.html,
            text=result.preview.text,
            recipient=result.preview.recipient_label,
            notes=list(result.preview.notes),
        )
    return jsonify(body)


@bp.route("/<int:campaign_id>/delete", methods=["POST"])
@role_required(Role.ORGANIZER)
def delete(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    name = campaign.name
    try:
        service.delete_campaign(db.session, campaign)
    except CampaignConflict as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign_id))
    db.session.commit()
    flash(f"“{name}” is deleted.", "success")
    return redirect(url_for("main.campaigns"))


@bp.route("/<int:campaign_id>/duplicate", methods=["POST"])
@role_required(Role.ORGANIZER)
def duplicate(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    copy = service.duplicate_campaign(db.session, campaign, actor_id=current_user.id)
    db.session.commit()
    flash(f"This is a new draft copied from “{campaign.name}”.", "success")
    return redirect(url_for("campaigns.edit", campaign_id=copy.id))


@bp.route("/<int:campaign_id>/links", methods=["POST"])
@role_required(Role.ORGANIZER)
def links(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    checked = {_int_or_none(v) for v in request.form.getlist("petition")}
    flags = {link.id: link.id in checked for link in campaign.links}
    service.set_petition_flags(db.session, campaign, flags)
    db.session.commit()
    count = sum(flags.values())
    flash(f"{count} petition link{'s' if count != 1 else ''} marked.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id) + "#links")


def _preview_member() -> Member | None:
    member_id = _int_or_none(request.args.get("member"))
    if member_id is None or member_id < 1:
        return None
    member = db.session.get(Member, member_id)
    if member is None:
        abort(404)
    return member


@bp.route("/<int:campaign_id>/preview")
@role_required(Role.ORGANIZER)
def preview(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    member = _preview_member()
    language = request.args.get("lang") or campaign.default_language
    view = request.args.get("view", "html")
    width = 375 if request.args.get("width") == "375" else 600
    query = request.args.get("q", "")
    found = previews.find_members(db.session, query) if query else []
    shown = previews.preview_campaign(db.session, campaign, member=member, language=language)
    state = {
        "member": member.id if member is not None else None,
        "lang": None if member is not None else shown.language,
        "view": view,
        "width": width,
    }

    def link(**changes: Any) -> str:
        args = {k: v for k, v in {**state, **changes}.items() if v is not None}
        return url_for("campaigns.preview", campaign_id=campaign.id, **args)

    frame_args: dict[str, Any] = {"member": state["member"], "lang": state["lang"]}
    return render_template(
        "campaigns/preview.html",
        campaign=campaign,
        member=member,
        preview=shown,
        view=view,
        width=width,
        query=query,
        found=found,
        link=link,
        frame_url=url_for(
            "campaigns.preview_frame",
            campaign_id=campaign.id,
            **{k: v for k, v in frame_args.items() if v is not None},
        ),
        language_names=LANGUAGE_NAMES,
        variant_languages=[v.language for v in campaign.variants],
    )


@bp.route("/<int:campaign_id>/preview/frame")
@role_required(Role.ORGANIZER)
def preview_frame(campaign_id: int) -> ResponseReturnValue:
    """The email alone, for the sandboxed iframe: strict CSP, no scripts, nothing tracked."""
    campaign = _campaign_or_404(campaign_id)
    shown = previews.preview_campaign(
        db.session, campaign, member=_preview_member(), language=request.args.get("lang")
    )
    return email_response(shown.html, EMAIL_CSP)


def email_response(html: str, csp: str) -> Response:
    """Serve a rendered email as a page of its own, links opening in a new tab."""
    # <base target> makes links leave the sandboxed frame instead of loading inside it.
    page = html.replace("<head>", '<head><base target="_blank">', 1)
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:campaign_id>/test-send", methods=["POST"])
@role_required(Role.ORGANIZER)
@limiter.limit("30 per hour")
def test_send(campaign_id: int) -> ResponseReturnValue:
    campaign = _campaign_or_404(campaign_id)
    language = request.form.get("language") or None
    member_id = _int_or_none(request.form.get("member_id"))
    try:
        sent_to = previews.request_test_send(
            db.session,
            campaign,
            request.form.get("emails", ""),
            language=language,
            member_id=member_id,
        )
    except CampaignInvalid as error:
        db.session.rollback()
        for problem in error.problems:
            flash(f"Test not sent. {problem_label(problem)}: {problem.message}", "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id) + "#test")
    except CampaignError as error:
        db.session.rollback()
        flash(f"Test not sent: {error}", "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id) + "#test")
    db.session.commit()
    flash(
        f"A test is on its way to {', '.join(sent_to)}. Its subject starts with [TEST].", "success"
    )
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id) + "#test")
