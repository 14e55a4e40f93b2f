"""Public endpoints for members and SendGrid: tracking pixel and redirects, unsubscribe, webhooks.

No login, no session and no CSRF token (mail clients, RFC 8058 one-click POSTs and SendGrid
cannot send one); each request carries its own proof: a signed delivery token or a webhook
signature. Exempt from the login rate limits: these answer mail clients at volume.
"""

from __future__ import annotations

from flask import Flask, request

from app.extensions import csrf, limiter
from app.public import actions, bench, tracking, unsubscribe, webhooks
from app.services.tracking import runtime as tracking_runtime

# Hosted actions flag rather than refuse a busy address (a union hall): no limit either.
_UNLIMITED = frozenset(
    bp.name for bp in (tracking.bp, unsubscribe.bp, webhooks.bp, bench.bp, actions.bp)
)


# Registered once, at import: one limiter serves every app of the process. A request filter
# is Flask-Limiter's cheapest way out: it answers before any limit or blueprint exemption is
# resolved, which costs the open pixel ~20 us a request.
@limiter.request_filter
def _unlimited() -> bool:
    return request.blueprint in _UNLIMITED


def init_public(app: Flask) -> None:
    tracking_runtime.init_app(app)
    for blueprint in (tracking.bp, unsubscribe.bp, webhooks.bp):
        csrf.exempt(blueprint)
        app.register_blueprint(blueprint)
    # The hosted action page checks its own POSTs without a session (a signed form token and
    # the browser's cross-site headers, actions.sign); only its confirm page keeps CSRFProtect.
    actions.init_app(app)
    app.register_blueprint(actions.bp)
    if app.config.get("BENCH_ROUTES"):
        csrf.exempt(bench.bp)
        app.register_blueprint(bench.bp)
