"""Public subscribe forms (hosted page and embeddable snippet) and double opt-in confirmation.

The hosted page carries the session CSRF token like every form. The embeddable snippet lives
on another site, where our session cookie is not sent (SameSite=Lax) and no CSRF token can be
read, so it posts to /subscribe/<slug>/embed with a signed token for its list instead
(optin.form_token): the server knows the form is one it issued for that public list, and
rotating SECRET_KEY revokes every snippet. Both forms are rate-limited per client address,
have a honeypot field, respect double opt-in, and answer a suppressed address exactly as any
other, so the form never reveals who is suppressed.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, SignatureExpired

from app.extensions import csrf, db, limiter
from app.models import MailingList, SubscriptionSource
from app.services.audience import lists, members, optin
from app.web.forms import ConfirmForm, SubscribeForm

bp = Blueprint("subscribe", __name__, url_prefix="/subscribe")


def _rate_limit() -> str:
    return str(current_app.config["SUBSCRIBE_RATE_LIMIT"])


def _public_list(slug: str) -> MailingList:
    return lists.public_list_by_slug(db.session, slug) or abort(404)


def _request_detail() -> dict[str, Any]:
    """What to keep as proof of consent (CASL record keeping)."""
    return {
        "ip": request.remote_addr or "",
        "user_agent": (request.user_agent.string or "")[:300],
        "page": request.path,
    }


def _handle(mailing_list: MailingList, form: SubscribeForm) -> ResponseReturnValue | None:
    """Subscribe from a valid form; the answer depends only on the list's opt-in setting."""
    done_state = "pending" if mailing_list.opt_in == "double" else "subscribed"
    if (form.website.data or "").strip():
        # A bot filled the honeypot: answer as usual, change nothing.
        return redirect(url_for("subscribe.thanks", slug=mailing_list.slug, state=done_state))
    try:
        member, _created = members.get_or_create_member(
            db.session,
            email=form.email.data or "",
            first_name=form.first_name.data,
            last_name=form.last_name.data,
            language=form.language.data,
        )
    except members.MemberError as exc:
        db.session.rollback()
        field = getattr(form, exc.field or "email", form.email)
        field.errors = [*field.errors, str(exc)]
        return None
    outcome = optin.subscribe(
        db.session,
        member,
        mailing_list,
        source=SubscriptionSource.FORM,
        detail=_request_detail(),
    )
    db.session.commit()
    state = "pending" if outcome is optin.SubscribeOutcome.PENDING else done_state
    return redirect(url_for("subscribe.thanks", slug=mailing_list.slug, state=state))


@bp.route("/<slug>", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def hosted(slug: str) -> ResponseReturnValue:
    mailing_list = _public_list(slug)
    form = SubscribeForm()
    if form.validate_on_submit():
        answer = _handle(mailing_list, form)
        if answer is not None:
            return answer
    status = 422 if form.errors else 200
    return render_template(
        "subscribe/form.html",
        mailing_list=mailing_list,
        form=form,
        wording=optin.form_wording(db.session, mailing_list),
    ), status


@bp.route("/<slug>/embed", methods=["POST"])
@csrf.exempt
@limiter.limit(_rate_limit)
def embed(slug: str) -> ResponseReturnValue:
    mailing_list = _public_list(slug)
    if not optin.check_form_token(
        current_app.config["SECRET_KEY"], request.form.get("form_token", ""), mailing_list.id
    ):
        abort(400, "This sign-up form is out of date. Please use the form on our site.")
    form = SubscribeForm(meta={"csrf": False})
    if form.validate():
        answer = _handle(mailing_list, form)
        if answer is not None:
            return answer
    # Invalid input: show the hosted form (with its own CSRF token) and the errors.
    return render_template(
        "subscribe/form.html",
        mailing_list=mailing_list,
        form=form,
        wording=optin.form_wording(db.session, mailing_list),
    ), 422


@bp.route("/<slug>/thanks")
def thanks(slug: str) -> ResponseReturnValue:
    mailing_list = _public_list(slug)
    state = "pending" if request.args.get("state") == "pending" else "subscribed"
    return render_template("subscribe/thanks.html", mailing_list=mailing_list, state=state)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def confirm(token: str) -> ResponseReturnValue:
    """GET shows a button, POST confirms: link scanners that fetch every URL in an email
    would otherwise confirm subscriptions nobody asked for."""
    form = ConfirmForm()
    if request.method == "GET":
        state, list_id = _peek(token)
        mailing_list = db.session.get(MailingList, list_id) if list_id else None
        if state == "expired":
            return render_template("subscribe/confirmed.html", outcome="expired"), 410
        if mailing_list is None:
            return render_template("subscribe/confirmed.html", outcome="invalid"), 404
        return render_template(
            "subscribe/confirm.html", form=form, mailing_list=mailing_list, token=token
        )
    if not form.validate_on_submit():
        abort(400)
    result = optin.confirm(
        db.session, current_app.config["SECRET_KEY"], token, detail=_request_detail()
    )
    db.session.commit()
    status = (
        200
        if result.outcome in ("confirmed", "already")
        else (410 if result.outcome == "expired" else 404)
    )
    return render_template(
        "subscribe/confirmed.html", outcome=result.outcome.value, mailing_list=result.mailing_list
    ), status


def _peek(token: str) -> tuple[str, int | None]:
    try:
        _member_id, list_id, _email = optin.read_confirmation_token(
            current_app.config["SECRET_KEY"], token
        )
    except SignatureExpired:
        return "expired", None
    except BadSignature:
        return "invalid", None
    return "ok", list_id
