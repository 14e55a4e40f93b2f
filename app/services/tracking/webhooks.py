"""SendGrid's signed Event Webhook: verify, refuse stale or replayed posts, store the raw batch.

Verification runs over the exact bytes received (re-serialised JSON does not verify), with
the official helper (`sendgrid.helpers.eventwebhook`). The helper checks no freshness, so we
refuse timestamps more than SENDGRID_WEBHOOK_MAX_AGE from our clock, and a timestamp + body
pair seen before (Redis SET NX first, the UNIQUE webhook_batches.signature_digest as the
durable guard). Replays are keyed on what was signed, never on the signature's text: one
signature has many encodings that verify (base64 decoding skips stray characters such as
"." or " ", and ECDSA accepts (r, n-s) as well as (r, s)), so a guard on the signature
string let the same post in again. The batch is stored before the 2xx; a worker processes it.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from sendgrid.helpers.eventwebhook import EventWebhook

from app import jobs
from app.models import WebhookBatch
from app.models.base import utcnow
from app.services import DbSession

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_SEEN_PREFIX = "rp:webhook:seen:"


class WebhookRejected(Exception):
    """A post we refuse; `status` is the HTTP answer (401 unsigned, 403 bad/stale/replay)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def now() -> float:
    """The clock webhooks are judged by (tests move it to replay the official test vector)."""
    return time.time()


@functools.lru_cache(maxsize=4)
def _public_key(public_key: str) -> Any:
    return EventWebhook().convert_public_key_to_ecdsa(public_key)


def verify_signature(raw: bytes, signature: str, timestamp: str, public_key: str) -> bool:
    """True when `signature` is SendGrid's over timestamp + the raw body; never raises."""
    try:
        # UTF-8 both ways is the identity on valid UTF-8, so the helper signs-checks the exact
        # bytes we received; anything else cannot be a SendGrid body.
        payload = raw.decode("utf-8")
        key = _public_key(public_key)
        return bool(EventWebhook().verify_signature(payload, signature, timestamp, key))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        # Malformed base64 raises binascii.Error in the helper instead of returning False.
        return False


@dataclass(frozen=True)
class VerifiedPost:
    events: list[dict[str, Any]]
    digest: str


def verify_post(
    raw: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    public_key: str,
    max_age: int,
    at: float | None = None,
) -> VerifiedPost:
    """Check a webhook post before anything is stored.

    Raises:
        WebhookRejected: 401 without signature headers; 403 for a bad signature or a timestamp
            outside the window; 400 for a signed body that is not a JSON list of objects;
            503 when no public key is configured (SendGrid retries for 24 hours).
    """
    if not signature or not timestamp:
        raise WebhookRejected(401, "unsigned")
    if not public_key:
        log.error("SENDGRID_WEBHOOK_PUBLIC_KEY is not set: refusing the Event Webhook")
        raise WebhookRejected(503, "not configured")
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise WebhookRejected(403, "bad timestamp")
    current = now() if at is None else at
    if abs(current - int(timestamp)) > max_age:
        raise WebhookRejected(403, "stale timestamp")
    if not verify_signature(raw, signature, timestamp, public_key):
        raise WebhookRejected(403, "bad signature")
    try:
        events = json.loads(raw)
    except ValueError as exc:
        raise WebhookRejected(400, "body is not JSON") from exc
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise WebhookRejected(400, "body is not a list of events")
    return VerifiedPost(events, replay_key(raw, timestamp))


def replay_key(raw: bytes, timestamp: str) -> str:
    """What makes a post a replay: the signed timestamp and body, not the signature's text."""
    body = hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(f"{int(timestamp)}.{body}".encode()).hexdigest()


def claim_signature(client: redis.Redis, digest: str, ttl: int) -> bool | None:
    """SET NX the signature: False if seen before, None when Redis is unreachable."""
    try:
        return bool(client.set(_SEEN_PREFIX + digest, b"1", nx=True, ex=ttl))
    except redis.RedisError:
        return None


def release_signature(client: redis.Redis, digest: str) -> None:
    with contextlib.suppress(redis.RedisError):
        client.delete(_SEEN_PREFIX + digest)


def store_batch(session: DbSession, raw: bytes, post: VerifiedPost) -> WebhookBatch | None:
    """Store a verified batch and queue its processing (after commit).

    Returns:
        The batch, or None when its signature was stored before (a replay). Flushes; the
        caller commits (the post may be answered 2xx only after that commit).
    """
    exists = session.scalar(
        sa.select(WebhookBatch.id).where(WebhookBatch.signature_digest == post.digest)
    )
    if exists is not None:
        return None
    batch = WebhookBatch(
        body=raw.decode("utf-8"), signature_digest=post.digest, event_count=len(post.events)
    )
    session.add(batch)
    session.flush()
    jobs.enqueue(session, jobs.PROCESS_WEBHOOK_BATCH, batch.id)
    return batch


def unprocessed_batches(session: DbSession, older_than_seconds: int = 60) -> list[int]:
    """Stored batches still unprocessed after a while (their message was lost): the sweep."""

    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            sa.select(WebhookBatch.id)
            .where(WebhookBatch.processed_at.is_(None), WebhookBatch.received_at < cutoff)
            .order_by(WebhookBatch.id)
            .limit(500)
        )
    )
