"""The audience pages: lists, members, imports, segments and suppressions (organizers)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
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
from wtforms.fields.choices import SelectChoice

from app.extensions import db
from app.infra.bounds import as_int
from app.models import (
    ConsentBasis,
    MailingList,
    Member,
    MemberImport,
    Role,
    Segment,
    SubscriptionSource,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    UnsubscribeSource,
)
from app.models.base import utcnow
from app.services.audience import (
    consent,
    export,
    imports,
    lists,
    members,
    optin,
    segments,
    subscriptions,
)
from app.web.forms import (
    AddToListForm,
    ConsentForm,
    EditMemberForm,
    ImportForm,
    ListForm,
    NewMemberForm,
    SegmentForm,
    SuppressForm,
)
from app.web.roles import role_required

bp = Blueprint("audience", __name__)

STATUS_FILTERS = {
    "": "Everyone",
    SubscriptionStatus.SUBSCRIBED.value: "Subscribed",
    SubscriptionStatus.PENDING.value: "Waiting to confirm",
    SubscriptionStatus.UNSUBSCRIBED.value: "Unsubscribed",
}


def _list_or_404(list_id: int) -> MailingList:
    return db.session.get(MailingList, list_id) or abort(404)


def _member_or_404(member_id: int) -> Member:
    return db.session.get(Member, member_id) or abort(404)


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


def _csv_response(chunks: Any, filename: str) -> Response:
    # No stream_with_context: the chunks are read on the generator's own connection
    # (spreadsheets.stream_rows), so the request's session is released when the view returns.
    response = Response(chunks, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


# Every POST here is checked by CSRFProtect (app.extensions.csrf): forms send csrf_token, the
# live segment count sends the X-CSRFToken header.


# ---- lists -----------------------------------------------------------------------------------


@bp.route("/lists")
@role_required(Role.ORGANIZER)
def lists_page() -> ResponseReturnValue:
    all_lists = lists.all_lists(db.session)
    counts = lists.list_counts(db.session)
    member_count = db.session.scalar(sa.select(sa.func.count()).select_from(Member)) or 0
    return render_template(
        "audience/lists.html",
        lists=all_lists,
        counts=counts,
        empty=lists.ListCounts(),
        member_count=member_count,
    )


@bp.route("/lists/new", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def new_list() -> ResponseReturnValue:
    form = ListForm()
    if form.validate_on_submit():
        try:
            created = lists.create_list(
                db.session,
                name=form.name.data or "",
                description=form.description.data or "",
                is_public=bool(form.is_public.data),
                opt_in=form.opt_in.data or "single",
            )
        except lists.ListError as exc:
            db.session.rollback()
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            db.session.commit()
            flash(f"The list {created.name} is ready. Add people by importing a file.", "success")
            return redirect(url_for("audience.list_page", list_id=created.id))
    status = 422 if form.errors else 200
    return render_template("audience/list_form.html", form=form, mailing_list=None), status


@bp.route("/lists/<int:list_id>/edit", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def edit_list(list_id: int) -> ResponseReturnValue:
    mailing_list = _list_or_404(list_id)
    form = ListForm(obj=mailing_list)
    if form.validate_on_submit():
        try:
            lists.update_list(
                db.session,
                mailing_list,
                name=form.name.data or "",
                description=form.description.data or "",
                is_public=bool(form.is_public.data),
                opt_in=form.opt_in.data or "single",
            )
        except lists.ListError as exc:
            db.session.rollback()
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            db.session.commit()
            flash("Saved.", "success")
            return redirect(url_for("audience.list_page", list_id=list_id))
    status = 422 if form.errors else 200
    return render_template("audience/list_form.html", form=form, mailing_list=mailing_list), status


@bp.route("/lists/<int:list_id>/delete", methods=["POST"])
@role_required(Role.ORGANIZER)
def delete_list(list_id: int) -> ResponseReturnValue:
    mailing_list = _list_or_404(list_id)
    try:
        lists.delete_list(db.session, mailing_list)
    except lists.ListError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("audience.list_page", list_id=list_id))
    db.session.commit()
    flash(f"The list {mailing_list.name} was deleted; its members are still in Rallypoint.", "info")
    return redirect(url_for("audience.lists_page"))


@bp.route("/lists/<int:list_id>")
@role_required(Role.ORGANIZER)
def list_page(list_id: int) -> ResponseReturnValue:
    mailing_list = _list_or_404(list_id)
    search = (request.args.get("q") or "").strip()[:200]
    status = request.args.get("status", "")
    if status not in STATUS_FILTERS:
        status = ""
    page = lists.list_members(
        db.session, list_id, search=search, status=status or None, page=_page()
    )
    counts = lists.list_counts(db.session, [list_id]).get(list_id, lists.ListCounts())
    expiring = lists.expiring_consent_count(db.session, list_id)
    snippet = None
    if mailing_list.is_public:
        snippet = render_template(
            "subscribe/embed_snippet.html",
            mailing_list=mailing_list,
            action=current_app.config["PUBLIC_BASE_URL"]
            + url_for("subscribe.embed", slug=mailing_list.slug),
            form_token=optin.form_token(current_app.config["SECRET_KEY"], mailing_list.id),
        ).strip()
    recent_imports = db.session.scalars(
        sa.select(MemberImport)
        .where(MemberImport.list_id == list_id)
        .order_by(MemberImport.id.desc())
        .limit(5)
    ).all()
    return render_template(
        "audience/list.html",
        mailing_list=mailing_list,
        page=page,
        counts=counts,
        expiring=expiring,
        search=search,
        status=status,
        status_filters=STATUS_FILTERS,
        snippet=snippet,
        public_url=current_app.config["PUBLIC_BASE_URL"]
        + url_for("subscribe.hosted", slug=mailing_list.slug),
        recent_imports=recent_imports,
        now=utcnow(),
    )


@bp.route("/lists/<int:list_id>/export.csv")
@role_required(Role.ORGANIZER)
def export_list(list_id: int) -> ResponseReturnValue:
    mailing_list = _list_or_404(list_id)
    status = request.args.get("status") or SubscriptionStatus.SUBSCRIBED.value
    statuses = [s.value for s in SubscriptionStatus] if status == "all" else [status]
    if not set(statuses) <= {s.value for s in SubscriptionStatus}:
        abort(400)
    chunks = export.export_list(db.session, mailing_list, statuses)
    return _csv_response(chunks, f"{mailing_list.slug}-{status}.csv")


# ---- imports ---------------------------------------------------------------------------------


def _import_form() -> ImportForm:
    form = ImportForm()
    form.consent.choices = [
        SelectChoice(c.value, label) for c, label in imports.CONSENT_CHOICES.items()
    ]
    if not form.consent.data:
        form.consent.data = imports.ImportConsent.MEMBERSHIP.value
    return form


@bp.route("/lists/<int:list_id>/import", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def import_page(list_id: int) -> ResponseReturnValue:
    mailing_list = _list_or_404(list_id)
    form = _import_form()
    if form.validate_on_submit():
        try:
            job = imports.queue_upload(
                db.session,
                form.file.data,
                list_id=list_id,
                import_dir=current_app.config["IMPORT_DIR"],
                origin="web",
                user_id=current_user.id,
                consent=form.consent.data or "none",
            )
        except imports.CsvRefused as exc:
            db.session.rollback()
            form.file.errors = [*form.file.errors, exc.message]
        else:
            db.session.commit()
            return redirect(url_for("audience.import_status_page", import_id=job.id))
    status = 422 if form.errors else 200
    return render_template(
        "audience/import.html",
        form=form,
        mailing_list=mailing_list,
        max_mb=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024),
    ), status


def _import_or_404(import_id: int) -> MemberImport:
    return db.session.get(MemberImport, import_id) or abort(404)


@bp.route("/imports/<int:import_id>")
@role_required(Role.ORGANIZER)
def import_status_page(import_id: int) -> ResponseReturnValue:
    job = _import_or_404(import_id)
    mailing_list = db.session.get(MailingList, job.list_id) if job.list_id else None
    status = imports.import_status(db.session, job)
    first_issues = list(imports.issues_of(db.session, job.id, limit=20))
    return render_template(
        "audience/import_status.html",
        job=job,
        mailing_list=mailing_list,
        status=status,
        issues=first_issues,
        outcomes=imports.ISSUE_OUTCOMES,
    )


@bp.route("/imports/<int:import_id>/status.json")
@role_required(Role.ORGANIZER)
def import_status_json(import_id: int) -> ResponseReturnValue:
    job = _import_or_404(import_id)
    response = jsonify(imports.import_status(db.session, job))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/imports/<int:import_id>/issues.csv")
@role_required(Role.ORGANIZER)
def import_issues_csv(import_id: int) -> ResponseReturnValue:
    job = _import_or_404(import_id)
    chunks = export.issues_csv(db.session, job.id)
    return _csv_response(chunks, f"import-{job.id}-rows-to-check.csv")


# ---- members ---------------------------------------------------------------------------------


@bp.route("/members")
@role_required(Role.ORGANIZER)
def members_page() -> ResponseReturnValue:
    search = (request.args.get("q") or "").strip()[:200]
    page = lists.list_members(db.session, None, search=search, page=_page())
    return render_template("audience/members.html", page=page, search=search)


@bp.route("/members/new", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def new_member() -> ResponseReturnValue:
    form = NewMemberForm()
    form.list_id.choices = [SelectChoice(0, "— none —")] + [
        SelectChoice(lst.id, lst.name) for lst in lists.all_lists(db.session)
    ]
    preselected = request.args.get("list_id", "")
    if request.method == "GET" and as_int(preselected) is not None:
        form.list_id.data = int(preselected)
    if form.validate_on_submit():
        try:
            member = members.create_member(
                db.session,
                email=form.email.data or "",
                first_name=form.first_name.data,
                last_name=form.last_name.data,
                language=form.language.data,
                postal_code=form.postal_code.data,
                local=form.local.data,
            )
            outcome = None
            if form.list_id.data:
                target = _list_or_404(form.list_id.data)
                outcome = optin.subscribe(
                    db.session, member, target, source=SubscriptionSource.ADMIN
                )
        except members.MemberError as exc:
            db.session.rollback()
            field = getattr(form, exc.field or "email", form.email)
            field.errors = [*field.errors, str(exc)]
        else:
            db.session.commit()
            message = f"{member.email} was added."
            if outcome is optin.SubscribeOutcome.PENDING:
                message += " They will get an email to confirm their subscription."
            elif outcome is optin.SubscribeOutcome.BLOCKED:
                message += " Their address is suppressed, so they were not added to the list."
            flash(message, "success")
            return redirect(url_for("audience.member_page", member_id=member.id))
    status = 422 if form.errors else 200
    return render_template("audience/member_new.html", form=form), status


def _attributes_text(attributes: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in sorted(attributes.items()))


def _parse_attributes(text: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            raise members.MemberError(
                f"Line {number} of the custom fields needs a name, a colon, then the value.",
                "attributes",
            )
        parsed[key.strip()] = value.strip()
    return parsed


@bp.route("/members/<int:member_id>", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def member_page(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    form = EditMemberForm(obj=member)
    status = 200
    if request.method == "GET":
        form.attributes.data = _attributes_text(member.attributes or {})
        ended = member.membership_ended_at
        form.membership_ended.data = ended.date().isoformat() if ended else ""
    elif form.validate_on_submit():
        try:
            members.update_member(
                db.session,
                member,
                first_name=form.first_name.data,
                last_name=form.last_name.data,
                language=form.language.data,
                postal_code=form.postal_code.data,
                local=form.local.data,
                attributes=_parse_attributes(form.attributes.data or ""),
            )
            ended_at = members.parse_date(form.membership_ended.data or "")
            if ended_at != member.membership_ended_at:
                consent.set_membership_end(db.session, member, ended_at)
        except members.MemberError as exc:
            db.session.rollback()
            member = _member_or_404(member_id)
            field = getattr(form, exc.field or "membership_ended", form.membership_ended)
            field.errors = [*field.errors, str(exc)]
            status = 422
        else:
            db.session.commit()
            flash("Saved.", "success")
            return redirect(url_for("audience.member_page", member_id=member_id))
    else:
        status = 422
    subs = members.subscriptions_of(db.session, member.id)
    subscribed_ids = {s.mailing_list.id for s in subs}
    add_form = AddToListForm()
    add_form.list_id.choices = [
        SelectChoice(lst.id, lst.name)
        for lst in lists.all_lists(db.session)
        if lst.id not in subscribed_ids
    ]
    return render_template(
        "audience/member.html",
        member=member,
        form=form,
        consent_form=ConsentForm(),
        add_form=add_form,
        subscriptions=subs,
        suppression=members.suppression_of(db.session, member.email),
        consent_state=consent.consent_state(member),
    ), status


@bp.route("/members/<int:member_id>/consent", methods=["POST"])
@role_required(Role.ORGANIZER)
def member_consent(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    form = ConsentForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        if form.basis.data == "none":
            consent.withdraw_consent(db.session, member)
        else:
            consent.record_consent(
                db.session,
                member,
                ConsentBasis(form.basis.data),
                source=(form.source.data or "").strip() or f"recorded by {current_user.email}",
                at=members.parse_date(form.given_on.data or ""),
                detail={"recorded_by": current_user.email},
            )
    except (consent.ConsentError, members.MemberError, ValueError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash("Consent recorded.", "success")
    return redirect(url_for("audience.member_page", member_id=member_id))


@bp.route("/members/<int:member_id>/subscribe", methods=["POST"])
@role_required(Role.ORGANIZER)
def member_subscribe(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    form = AddToListForm()
    form.list_id.choices = [SelectChoice(lst.id, lst.name) for lst in lists.all_lists(db.session)]
    if not form.validate_on_submit():
        abort(400)
    target = _list_or_404(form.list_id.data)
    outcome = optin.subscribe(db.session, member, target, source=SubscriptionSource.ADMIN)
    db.session.commit()
    messages = {
        optin.SubscribeOutcome.SUBSCRIBED: (f"Added to {target.name}.", "success"),
        optin.SubscribeOutcome.ALREADY: (f"Already on {target.name}.", "info"),
        optin.SubscribeOutcome.PENDING: (
            f"{member.email} will get an email to confirm they want to be on {target.name}.",
            "info",
        ),
        optin.SubscribeOutcome.BLOCKED: (
            "This address is suppressed, so it can't be added to a list.",
            "error",
        ),
    }
    flash(*messages[outcome])
    return redirect(url_for("audience.member_page", member_id=member_id))


@bp.route("/members/<int:member_id>/unsubscribe", methods=["POST"])
@role_required(Role.ORGANIZER)
def member_unsubscribe(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    raw = request.form.get("list_id", "")
    list_ids = None if raw == "all" else [_list_or_404(as_int(raw) or 0).id]
    changed = subscriptions.unsubscribe(
        db.session, member.id, list_ids=list_ids, source=UnsubscribeSource.ADMIN
    )
    db.session.commit()
    flash("Unsubscribed." if changed else "Nothing to change.", "success" if changed else "info")
    return redirect(url_for("audience.member_page", member_id=member_id))


@bp.route("/members/<int:member_id>/suppress", methods=["POST"])
@role_required(Role.ORGANIZER)
def member_suppress(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    subscriptions.suppress(
        db.session,
        member.email,
        SuppressionReason.MANUAL,
        detail=(request.form.get("detail") or f"by {current_user.email}")[:500],
    )
    db.session.commit()
    flash(f"{member.email} is suppressed: Rallypoint will never email it.", "success")
    return redirect(url_for("audience.member_page", member_id=member_id))


@bp.route("/members/<int:member_id>/unsuppress", methods=["POST"])
@role_required(Role.ORGANIZER)
def member_unsuppress(member_id: int) -> ResponseReturnValue:
    member = _member_or_404(member_id)
    if subscriptions.unsuppress(db.session, member.email):
        db.session.commit()
        flash("The suppression is lifted. Their lists are as they were.", "success")
    else:
        flash(
            "Only manual suppressions can be lifted: bounces and spam reports protect your "
            "sending reputation.",
            "error",
        )
    return redirect(url_for("audience.member_page", member_id=member_id))


# ---- suppressions ----------------------------------------------------------------------------


@bp.route("/suppressions", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def suppressions_page() -> ResponseReturnValue:
    form = SuppressForm()
    if form.validate_on_submit():
        try:
            address = members.clean_email(form.email.data or "")
        except members.MemberError as exc:
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            subscriptions.suppress(
                db.session, address, SuppressionReason.MANUAL, detail=form.detail.data or ""
            )
            db.session.commit()
            flash(f"{address} is suppressed.", "success")
            return redirect(url_for("audience.suppressions_page"))
    search = (request.args.get("q") or "").strip().lower()[:200]
    query = sa.select(Suppression).order_by(Suppression.created_at.desc())
    if search:
        query = query.where(Suppression.email.startswith(search, autoescape=True))
    page = _page()
    rows = db.session.scalars(query.limit(51).offset((page - 1) * 50)).all()
    return render_template(
        "audience/suppressions.html",
        form=form,
        rows=rows[:50],
        has_next=len(rows) > 50,
        page=page,
        search=search,
    ), (422 if form.errors else 200)


# ---- segments --------------------------------------------------------------------------------


@bp.route("/segments")
@role_required(Role.ORGANIZER)
def segments_page() -> ResponseReturnValue:
    rows = db.session.scalars(sa.select(Segment).order_by(Segment.name)).all()
    names = dict(db.session.execute(sa.select(MailingList.id, MailingList.name)).tuples().all())
    return render_template(
        "audience/segments.html",
        segments=rows,
        describe=lambda rule: segments.describe_rule(rule, names),
    )


def _segment_form_page(segment: Segment | None) -> ResponseReturnValue:
    form = SegmentForm(obj=segment)
    if request.method == "GET" and segment is not None:
        form.rules.data = json.dumps(segment.rules)
    problems: list[dict[str, Any]] = []
    if form.validate_on_submit():
        try:
            rules = json.loads(form.rules.data or "[]")
        except ValueError:
            rules = None
        try:
            if segment is None:
                segment = segments.create_segment(
                    db.session,
                    name=form.name.data or "",
                    rules=rules,
                    match=form.match.data,
                    description=form.description.data or "",
                )
            else:
                segments.update_segment(
                    db.session,
                    segment,
                    name=form.name.data or "",
                    rules=rules if rules is not None else "invalid",
                    match=form.match.data,
                    description=form.description.data or "",
                )
        except segments.SegmentError as exc:
            db.session.rollback()
            problems = exc.problems
        else:
            db.session.commit()
            flash("Segment saved.", "success")
            return redirect(url_for("audience.segment_page", segment_id=segment.id))
    status = 422 if (form.errors or problems) else 200
    return render_template(
        "audience/segment.html",
        form=form,
        segment=segment,
        problems=problems,
        schema=segments.editor_schema(db.session),
    ), status


@bp.route("/segments/new", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def new_segment() -> ResponseReturnValue:
    return _segment_form_page(None)


@bp.route("/segments/<int:segment_id>", methods=["GET", "POST"])
@role_required(Role.ORGANIZER)
def segment_page(segment_id: int) -> ResponseReturnValue:
    return _segment_form_page(db.session.get(Segment, segment_id) or abort(404))


@bp.route("/segments/<int:segment_id>/delete", methods=["POST"])
@role_required(Role.ORGANIZER)
def delete_segment(segment_id: int) -> ResponseReturnValue:
    segment = db.session.get(Segment, segment_id) or abort(404)
    segments.delete_segment(db.session, segment)
    db.session.commit()
    flash("Segment deleted.", "info")
    return redirect(url_for("audience.segments_page"))


@bp.route("/segments/count", methods=["POST"])
@role_required(Role.ORGANIZER)
def segment_count() -> ResponseReturnValue:
    """The live count of the rule editor: JSON in, {"count"} or 422 {"problems"} out."""
    body = request.get_json(silent=True) or {}
    try:
        count = segments.count_members(db.session, body.get("rules"), str(body.get("match", "all")))
    except segments.SegmentError as exc:
        return jsonify({"problems": exc.problems}), 422
    return jsonify({"count": count})


@bp.route("/segments/<int:segment_id>/export.csv")
@role_required(Role.ORGANIZER)
def export_segment(segment_id: int) -> ResponseReturnValue:
    segment = db.session.get(Segment, segment_id) or abort(404)
    return _csv_response(export.export_segment(db.session, segment), f"segment-{segment.id}.csv")
