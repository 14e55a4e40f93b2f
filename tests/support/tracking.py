"""Helpers for tracking tests: a sent campaign with links, tokens, and running the flush path."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from app.extensions import db
from app.infra.tokens import Scope
from app.models import Campaign, Delivery, Event, Link, MailingList, Member
from app.services.tracking import hit_stream
from app.services.tracking.runtime import runtime
from tests import factories
from tests.fakes.sendgrid import WEBHOOK_EXAMPLES_PATH

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "migrations")
PETITION_URL = "https://action.example.org/petition/free-amar"
INFO_URL = "https://union.example.org/news/day-of-action"


@dataclass
class SentCampaign:
    campaign: Campaign
    lists: list[MailingList]
    members: list[Member]
    deliveries: list[Delivery]
    petition: Link
    info: Link
    tokens: dict[int, dict[Scope, str]] = field(default_factory=dict)  # delivery id -> tokens

    def token(self, index: int = 0, scope: Scope = Scope.OPEN) -> str:
        """The token of one delivery for one use (the open pixel's unless told)."""
        return self.tokens[self.deliveries[index].id][scope]

    def click_token(self, index: int = 0) -> str:
        return self.token(index, Scope.CLICK)

    def unsubscribe_token(self, index: int = 0) -> str:
        return self.token(index, Scope.UNSUBSCRIBE)


def sent_campaign(
    session, app: Flask, *, members: int = 3, sent_seconds_ago: float = 3600, **fields
) -> SentCampaign:
    """A campaign already sent to `members` subscribed members, with a petition and an info link."""
    lst = factories.mailing_list(session)
    campaign = factories.campaign(session, lists=[lst], status="sent", **fields)
    petition = Link(campaign_id=campaign.id, url=PETITION_URL, position=0, is_petition=True)
    info = Link(campaign_id=campaign.id, url=INFO_URL, position=1)
    session.add_all([petition, info])
    session.flush()
    sent_at = datetime.fromtimestamp(time.time() - sent_seconds_ago, UTC)
    people, deliveries = [], []
    for _ in range(members):
        member = factories.member(session)
        factories.subscribe(session, member, lst)
        people.append(member)
        deliveries.append(
            factories.delivery(session, campaign, member, status="sent", sent_at=sent_at)
        )
    signer = runtime(app).signer
    result = SentCampaign(campaign, [lst], people, deliveries, petition, info)
    result.tokens = {d.id: signer.sign_all(campaign.id, d.id) for d in deliveries}
    return result


def reset_tracking(app: Flask) -> None:
    """Forget buffered hits and clear the stream keys, so tests never see each other's hits."""
    state = runtime(app)
    state.buffer.forget()
    state.links.clear()
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
        client.delete(
            hit_stream.STREAM_KEY,
            hit_stream.WATERMARK_KEY,
            hit_stream.EPOCH_KEY,
            hit_stream.LOCK_KEY,
        )
        for key in client.scan_iter("rp:webhook:seen:*"):
            client.delete(key)


def stop_buffer(app: Flask) -> None:
    """Stop an extra app's buffer thread, dropping what it holds (its test is over)."""
    buffer = runtime(app).buffer
    buffer.forget()
    buffer.close()


def flush_all(app: Flask, *, ship: bool = True) -> int:
    """Ship the web buffer, then run the flusher task's code until the stream is empty."""
    from workers.tasks.tracking import flush_tracking

    if ship:
        runtime(app).buffer.flush()
    with app.app_context():
        recorded = flush_tracking.run(run_seconds=30)
        db.session.remove()
    return recorded


def event_count(app: Flask, kind: str | None = None, campaign_id: int | None = None) -> int:
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(Event)
        if kind:
            query = query.where(Event.kind == kind)
        if campaign_id:
            query = query.where(Event.campaign_id == campaign_id)
        count = db.session.scalar(query)
        db.session.remove()
        return int(count or 0)


# -- SendGrid's signed Event Webhook ---------------------------------------------------------


def webhook_examples() -> dict:
    return json.loads(WEBHOOK_EXAMPLES_PATH.read_text(encoding="utf-8"))


class WebhookSigner:
    """An ECDSA P-256 key pair standing in for SendGrid's, signing like SendGrid does."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        }
