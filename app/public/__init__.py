"""Public endpoints for members and SendGrid: tracking pixel and redirects, unsubscribe, webhooks.

No login, no session and no CSRF token (mail clients, RFC 8058 one-click POSTs and SendGrid
cannot send one); each request carries its own proof: a signed delivery token or a webhook
signature. Exempt from the login rate limits: these answer mail clients at volume.
"""

from __future__ import annotations

from flask import Flask

from app.services import tracking_runtime


def init_public(app: Flask) -> None:
    from app.extensions import csrf, limiter
    from app.public import bench, tracking, unsubscribe, webhooks

    tracking_runtime.init_app(app)
    for blueprint in (tracking.bp, unsubscribe.bp, webhooks.bp):
        csrf.exempt(blueprint)
        limiter.exempt(blueprint)
        app.register_blueprint(blueprint)
    if app.config.get("BENCH_ROUTES"):
        csrf.exempt(bench.bp)
        limiter.exempt(bench.bp)
        app.register_blueprint(bench.bp)
