"""The JSON API under /api/v1: flask-smorest blueprints, bearer tokens, one error shape."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from app.api import audience, campaigns, me, petitions, sending, stats, users
from app.api.openapi import ErrorEnvelopePlugin
from app.api.schemas import ErrorSchema
from app.extensions import api, csrf
from app.web import render_http_error

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int, message: str, details: Any = None, code: str | None = None
) -> Response:
    """The one error shape of the API: {"error": {"code", "message", "details"}}."""
    response = jsonify(
        {
            "error": {
                "code": code or ERROR_CODES.get(status, "error"),
                "message": message,
                "details": details if details is not None else {},
            }
        }
    )
    response.status_code = status
    return response


def _is_api_request() -> bool:
    return request.path.startswith("/api/")


def handle_http_exception(exc: HTTPException) -> Any:
    """API paths get the JSON error shape; web pages get an HTML error page."""
    if not _is_api_request():
        return render_http_error(exc)
    status = exc.code or 500
    details: Any = None
    data = getattr(exc, "data", None) or {}
    if "messages" in data:  # webargs/marshmallow validation errors
        details = data["messages"]
        message = "The request has invalid fields."
    else:
        message = data.get("message") or exc.description or exc.name
        details = data.get("details")
    response = error_response(status, message, details)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="rallypoint"'
    return response


def init_api(app: Flask) -> None:
    # The document's Error schema is the envelope error_response() writes (flask-smorest's
    # default, {code, status, message, errors}, is not what the API answers).
    api.ERROR_SCHEMA = ErrorSchema
    api.init_app(app, spec_kwargs={"extra_plugins": [ErrorEnvelopePlugin()]})
    # smorest registered its own HTTPException handler; ours keeps HTML pages HTML.
    app.register_error_handler(HTTPException, handle_http_exception)
    blueprints = (
        me.blp,
        users.blp,
        audience.blp,
        campaigns.blp,
        sending.blp,
        stats.blp,
        petitions.blp,
    )
    for blueprint in blueprints:
        api.register_blueprint(blueprint, url_prefix=f"/api/v1{blueprint.url_prefix or ''}")
        # Bearer tokens, not cookies, authenticate the API: CSRF does not apply.
        csrf.exempt(blueprint)

    @app.route("/api/v1/docs")
    def api_docs() -> str:
        return render_template("pages/api_docs.html", spec=api.spec.to_dict())

    @app.route("/api/v1/<path:_rest>")
    def api_not_found(_rest: str) -> Response:
        return error_response(404, "No such API endpoint.")
