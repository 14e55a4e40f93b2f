"""`/u/<token>`: the unsubscribe page and preference centre, and RFC 8058 one-click POSTs.

GET never changes anything (link scanners and prefetchers follow every link). A POST with
`List-Unsubscribe=One-Click` (urlencoded or multipart, from a mail client: no cookie, no CSRF
token) unsubscribes at once and answers 200 without a redirect. The page's own form posts to
the same token URL: the signed token is the member's capability, so a forged cross-site post
could do no more than the one-click POST the token already allows; no session is needed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from app.extensions import db
from app.models import Delivery, UnsubscribeSource
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


def _delivery(token: str) -> Delivery:
    ref = runtime().signer.verify(token)
    if ref is None:
        abort(404)
    delivery = db.session.get(Delivery, ref.delivery_id)
    if delivery is None or delivery.campaign_id != ref.campaign_id:
        abort(404)
    return delivery


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(template, **context), status, _HEADERS


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> ResponseReturnValue:
    return _page("public/invalid.html", 404, t=unsubscribe_page.strings("en"), lang="en")


@bp.route("/u/<token>", methods=["GET"])
def page(token: str) -> ResponseReturnValue:
    delivery = _delivery(token)
    view = unsubscribe_page.page_for(db.session, delivery)
    return _page("public/unsubscribe.html", view=view, t=view.t, lang=view.language)


def _is_one_click() -> bool:
    if request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE:
        return True
    # Some clients send the pair with another content type; the body is all that matters.
    raw = request.get_data(cache=True, as_text=True)[:100].strip()
    return raw == f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"


@bp.route("/u/<token>", methods=["POST"])
def post(token: str) -> ResponseReturnValue:
    delivery = _delivery(token)
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

    view = unsubscribe_page.page_for(db.session, delivery)
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
    done = unsubscribe_page.page_for(db.session, delivery)
    return _page("public/unsubscribed.html", view=done, t=done.t, lang=done.language, choice=choice)
