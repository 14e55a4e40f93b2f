"""/api/v1 audience endpoints: lists, members, subscriptions, suppressions, segments, imports.

Every endpoint needs the organizer role (viewers read stats only). Errors use the API's one
shape: {"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

from typing import Any, NoReturn

import sqlalchemy as sa
from flask import Response, current_app, url_for
from flask.views import MethodView
from flask_smorest import abort

from app.api.auth import api_role, current_api_user
from app.api.blueprint import Blueprint
from app.api.errors import status_of
from app.api.schemas import CSV_BODY
from app.api.schemas.audience import (
    ChangedSchema,
    ConsentInputSchema,
    CountSchema,
    ImportFileSchema,
    ImportFormSchema,
    ImportStatusSchema,
    IssueArgsSchema,
    IssueSchema,
    ListSchema,
    ListUpdateSchema,
    MemberCreateSchema,
    MemberPageSchema,
    MemberSchema,
    MemberUpdateSchema,
    OutcomeSchema,
    PageArgsSchema,
    SegmentCountInputSchema,
    SegmentSchema,
    SegmentUpdateSchema,
    SubscribeSchema,
    SuppressionArgsSchema,
    SuppressionSchema,
    UnsubscribeSchema,
)
from app.extensions import db
from app.models import (
    ConsentBasis,
    ImportIssue,
    MailingList,
    Member,
    MemberImport,
    Role,
    Segment,
    SubscriptionSource,
    Suppression,
    SuppressionReason,
    UnsubscribeSource,
)
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

blp = Blueprint(
    "audience_api",
    __name__,
    url_prefix="",
    description="Lists, members, consent, suppressions, segments and imports (organizers)",
)


def _fail(status: int, message: str, details: Any = None) -> NoReturn:
    if details is None:
        abort(status, message=message)
    else:
        abort(status, message=message, details=details)
    raise AssertionError("abort raises")


# ---- helpers ---------------------------------------------------------------------------------


def _list(list_id: int) -> MailingList:
    return db.session.get(MailingList, list_id) or _fail(404, "No such list.")


def _member(member_id: int) -> Member:
    return db.session.get(Member, member_id) or _fail(404, "No such member.")


def _segment(segment_id: int) -> Segment:
    return db.session.get(Segment, segment_id) or _fail(404, "No such segment.")


def _list_data(mailing_list: MailingList, counts: lists.ListCounts) -> dict[str, Any]:
    return {
        "id": mailing_list.id,
        "name": mailing_list.name,
        "slug": mailing_list.slug,
        "description": mailing_list.description,
        "is_public": mailing_list.is_public,
        "opt_in": mailing_list.opt_in,
        "created_at": mailing_list.created_at,
        "counts": {
            "subscribed": counts.subscribed,
            "unsubscribed": counts.unsubscribed,
            "pending": counts.pending,
        },
    }


def _member_data(member: Member, *, detail: bool = False) -> dict[str, Any]:
    state = consent.consent_state(member)
    data: dict[str, Any] = {
        "id": member.id,
        "email": member.email,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "language": member.language,
        "postal_code": member.postal_code,
        "local": member.local,
        "attributes": member.attributes or {},
        "membership_ended_at": member.membership_ended_at,
        "consent": {
            "basis": member.consent_basis,
            "source": member.consent_source,
            "given_at": member.consent_at,
            "expires_at": member.consent_expires_at,
            "state": state.state,
            "can_send": state.can_send,
        },
        "created_at": member.created_at,
        "updated_at": member.updated_at,
    }
    if detail:
        data["suppressed"] = members.suppression_of(db.session, member.email) is not None
        data["subscriptions"] = [
            {
                "list_id": s.mailing_list.id,
                "list_name": s.mailing_list.name,
                "status": s.subscription.status,
                "source": s.subscription.source,
                "subscribed_at": s.subscription.subscribed_at,
                "unsubscribed_at": s.subscription.unsubscribed_at,
            }
            for s in members.subscriptions_of(db.session, member.id)
        ]
    return data


def _csv(chunks: Any, filename: str) -> Response:
    # No stream_with_context: the chunks are read on the generator's own connection.
    response = Response(chunks, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ---- lists -----------------------------------------------------------------------------------


@blp.route("/lists")
class Lists(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, ListSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every list with its subscriber counts."""
        counts = lists.list_counts(db.session)
        return [
            _list_data(lst, counts.get(lst.id, lists.ListCounts()))
            for lst in lists.all_lists(db.session)
        ]

    @api_role(Role.ORGANIZER)
    @blp.arguments(ListSchema)
    @blp.response(201, ListSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a list."""
        try:
            created = lists.create_list(db.session, **data)
        except lists.ListError as exc:
            db.session.rollback()
            _fail(status_of(exc), str(exc))
        db.session.commit()
        return _list_data(created, lists.ListCounts())


@blp.route("/lists/<int:list_id>")
class OneList(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, ListSchema)
    def get(self, list_id: int) -> dict[str, Any]:
        """A list, its counts and how many subscribers' consent expires within 60 days."""
        mailing_list = _list(list_id)
        counts = lists.list_counts(db.session, [list_id]).get(list_id, lists.ListCounts())
        return {
            **_list_data(mailing_list, counts),
            "consent_expiring_soon": lists.expiring_consent_count(db.session, list_id),
        }

    @api_role(Role.ORGANIZER)
    @blp.arguments(ListUpdateSchema)
    @blp.response(200, ListSchema)
    def patch(self, data: dict[str, Any], list_id: int) -> dict[str, Any]:
        """Change a list's name, description, visibility or opt-in."""
        mailing_list = _list(list_id)
        try:
            lists.update_list(db.session, mailing_list, **data)
        except lists.ListError as exc:
            db.session.rollback()
            _fail(status_of(exc), str(exc))
        db.session.commit()
        counts = lists.list_counts(db.session, [list_id]).get(list_id, lists.ListCounts())
        return _list_data(mailing_list, counts)

    @api_role(Role.ORGANIZER)
    @blp.response(204)
    def delete(self, list_id: int) -> None:
        """Delete a list and its subscriptions (members stay)."""
        try:
            lists.delete_list(db.session, _list(list_id))
        except lists.ListError as exc:
            db.session.rollback()
            _fail(status_of(exc), str(exc))
        db.session.commit()


@blp.route("/lists/<int:list_id>/subscriptions")
class ListSubscriptions(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(SubscribeSchema)
    @blp.response(200, OutcomeSchema)
    def post(self, data: dict[str, Any], list_id: int) -> dict[str, Any]:
        """Subscribe an address (created as a member if new). Double opt-in lists, and
        anyone who unsubscribed before, get a confirmation email instead (outcome pending);
        suppressed addresses are never subscribed (outcome blocked)."""
        mailing_list = _list(list_id)
        email = data.pop("email")
        data.pop("attributes", None)
        try:
            member, _ = members.get_or_create_member(db.session, email=email, **data)
        except members.MemberError as exc:
            db.session.rollback()
            _fail(422, str(exc), {exc.field or "email": [str(exc)]})
        outcome = optin.subscribe(db.session, member, mailing_list, source=SubscriptionSource.API)
        db.session.commit()
        return {"member_id": member.id, "outcome": outcome.value}


@blp.route("/lists/<int:list_id>/subscriptions/<int:member_id>")
class ListSubscription(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, ChangedSchema)
    def delete(self, list_id: int, member_id: int) -> dict[str, int]:
        """Unsubscribe a member from this list (their queued deliveries are skipped)."""
        _list(list_id)
        _member(member_id)
        changed = subscriptions.unsubscribe(
            db.session, member_id, list_ids=[list_id], source=UnsubscribeSource.API
        )
        db.session.commit()
        return {"changed": changed}


@blp.route("/lists/<int:list_id>/export")
class ListExport(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, CSV_BODY, content_type="text/csv", description="CSV, formula-safe")
    def get(self, list_id: int) -> Response:
        """The list's subscribed members as CSV (streamed; cells that a spreadsheet would run
        as formulas start with an apostrophe)."""
        mailing_list = _list(list_id)
        return _csv(export.export_list(db.session, mailing_list), f"{mailing_list.slug}.csv")


# ---- members ---------------------------------------------------------------------------------


@blp.route("/members")
class Members(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, MemberPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Members, newest first; search by email or name, optionally within one list."""
        if args["list_id"] is not None:
            _list(args["list_id"])
        page = lists.list_members(
            db.session,
            args["list_id"],
            search=args["q"],
            status=args["status"],
            page=args["page"],
            per_page=args["per_page"],
        )
        return {
            "items": [_member_data(m) for m, _ in page.rows],
            "page": page.page,
            "per_page": page.per_page,
            "has_next": page.has_next,
        }

    @api_role(Role.ORGANIZER)
    @blp.arguments(MemberCreateSchema)
    @blp.response(201, MemberSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a member, and subscribe them to `list_ids`."""
        list_ids = data.pop("list_ids")
        targets = [_list(list_id) for list_id in list_ids]
        try:
            member = members.create_member(db.session, **data)
        except members.MemberError as exc:
            db.session.rollback()
            _fail(status_of(exc), str(exc), {exc.field or "email": [str(exc)]})
        for target in targets:
            optin.subscribe(db.session, member, target, source=SubscriptionSource.API)
        db.session.commit()
        return _member_data(member, detail=True)


@blp.route("/members/<int:member_id>")
class OneMember(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, MemberSchema)
    def get(self, member_id: int) -> dict[str, Any]:
        """A member with consent, suppression and subscriptions."""
        return _member_data(_member(member_id), detail=True)

    @api_role(Role.ORGANIZER)
    @blp.arguments(MemberUpdateSchema)
    @blp.response(200, MemberSchema)
    def patch(self, data: dict[str, Any], member_id: int) -> dict[str, Any]:
        """Change a member's fields (email excepted); `attributes` replaces custom fields."""
        member = _member(member_id)
        has_end = "membership_ended_at" in data
        ended_at = data.pop("membership_ended_at", None)
        try:
            members.update_member(db.session, member, **data)
            if has_end:
                consent.set_membership_end(db.session, member, ended_at)
        except members.MemberError as exc:
            db.session.rollback()
            _fail(422, str(exc), {exc.field or "member": [str(exc)]})
        db.session.commit()
        return _member_data(member, detail=True)


@blp.route("/members/<int:member_id>/consent")
class MemberConsent(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(ConsentInputSchema)
    @blp.response(200, MemberSchema)
    def post(self, data: dict[str, Any], member_id: int) -> dict[str, Any]:
        """Record (or with basis "none", withdraw) a member's CASL consent."""
        member = _member(member_id)
        try:
            if data["basis"] == "none":
                consent.withdraw_consent(db.session, member)
            else:
                consent.record_consent(
                    db.session,
                    member,
                    ConsentBasis(data["basis"]),
                    source=data["source"] or f"API: {current_api_user().email}",
                    at=data["given_at"],
                    expires_at=data["expires_at"],
                    detail={"recorded_by": current_api_user().email},
                )
        except consent.ConsentError as exc:
            db.session.rollback()
            _fail(422, str(exc))
        db.session.commit()
        return _member_data(member, detail=True)


@blp.route("/members/<int:member_id>/unsubscribe")
class MemberUnsubscribe(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(UnsubscribeSchema)
    @blp.response(200, ChangedSchema)
    def post(self, data: dict[str, Any], member_id: int) -> dict[str, int]:
        """Unsubscribe from some lists, or all of them (list_ids null)."""
        _member(member_id)
        changed = subscriptions.unsubscribe(
            db.session, member_id, list_ids=data["list_ids"], source=UnsubscribeSource.API
        )
        db.session.commit()
        return {"changed": changed}


# ---- suppressions ----------------------------------------------------------------------------


@blp.route("/suppressions")
class Suppressions(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(SuppressionArgsSchema, location="query")
    @blp.response(200, SuppressionSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[Suppression]:
        """Suppressed addresses, newest first, 100 a page."""
        query = sa.select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id)
        if args["q"]:
            query = query.where(Suppression.email.startswith(args["q"].lower(), autoescape=True))
        return list(db.session.scalars(query.limit(100).offset((args["page"] - 1) * 100)))

    @api_role(Role.ORGANIZER)
    @blp.arguments(SuppressionSchema)
    @blp.response(201, SuppressionSchema)
    def post(self, data: dict[str, Any]) -> Suppression:
        """Suppress an address (manual): never emailed again, whatever list or import."""
        try:
            address = members.clean_email(data["email"])
        except members.MemberError as exc:
            _fail(422, str(exc), {"email": [str(exc)]})
        row = subscriptions.suppress(
            db.session, address, SuppressionReason.MANUAL, detail=data["detail"]
        )
        db.session.commit()
        return row


@blp.route("/suppressions/<path:email>")
class OneSuppression(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(204)
    def delete(self, email: str) -> None:
        """Lift a manual suppression (bounces and spam reports stay: 409)."""
        if not subscriptions.is_suppressed(db.session, email):
            _fail(404, "That address is not suppressed.")
        if not subscriptions.unsuppress(db.session, email):
            _fail(409, "Only manual suppressions can be lifted.")
        db.session.commit()


# ---- segments --------------------------------------------------------------------------------


def _segment_error(exc: segments.SegmentError) -> NoReturn:
    db.session.rollback()
    _fail(422, "The segment's rules are not valid.", {"problems": exc.problems})


@blp.route("/segments")
class Segments(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, SegmentSchema(many=True))
    def get(self) -> list[Segment]:
        """Every saved segment."""
        return list(db.session.scalars(sa.select(Segment).order_by(Segment.name)))

    @api_role(Role.ORGANIZER)
    @blp.arguments(SegmentSchema)
    @blp.response(201, SegmentSchema)
    def post(self, data: dict[str, Any]) -> Segment:
        """Save a segment. Rules: [{"field", "op", "value", "key"?}]; see GET /segments/fields."""
        try:
            segment = segments.create_segment(db.session, **data)
        except segments.SegmentError as exc:
            _segment_error(exc)
        db.session.commit()
        return segment


@blp.route("/segments/fields")
class SegmentFields(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200)
    def get(self) -> dict[str, Any]:
        """The allowed fields, their operators and choices, and the lists."""
        return segments.editor_schema(db.session)


@blp.route("/segments/count")
class SegmentPreviewCount(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(SegmentCountInputSchema)
    @blp.response(200, CountSchema)
    def post(self, data: dict[str, Any]) -> dict[str, int]:
        """How many members unsaved rules select."""
        try:
            return {"count": segments.count_members(db.session, data["rules"], data["match"])}
        except segments.SegmentError as exc:
            _segment_error(exc)


@blp.route("/segments/<int:segment_id>")
class OneSegment(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, SegmentSchema)
    def get(self, segment_id: int) -> Segment:
        """A segment."""
        return _segment(segment_id)

    @api_role(Role.ORGANIZER)
    @blp.arguments(SegmentUpdateSchema)
    @blp.response(200, SegmentSchema)
    def patch(self, data: dict[str, Any], segment_id: int) -> Segment:
        """Change a segment's name, description, match or rules."""
        segment = _segment(segment_id)
        try:
            segments.update_segment(db.session, segment, **data)
        except segments.SegmentError as exc:
            _segment_error(exc)
        db.session.commit()
        return segment

    @api_role(Role.ORGANIZER)
    @blp.response(204)
    def delete(self, segment_id: int) -> None:
        """Delete a segment."""
        segments.delete_segment(db.session, _segment(segment_id))
        db.session.commit()


@blp.route("/segments/<int:segment_id>/count")
class SegmentCount(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, CountSchema)
    def get(self, segment_id: int) -> dict[str, int]:
        """How many members the segment selects now."""
        segment = _segment(segment_id)
        return {"count": segments.count_members(db.session, segment.rules, segment.match)}


@blp.route("/segments/<int:segment_id>/export")
class SegmentExport(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, CSV_BODY, content_type="text/csv", description="CSV, formula-safe")
    def get(self, segment_id: int) -> Response:
        """The segment's members as CSV (streamed, formula-safe)."""
        segment = _segment(segment_id)
        return _csv(export.export_segment(db.session, segment), f"segment-{segment.id}.csv")


# ---- imports ---------------------------------------------------------------------------------


def _import_data(job: MemberImport) -> dict[str, Any]:
    return {
        **imports.import_status(db.session, job),
        "status_url": url_for("audience_api.OneImport", import_id=job.id),
    }


@blp.route("/imports")
class Imports(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(ImportFormSchema, location="form")
    @blp.arguments(ImportFileSchema, location="files")
    @blp.response(202, ImportStatusSchema)
    @blp.alt_response(422, description="Not a CSV file, or no email column: nothing imported")
    def post(self, form: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        """Upload a member CSV (multipart: file, list_id, consent); it is imported in the
        background. Poll status_url for progress and the report."""
        _list(form["list_id"])
        try:
            job = imports.queue_upload(
                db.session,
                files["file"],
                list_id=form["list_id"],
                import_dir=current_app.config["IMPORT_DIR"],
                origin="api",
                user_id=current_api_user().id,
                consent=form["consent"],
            )
        except imports.CsvRefused as exc:
            db.session.rollback()
            _fail(422, exc.message, {"file": [exc.message]})
        db.session.commit()
        return _import_data(job)


@blp.route("/imports/<int:import_id>")
class OneImport(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, ImportStatusSchema)
    def get(self, import_id: int) -> dict[str, Any]:
        """An import's status, progress (percent) and, when done, its report."""
        job = db.session.get(MemberImport, import_id) or _fail(404, "No such import.")
        return _import_data(job)


@blp.route("/imports/<int:import_id>/issues")
class ImportIssues(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(IssueArgsSchema, location="query")
    @blp.response(200, IssueSchema(many=True))
    def get(self, args: dict[str, Any], import_id: int) -> list[Any]:
        """The rows skipped or kept off the list, with line numbers and reasons."""
        db.session.get(MemberImport, import_id) or _fail(404, "No such import.")

        return list(
            db.session.scalars(
                sa.select(ImportIssue)
                .where(ImportIssue.import_id == import_id)
                .order_by(ImportIssue.line, ImportIssue.id)
                .limit(args["per_page"])
                .offset((args["page"] - 1) * args["per_page"])
            )
        )
