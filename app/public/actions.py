"""The hosted action page /a/<slug>: read, sign, thank-you and share; the embeddable form.

Phone-first HTML that works with no JavaScript, and no session: a spike of signers must cost
about what a bare route costs. The anonymous page (no reference, referral or source in the
address) is rendered once per language and process a moment (public.PageCache) and sets no
cookie. Its form carries a signed, dated per-action token (petitions.form_token) instead of
a session CSRF token, and the POST is refused when the browser says it comes from another
site (Sec-Fetch-Site, else Origin; the fetch-metadata defence, as Go's CrossOriginProtection
does it). A pre-filled page (?r=) is rendered for its member only, private and not stored.
The embeddable snippet lives on a union's own site and posts its own signed per-action token
(like the subscribe snippet), so that route alone takes cross-site POSTs. Not rate-limited: a
union hall signs from one address, so an address past ACTION_IP_FLAG_THRESHOLD has its
signatures flagged for review rather than refused. The signature is committed before the
redirect to the thank-you page, so a thank-you page always stands for a stored signature.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from app.extensions import csrf, db
from app.infra.redis_client import get_redis
from app.infra.tokens import ActionRef, ActionRefSigner, action_ref_signer_from_config
from app.models import ActionResponse, ActionStatus
from app.services.actions import abuse, counts, mail, petitions, reports, signing
from app.services.actions.public import PageCache, PublicAction, PublicActionCache
from app.services.actions.strings import pick_language, strings

bp = Blueprint("actions_public", __name__)

_EXT = "rallypoint.action_refs"
_CACHE = "rallypoint.public_actions"
_PAGES = "rallypoint.public_action_pages"
_PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}


def init_app(app: Flask) -> None:
    app.extensions[_EXT] = action_ref_signer_from_config(app.config["SETTINGS"])
    app.extensions[_CACHE] = PublicActionCache()
    app.extensions[_PAGES] = PageCache()


def action_cache() -> PublicActionCache:
    """This process's snapshots of public actions (app.services.actions.public)."""
    cache: PublicActionCache = current_app.extensions[_CACHE]
    return cache


def page_cache() -> PageCache:
    """This process's rendered anonymous pages (app.services.actions.public)."""
    cache: PageCache = current_app.extensions[_PAGES]
    return cache


def ref_signer() -> ActionRefSigner:
    signer: ActionRefSigner = current_app.extensions[_EXT]
    return signer


def _public_action(slug: str) -> PublicAction:
    return action_cache().get(db.session, slug) or abort(404)


def _verified_ref(slug: str, token: str | None) -> ActionRef | None:
    if not token:
        return None
    return ref_signer().verify(token[:120], slug, time.time())


def _base_url() -> str:
    return str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")


def _page_context(action: PublicAction, language: str) -> dict[str, Any]:
    version = action.version(language)
    count = counts.live_count(db.session, get_redis(), action.id)
    return {
        "action": action,
        "version": version,
        "lang": language,
        "t": strings(language),
        "count": count,
        "goal_pct": min(100, round(100 * count / action.goal)) if action.goal else None,
        "description_html": version.description_html if version else "",
        "petition_html": version.petition_html if version else "",
        "canonical": f"{_base_url()}/a/{action.slug}",
        "languages": action.languages,
        "recent": (
            reports.recent_signers(db.session, action.id) if action.show_recent_signers else []
        ),
        "consent_wording": action.consent.get(language, ""),
        "has_lists": action.has_lists,
    }


def _language(action: PublicAction, member_language: str | None = None) -> str:
    return pick_language(
        request.args.get("lang") or request.form.get("lang"),
        member_language,
        [lang for lang, _q in request.accept_languages],
        set(action.versions) or {"en"},
    )


@bp.get("/a/<slug>")
def page(slug: str) -> ResponseReturnValue:
    """The petition. A valid reference (?r=) pre-fills the member's details unless they asked
    "not you?" (?notme=1); anything else about the reference gives the ordinary page."""
    action = _public_action(slug)
    ref_token = request.args.get("r", "")
    ref = _verified_ref(slug, ref_token)
    kept = {
        "r": ref_token if ref is not None else "",
        "ref": (request.args.get("ref") or "")[:16],
        "utm_source": (request.args.get("utm_source") or "")[:100],
    }
    if not any(kept.values()):
        # The same page for every anonymous visitor: rendered once a moment, no session.
        language = _language(action)
        body = page_cache().get(action, language, lambda: _render_page(action, language).encode())
        return Response(body, 200, {"Referrer-Policy": "no-referrer"}, mimetype="text/html")
    prefill = None
    if ref is not None and request.args.get("notme") != "1":
        prefill = signing.delivery_prefill(db.session, ref.campaign_id, ref.delivery_id)
    language = _language(action, prefill.language if prefill else None)
    html = _render_page(
        action,
        language,
        prefill=prefill,
        ref_token=kept["r"],
        referral=kept["ref"],
        utm_source=kept["utm_source"],
        link_params=kept,
    )
    headers = _PRIVATE if ref is not None else {"Referrer-Policy": "no-referrer"}
    return html, 200, headers


