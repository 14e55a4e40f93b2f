"""The open pixel and the click redirect: verify the token, buffer the hit, answer at once.

Hot path (docs/benchmarks.md): no database query for an open, only a cached link
lookup for a click, and no network call at all in the request; the hit buffer's thread ships
hits to Redis (or the database).
"""

from __future__ import annotations

import base64
import time

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from app.infra.tokens import Scope
from app.public.actions import ref_signer
from app.services.tracking import unsubscribe_page
from app.services.tracking.hits import CLICK, OPEN
from app.services.tracking.runtime import runtime

bp = Blueprint("tracking", __name__)

# The classic 43-byte transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
_NO_CACHE = "no-store, no-cache, must-revalidate, private"
# Cache-Control is what mail clients' image proxies honour; Pragma and Expires (HTTP/1.0)
# would only cost the busiest response of the service two more header lines.
_PIXEL_HEADERS = {
    "Content-Type": "image/gif",
    "Cache-Control": _NO_CACHE,
    "X-Robots-Tag": "noindex, nofollow",
}


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> ResponseReturnValue:
    # A member followed a broken link: a plain page for them, not the admin's error page.
    t = unsubscribe_page.strings("en")
    page = render_template("public/invalid.html", t=t, lang="en")
    return page, 404, {"X-Robots-Tag": "noindex, nofollow", "Cache-Control": _NO_CACHE}


@bp.get("/t/o/<token>.gif")
def open_pixel(token: str) -> Response:
    """Always the GIF, even for a bad token: a broken image in a member's mail helps no one.

    A bad token records nothing; the answer does not tell a prober whether the token was
    good (forged click tokens, which would redirect, get a 404 instead).
    """
    state = runtime()
    ref = state.signer.verify(token, Scope.OPEN)
    if ref is not None:
        state.buffer.add(
            OPEN,
            ref.campaign_id,
            ref.delivery_id,
            0,
            request.remote_addr,
            request.user_agent.string,
            request.method == "HEAD",
        )
    return Response(PIXEL, headers=_PIXEL_HEADERS)


@bp.get("/t/c/<int:link_id>/<token>")
def click(link_id: int, token: str) -> Response:
    """302 to the stored URL of this campaign's link; 404 (nothing recorded) for anything else.

    The target comes only from the links table, never from the request (no open redirect):
    a query string is ignored, and a link of another campaign is refused.
    """
    state = runtime()
    ref = state.signer.verify(token, Scope.CLICK)
    if ref is None:
        abort(404)
    link = state.links.get(link_id)
    if link is None or link.campaign_id != ref.campaign_id:
        abort(404)
    state.buffer.add(
        CLICK,
        ref.campaign_id,
        ref.delivery_id,
        link_id,
        request.remote_addr,
        request.user_agent.string,
        request.method == "HEAD",
    )
    location = link.url
    if link.action_slug is not None:
        # A hosted action of ours: hand it a short-lived signed reference to this delivery,
        # so the page can greet the member and credit the alert (never the address itself).
        action_ref = ref_signer().sign(
            link.action_slug, ref.campaign_id, ref.delivery_id, link_id, time.time()
        )
        location = _with_param(location, "r", action_ref)
    return Response(
        status=302,
        headers={
            "Location": location,
            "Cache-Control": _NO_CACHE,
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow",
        },
    )


def _with_param(url: str, name: str, value: str) -> str:
    """`url` with ?name=value added before any #fragment (value is URL-safe already)."""
    url, hash_mark, fragment = url.partition("#")
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}{name}={value}{hash_mark}{fragment}"
