"""/healthz: database, Redis and a live worker, each with its state."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from app.extensions import db
from app.infra import health
from app.infra.redis_client import get_redis
from app.jobs import celery_app

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz() -> ResponseReturnValue:
    """Every part; `?scope=web` only what this web process needs to answer (the database).

    A load balancer checks `?scope=web` (deploy/haproxy.cfg): a stopped worker or a Redis
    failover must not take every web process out of rotation, since tracking hits and pages
    are still served (hits fall back to the database), and the worker ping would hold a web
    worker for a second on every check.
    """
    if request.args.get("scope") == "web":
        parts = [health.check_database(db.session)]
    else:
        parts = health.check_all(db.session, get_redis(), celery_app())
    ok = all(p.ok for p in parts)
    body = {
        "status": "ok" if ok else "unavailable",
        "failing": [p.name for p in parts if not p.ok],
        "parts": {p.name: {"ok": p.ok, "detail": p.detail} for p in parts},
    }
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response
