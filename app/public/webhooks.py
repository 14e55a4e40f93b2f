"""`POST /webhooks/sendgrid`: SendGrid's signed Event Webhook, stored before it is answered."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.infra.redis_client import get_redis
from app.services.tracking import webhooks

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)


def _refuse(status: int, reason: str) -> ResponseReturnValue:
    log.warning("refused SendGrid webhook from %s: %s", request.remote_addr, reason)
    return jsonify(error=reason), status


@bp.post("/webhooks/sendgrid")
def sendgrid_events() -> ResponseReturnValue:
    raw = request.get_data(cache=True)  # the exact bytes SendGrid signed
    config = current_app.config
    try:
        post = webhooks.verify_post(
            raw,
            request.headers.get(webhooks.SIGNATURE_HEADER),
            request.headers.get(webhooks.TIMESTAMP_HEADER),
            public_key=config["SENDGRID_WEBHOOK_PUBLIC_KEY"],
            max_age=config["SENDGRID_WEBHOOK_MAX_AGE"],
        )
    except webhooks.WebhookRejected as exc:
        return _refuse(exc.status, exc.reason)

    client = get_redis()
    claimed = webhooks.claim_signature(
        client, post.digest, ttl=2 * config["SENDGRID_WEBHOOK_MAX_AGE"]
    )
    if claimed is False:
        return _refuse(403, "replayed")
    try:
        batch = webhooks.store_batch(db.session, raw, post)
        if batch is None:
            db.session.rollback()
            return _refuse(403, "replayed")
        db.session.commit()  # durable before the 2xx; the processing job leaves on commit
    except IntegrityError:
        db.session.rollback()
        return _refuse(403, "replayed")
    except Exception:
        db.session.rollback()
        # Not stored: let SendGrid retry (it does for 24 hours) with this signature again.
        webhooks.release_signature(client, post.digest)
        raise
    return jsonify(received=len(post.events), batch=batch.id), 202
