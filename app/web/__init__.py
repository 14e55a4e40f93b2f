"""The server-rendered web UI: blueprints, login handling and role checks."""

from __future__ import annotations

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import db, login_manager
from app.infra.bounds import NUL
from app.models import Role, User
from app.web import (
    actions,
    archive,
    audience,
    auth,
    campaigns,
    dev,
    favicon,
    health,
    main,
    sending,
    settings,
    stats,
    subscribe,
)


def init_web(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def _load_user(session_id: str) -> User | None:
        # "<user id>:<session generation>" (User.get_id): a cookie issued before the last
        # logout, password or role change names an old generation and is anonymous now.
        user_id, _, generation = session_id.partition(":")
        if not (_is_number(user_id) and _is_number(generation)):
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.is_active or user.session_generation != int(generation):
            return None
        return user

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(audience.bp)
    app.register_blueprint(subscribe.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(campaigns.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(sending.bp)
    app.register_blueprint(dev.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(favicon.bp)

    @app.context_processor
    def _nav() -> dict[str, object]:
        return {"Role": Role}

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[str, int]:
        return render_template(
            "errors/error.html",
            code=400,
            title="This form has expired",
            message="Please go back, reload the page and try again.",
        ), 400

    app.before_request(_refuse_nul)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Only a page can be framed: images (the open pixel), JSON and CSV skip the header.
        if response.mimetype == "text/html" and not request.path.startswith("/dev/"):
            response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        return response


def _refuse_nul() -> ResponseReturnValue | None:
    """A 422 page for a NUL character in any form or query value of a page, naming the fields.

    PostgreSQL cannot store one (a 500 otherwise). The API checks its own arguments, the
    webhook and tracking endpoints read no form.
    """
    if request.path.startswith(("/api/", "/webhooks/", "/t/")):
        return None
    sources = (request.args, request.form)
    names = {
        key.replace(NUL, "")
        for source in sources
        for key, value in source.items(multi=True)
        if NUL in value or NUL in key
    }
    if not names:
        return None
    return render_template(
        "errors/error.html",
        code=422,
        title="Text cannot contain NUL characters",
        message=f"Remove the NUL character from: {', '.join(sorted(names))}.",
    ), 422


def _is_number(text: str) -> bool:
    # ASCII digits only (str.isdigit also accepts "²"), and small enough for an INTEGER.
    return text.isascii() and text.isdigit() and len(text) < 10


def render_http_error(exc: HTTPException) -> tuple[str, int]:
    """An HTML page for an HTTP error outside the API."""
    code = exc.code or 500
    titles = {
        403: "You don't have access to this page",
        404: "Page not found",
        405: "That action isn't allowed here",
        429: "Too many attempts",
    }
    return render_template(
        "errors/error.html",
        code=code,
        title=titles.get(code, exc.name),
        message=exc.description if code not in (403, 404) else "",
    ), code