def _render_page(
    action: PublicAction,
    language: str,
    *,
    prefill: signing.Prefill | None = None,
    ref_token: str = "",
    referral: str = "",
    utm_source: str = "",
    link_params: dict[str, str] | None = None,
    values: Any = None,
    errors: dict[str, str] | None = None,
) -> str:
    context = _page_context(action, language)
    return render_template(
        "actions/page.html",
        **context,
        form_token=petitions.form_token(current_app.config["SECRET_KEY"], action.id),
        prefill=prefill,
        ref_token=ref_token,
        referral=referral,
        utm_source=utm_source,
        lang_links=_lang_links(context["languages"], **(link_params or {})),
        values=values or {},
        errors=errors or {},
    )


def _lang_links(languages: list[str], **params: str) -> dict[str, str]:
    """The language switch keeps the reference, referral and source of the visit."""
    kept = {k: v for k, v in params.items() if v}
    return {code: "?" + urlencode({"lang": code, **kept}) for code in languages}


def _signature_from_form(language: str) -> signing.Signature:
    form = request.form
    return signing.Signature(
        email=form.get("email", ""),
        first_name=form.get("first_name", ""),
        last_name=form.get("last_name", ""),
        postal_code=form.get("postal_code", ""),
        local=form.get("local", ""),
        phone=form.get("phone", ""),
        comment=form.get("comment", ""),
        city=form.get("city", ""),
        language=language,
        consent=form.get("consent") == "yes",
    )


def _record(action: PublicAction, *, embed: bool) -> ResponseReturnValue:
    """Sign from the posted form: honeypot, references, per-address flag, commit, redirect."""
    language = _language(action)
    if (request.form.get("website") or "").strip():
        # A bot filled the honeypot: answer as for a signature, record nothing.
        return redirect(url_for("actions_public.thanks", slug=action.slug, lang=language))
    if action.status != ActionStatus.OPEN.value:
        return redirect(url_for("actions_public.page", slug=action.slug, lang=language))
    ref = _verified_ref(action.slug, request.form.get("r"))
    attribution = signing.attribution_for(
        db.session,
        action,
        delivery=(ref.campaign_id, ref.delivery_id, ref.link_id) if ref else None,
        referral_code=request.form.get("ref", ""),
        utm_source=request.form.get("utm_source", ""),
        embed=embed,
    )
    signature = _signature_from_form(language)
    ip = request.remote_addr or ""
    reason = abuse.ip_flag_reason(
        get_redis(),
        action.id,
        ip,
        threshold=int(current_app.config["ACTION_IP_FLAG_THRESHOLD"]),
    )
    try:
        outcome = signing.sign(
            db.session,
            action,
            signature,
            attribution,
            ip=ip,
            user_agent=request.user_agent.string or "",
            flag_reason=reason,
        )
    except signing.SignError as exc:
        db.session.rollback()
        return _render_page(
            action,
            language,
            ref_token=request.form.get("r", "") if ref else "",
            referral=(request.form.get("ref") or "")[:16],
            utm_source=(request.form.get("utm_source") or "")[:100],
            values=request.form,
            errors={exc.field or "email": str(exc)},
        ), 422
    code = outcome.referral_code
    pending = action.require_confirmation and outcome.created
    db.session.commit()  # durable before the thank-you page
    if outcome.counted:
        counts.note_signature(get_redis(), action.id)
    params: dict[str, Any] = {"slug": action.slug, "lang": language, "code": code}
    if pending:
        params["pending"] = "1"
    return redirect(url_for("actions_public.thanks", **params), 303)


