"""`/u/<token>`: the unsubscribe page and preference centre, and RFC 8058 one-click POSTs.

Only unsubscribe-scope tokens open it (services/tokens.py): the open pixel's and the click
links' tokens are a 404, so a pixel URL seen by an image proxy or a log cannot unsubscribe
anyone or show their address. Legacy (unscoped) tokens from emails sent before scopes work
for LEGACY_UNSUBSCRIBE_DAYS after sending, with the address masked.

GET never changes anything (link scanners and prefetchers follow every link). A POST with
`List-Unsubscribe=One-Click` (urlencoded or multipart, from a mail client: no cookie, no CSRF
token) unsubscribes at once and answers 200 without a redirect. The page's own form posts to
the same token URL: the signed token is the member's capability, so a forged cross-site post
could do no more than the one-click POST the token already allows; no session is needed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from app.extensions import db
from app.infra.tokens import LEGACY_UNSUBSCRIBE_DAYS, DeliveryRef, Scope
from app.models import Delivery, UnsubscribeSource
from app.models.base import utcnow
from app.services.tracking import unsubscribe_page
from app.services.tracking.hits import campaign_list_ids, record_unsubscribe
from app.services.tracking.runtime import runtime

bp = Blueprint("unsubscribe", __name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
}


def _ref(token: str) -> DeliveryRef:
    ref = runtime().signer.verify(token, Scope.UNSUBSCRIBE)
    if ref is None:
        abort(404)
    return ref


def _delivery(ref: DeliveryRef) -> Delivery:
    delivery = db.session.get(Delivery, ref.delivery_id)
    if delivery is None or delivery.campaign_id != ref.campaign_id:
        abort(404)
    if ref.is_legacy:
        # One token stood for pixel, links and unsubscribe in emails sent before scopes:
        # honoured only for as long as CASL wants an unsubscribe link to keep working.
        cutoff = utcnow() - timedelta(days=LEGACY_UNSUBSCRIBE_DAYS)
        if delivery.sent_at is None or delivery.sent_at < cutoff:
            abort(404)
    return delivery


def _view(ref: DeliveryRef, delivery: Delivery) -> unsubscribe_page.PageView:
    view = unsubscribe_page.page_for(db.session, delivery)
    # A legacy token may have been copied from a pixel URL: show no one the full address.
    return replace(view, email=_masked(view.email)) if ref.is_legacy else view


def _masked(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(template, **context), status, _HEADERS


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> ResponseReturnValue:
    return _page("public/invalid.html", 404, t=unsubscribe_page.strings("en"), lang="en")


@bp.route("/u/<token>", methods=["GET"])
def page(token: str) -> ResponseReturnValue:
    ref = _ref(token)
    delivery = _delivery(ref)
    view = _view(ref, delivery)
    return _page("public/unsubscribe.html", view=view, t=view.t, lang=view.language)


def _is_one_click() -> bool:
    if request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE:
        return True
    # Some clients send the pair with another content type; the body is all that matters.
    raw = request.get_data(cache=True, as_text=True)[:100].strip()
    return raw == f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"


@bp.route("/u/<token>", methods=["POST"])
def post(token: str) -> ResponseReturnValue:
    ref = _ref(token)
    delivery = _delivery(ref)
    if _is_one_click():
        lists = campaign_list_ids(db.session, delivery.campaign_id) or None
        record_unsubscribe(
            db.session, delivery.id, list_ids=lists, source=UnsubscribeSource.ONE_CLICK
        )
        db.session.commit()
        # RFC 8058: a 2xx, no redirect, nothing to confirm.
        return Response(
            "Unsubscribed.\n", 200, {**_HEADERS, "Content-Type": "text/plain; charset=utf-8"}
        )

    view = _view(ref, delivery)
    try:
        choice = unsubscribe_page.parse_choice(request.form, view)
    except unsubscribe_page.ChoiceError:
        return _page(
            "public/unsubscribe.html", 400, view=view, t=view.t, lang=view.language, error=True
        )
    if choice.list_ids is None or choice.list_ids:
        record_unsubscribe(
            db.session, delivery.id, list_ids=choice.list_ids, source=UnsubscribeSource.LINK
        )
        db.session.commit()
    done = _view(ref, delivery)
    return _page("public/unsubscribed.html", view=done, t=done.t, lang=done.language, choice=choice)