@bp.post("/a/<slug>")
@csrf.exempt  # no session: the form token and the browser's fetch metadata instead
def sign(slug: str) -> ResponseReturnValue:
    action = _public_action(slug)
    if not _same_origin():
        return render_template(
            "errors/error.html",
            code=403,
            title="This form was sent from another site",
            message="Nothing was signed. To sign, open the petition on our site: "
            f"{_base_url()}/a/{action.slug}",
        ), 403
    token = request.form.get("form_token", "")[:200]
    max_age = current_app.config.get("WTF_CSRF_TIME_LIMIT")
    if not petitions.check_form_token(current_app.config["SECRET_KEY"], token, action.id, max_age):
        return render_template(
            "errors/error.html",
            code=400,
            title="This form has expired",
            message="Nothing was signed. Please go back, reload the page and sign again.",
        ), 400
    return _record(action, embed=False)


def _same_origin() -> bool:
    """False when the browser says this POST comes from another site.

    Sec-Fetch-Site (every current browser sends it) must be same-origin, or none (the
    person's own doing, e.g. a bookmark); without it, an Origin must name this site
    (PUBLIC_BASE_URL, or the host the request was sent to). A request with neither comes from
    no current browser (they all send Origin with a cross-origin POST): a script or an old
    browser, whose form token still has to be good. Go's net/http CrossOriginProtection
    decides the same way.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") == _base_url():
        return True
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


@bp.post("/a/<slug>/embed")
@csrf.exempt
def embed(slug: str) -> ResponseReturnValue:
    action = _public_action(slug)
    token = request.form.get("form_token", "")[:200]
    if not petitions.check_embed_token(current_app.config["SECRET_KEY"], token, action.id):
        abort(400, "This petition form is out of date. Please sign on our site.")
    return _record(action, embed=True)


def share_links(url: str, text: str, title: str) -> dict[str, str]:
    """Share addresses that carry the signer's link (no script of any network on our page)."""
    both = f"{text} {url}"
    return {
        "email": f"mailto:?{urlencode({'subject': title, 'body': both}, quote_via=quote)}",
        "whatsapp": f"https://wa.me/?{urlencode({'text': both}, quote_via=quote)}",
        "facebook": f"https://www.facebook.com/sharer/sharer.php?{urlencode({'u': url})}",
        "x": f"https://twitter.com/intent/tweet?{urlencode({'text': text, 'url': url})}",
    }


@bp.get("/a/<slug>/thanks")
def thanks(slug: str) -> ResponseReturnValue:
    action = _public_action(slug)
    language = _language(action)
    context = _page_context(action, language)
    code = (request.args.get("code") or "")[:16]
    response = None
    if code:
        response = (
            db.session.query(ActionResponse)
            .filter_by(action_id=action.id, referral_code=code)
            .one_or_none()
        )
    share_url = f"{_base_url()}/a/{action.slug}"
    brought = 0
    if response is not None:
        share_url += "?" + urlencode({"ref": response.referral_code, "utm_source": "share"})
        brought = reports.referral_count(db.session, response.id)
    version = context["version"]
    title = version.title if version else action.title
    return (
        render_template(
            "actions/thanks.html",
            **context,
            share_url=share_url,
            links=share_links(share_url, context["t"]["share_text"], title),
            brought=brought,
            pending=request.args.get("pending") == "1",
        ),
        200,
        _PRIVATE,
    )


@bp.get("/a/<slug>/count.json")
def count(slug: str) -> Response:
    action = _public_action(slug)
    value = counts.live_count(db.session, get_redis(), action.id)
    answer = make_response(jsonify({"count": value, "goal": action.goal}))
    answer.headers["Cache-Control"] = "public, max-age=2"
    return answer


@bp.route("/a/<slug>/confirm/<token>", methods=["GET", "POST"])
def confirm(slug: str, token: str) -> ResponseReturnValue:
    """A signer confirms their address: GET shows a button, the POST counts the signature
    (link scanners fetch every URL of an email; they must not confirm anything)."""
    action = _public_action(slug)
    language = _language(action)
    context = _page_context(action, language)
    found = mail.read_confirm_token(current_app.config["SECRET_KEY"], token[:300])
    response = db.session.get(ActionResponse, found[0]) if found else None
    if (
        found is None
        or response is None
        or response.action_id != action.id
        or response.email != found[1]
    ):
        return render_template("actions/confirm.html", **context, state="invalid"), 404
    if request.method == "GET":
        return render_template("actions/confirm.html", **context, state="ask", token=token)
    if signing.confirm_response(db.session, response):
        db.session.commit()
        counts.note_signature(get_redis(), action.id)
    return redirect(
        url_for(
            "actions_public.thanks", slug=action.slug, lang=language, code=response.referral_code
        ),
        303,
    )
