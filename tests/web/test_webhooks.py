"""`/webhooks/sendgrid`: signed, fresh, never replayed; stored before 2xx; processed once."""

from __future__ import annotations

import json
import time

import pytest
import redis
import sqlalchemy as sa

from app import jobs
from app.models import (
    CampaignStats,
    Delivery,
    DeliveryStatus,
    Event,
    Subscription,
    Suppression,
    WebhookBatch,
)
from app.models.base import utcnow
from app.services.audience import members, subscriptions
from app.services.sending import ledger
from app.services.stats import counters as stats
from app.services.tracking import webhook_events, webhooks
from app.services.tracking.webhook_events import CUSTOM_ARG_CAMPAIGN, CUSTOM_ARG_DELIVERY
from tests import factories
from tests.support.tracking import WebhookSigner, sent_campaign, webhook_examples

URL = "/webhooks/sendgrid"


@pytest.fixture(autouse=True)
def _forget_seen_signatures(app):
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
        for key in client.scan_iter("rp:webhook:seen:*"):
            client.delete(key)


@pytest.fixture
def signer(app, monkeypatch):
    key = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", key.public_key)
    return key


def _batches(db_session):
    return db_session.scalar(sa.select(sa.func.count()).select_from(WebhookBatch))


def _post(client, body: bytes, headers):
    return client.post(URL, data=body, headers=headers)


# -- the official test vector ----------------------------------------------------------------


def test_official_signed_test_vector_is_accepted_and_stored(client, db_session, monkeypatch):
    vector = webhook_examples()["signed_webhook_test_vector"]
    timestamp = vector["header_X-Twilio-Email-Event-Webhook-Timestamp"]
    monkeypatch.setattr(webhooks, "now", lambda: int(timestamp) + 30)
    headers = {
        webhooks.SIGNATURE_HEADER: vector["header_X-Twilio-Email-Event-Webhook-Signature"],
        webhooks.TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }
    raw = vector["raw_body"].encode()
    response = _post(client, raw, headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    batch = db_session.scalars(sa.select(WebhookBatch)).one()
    assert batch.body.encode() == raw  # the exact bytes, CRLF and all
    assert jobs.pending_jobs(db_session) == []  # sent on commit

    assert _post(client, raw, headers).status_code == 403  # the same post again: a replay
    stripped = _post(client, raw.rstrip(b"\r\n"), headers)  # re-serialised bodies do not verify
    assert stripped.status_code == 403
    assert _batches(db_session) == 1


def test_official_test_vector_is_stale_by_our_clock(client, db_session):
    vector = webhook_examples()["signed_webhook_test_vector"]
    headers = {
        webhooks.SIGNATURE_HEADER: vector["header_X-Twilio-Email-Event-Webhook-Signature"],
        webhooks.TIMESTAMP_HEADER: vector["header_X-Twilio-Email-Event-Webhook-Timestamp"],
    }
    assert _post(client, vector["raw_body"].encode(), headers).status_code == 403
    assert _batches(db_session) == 0


# -- refusals --------------------------------------------------------------------------------


def _body(events=None) -> bytes:
    return json.dumps(events or webhook_examples()["combined_batch_one_of_each"]).encode()


def test_unsigned_posts_get_401(client, db_session, signer):
    assert _post(client, _body(), {"Content-Type": "application/json"}).status_code == 401
    only_sig = {webhooks.SIGNATURE_HEADER: signer.headers(_body())[webhooks.SIGNATURE_HEADER]}
    assert _post(client, _body(), only_sig).status_code == 401
    assert _batches(db_session) == 0


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "timestamp", "garbage-signature", "empty-signature-bytes", "other-key"],
)
def test_tampered_posts_get_403(client, db_session, signer, tamper):
    body = _body()
    headers = signer.headers(body)
    if tamper == "body":
        body = body.replace(b"Bounced Address", b"Bounced Adress")
    elif tamper == "signature":
        sig = headers[webhooks.SIGNATURE_HEADER]
        headers[webhooks.SIGNATURE_HEADER] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    elif tamper == "timestamp":
        headers[webhooks.TIMESTAMP_HEADER] = str(int(headers[webhooks.TIMESTAMP_HEADER]) - 1)
    elif tamper == "garbage-signature":
        headers[webhooks.SIGNATURE_HEADER] = "%%% not base64 %%%"
    elif tamper == "empty-signature-bytes":
        headers[webhooks.SIGNATURE_HEADER] = "===="
    else:
        headers = WebhookSigner().headers(body)
    assert _post(client, body, headers).status_code == 403
    assert _batches(db_session) == 0


@pytest.mark.parametrize("offset", [-601, 601, -(10**6)])
def test_stale_or_future_timestamps_get_403(client, db_session, signer, offset):
    body = _body()
    response = _post(client, body, signer.headers(body, timestamp=int(time.time()) + offset))
    assert response.status_code == 403
    assert _batches(db_session) == 0


def test_a_replayed_post_gets_403_and_is_stored_once(client, db_session, signer):
    body = _body()
    headers = signer.headers(body)
    assert _post(client, body, headers).status_code == 202
    assert _post(client, body, headers).status_code == 403
    assert _batches(db_session) == 1


def test_replays_are_refused_by_the_database_when_redis_forgot(client, db_session, signer, app):
    body = _body()
    headers = signer.headers(body)
    assert _post(client, body, headers).status_code == 202
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client_redis:
        for key in client_redis.scan_iter("rp:webhook:seen:*"):  # e.g. Redis restarted
            client_redis.delete(key)
    assert _post(client, body, headers).status_code == 403
    assert _batches(db_session) == 1


def test_signed_but_malformed_bodies_get_400(client, db_session, signer):
    for body in (b"not json", b'{"event": "delivered"}', b"[1, 2]"):
        assert _post(client, body, signer.headers(body)).status_code == 400
    assert _batches(db_session) == 0


def test_without_a_configured_key_nothing_is_accepted(client, db_session, app, monkeypatch):
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", "")
    body = _body()
    assert _post(client, body, WebhookSigner().headers(body)).status_code == 503
    assert _batches(db_session) == 0


def test_a_stored_batch_queues_its_processing(client, db_session, signer, monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "send_now", sent.append)
    body = _body()
    assert _post(client, body, signer.headers(body)).status_code == 202
    batch_id = db_session.scalar(sa.select(WebhookBatch.id))
    assert [(j.name, j.args) for j in sent] == [(jobs.PROCESS_WEBHOOK_BATCH, (batch_id,))]


# -- processing ------------------------------------------------------------------------------


def _event(data, index, name, event_id, **extra):
    d = data.deliveries[index]
    return {
        "email": d.email,
        "timestamp": int(time.time()),
        "event": name,
        "sg_event_id": event_id,
        "sg_message_id": "abc.filter0001",
        CUSTOM_ARG_DELIVERY: str(d.id),
        CUSTOM_ARG_CAMPAIGN: str(data.campaign.id),
        **extra,
    }


def _store(db_session, events) -> int:
    batch = WebhookBatch(body=json.dumps(events), event_count=len(events))
    db_session.add(batch)
    db_session.flush()
    return batch.id


@pytest.fixture
def data(db_session, app):
    return sent_campaign(db_session, app, members=5)


def test_events_update_outcomes_counters_and_suppressions(db_session, data):
    in_doubt = db_session.get(Delivery, data.deliveries[4].id)
    in_doubt.status, in_doubt.error = DeliveryStatus.UNKNOWN.value, "no answer"
    events = [
        _event(data, 0, "processed", "e1"),
        _event(data, 0, "deferred", "e2", response="400 try again later", attempt="1"),
        _event(data, 0, "delivered", "e3", response="250 OK"),
        _event(data, 1, "bounce", "e4", type="bounce", reason="550 no such user", status="5.1.1"),
        _event(data, 2, "bounce", "e5", type="blocked", reason="554 blocked", status="5.7.1"),
        _event(data, 3, "delivered", "e6"),
        _event(data, 3, "spamreport", "e7"),
        _event(data, 2, "dropped", "e8", reason="Invalid", status="5.0.0"),
        _event(data, 4, "processed", "e9"),
        _event(data, 3, "unsubscribe", "e10"),
        _event(data, 0, "open", "e11"),  # SendGrid's own tracking is off: ignored
    ]
    result = webhook_events.process_batch(db_session, _store(db_session, events))
    assert result.recorded == 10
    assert result.ignored == 1

    db_session.expire_all()
    outcome = {d.id: db_session.get(Delivery, d.id).outcome for d in data.deliveries}
    assert [outcome[d.id] for d in data.deliveries] == [
        "delivered",
        "bounced",
        "bounced",
        "delivered",
        None,
    ]
    assert db_session.get(Delivery, data.deliveries[4].id).status == DeliveryStatus.SENT.value
    suppressed = dict(db_session.execute(sa.select(Suppression.email, Suppression.reason)).all())
    assert suppressed == {
        data.deliveries[1].email: "hard_bounce",  # a hard bounce; "blocked" is not one
        data.deliveries[3].email: "spam_report",
    }
    sub = db_session.get(Subscription, (data.members[3].id, data.lists[0].id))
    assert (sub.status, sub.unsubscribe_source) == ("unsubscribed", "webhook")

    row = db_session.get(CampaignStats, data.campaign.id)
    assert (row.delivered, row.bounced, row.deferred, row.dropped) == (2, 2, 0, 0)
    assert (row.spam_reports, row.unsubscribes, row.sent) == (1, 1, 1)
    computed = stats.recompute_stats(db_session, data.campaign.id).campaign
    for name in ("delivered", "bounced", "dropped", "deferred", "spam_reports", "unsubscribes"):
        assert getattr(row, name) == computed[name], name


def test_the_same_batch_twice_counts_once(db_session, data):
    events = [_event(data, 0, "delivered", "d1"), _event(data, 1, "spamreport", "d2")]
    first = _store(db_session, events)
    webhook_events.process_batch(db_session, first)
    assert webhook_events.process_batch(db_session, first) is None  # already processed
    # SendGrid delivering the same events again in a new batch (it does, often).
    again = webhook_events.process_batch(db_session, _store(db_session, events))
    assert again.recorded == 0
    assert again.duplicates == 2
    row = db_session.get(CampaignStats, data.campaign.id)
    assert (row.delivered, row.spam_reports) == (1, 1)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Event)) == 2


def test_events_for_other_campaigns_or_unknown_deliveries_change_no_delivery(db_session, data, app):
    other = sent_campaign(db_session, app, members=1)
    wrong = _event(data, 0, "delivered", "x1")
    wrong[CUSTOM_ARG_CAMPAIGN] = str(other.campaign.id)
    unknown = _event(data, 0, "bounce", "x2", type="bounce")
    unknown[CUSTOM_ARG_DELIVERY] = "999999999"
    result = webhook_events.process_batch(db_session, _store(db_session, [wrong, unknown]))
    assert result.unmatched == 2
    db_session.expire_all()
    assert db_session.get(Delivery, data.deliveries[0].id).outcome is None
    assert db_session.get(CampaignStats, data.campaign.id) is None


def test_the_official_example_batch_processes_without_custom_args(db_session):
    batch = _store(db_session, webhook_examples()["combined_batch_one_of_each"])
    result = webhook_events.process_batch(db_session, batch)
    assert result.recorded > 0
    assert result.unmatched == result.recorded + result.duplicates  # two share an sg_event_id
    # A hard bounce still suppresses the address, matched or not.
    assert db_session.scalar(
        sa.select(Suppression.reason).where(Suppression.email == "example@test.com")
    )


def test_custom_args_are_strings():
    assert webhook_events.custom_args(7, 42) == {"rp_campaign": "7", "rp_delivery": "42"}


def test_an_event_that_cannot_be_stored_does_not_hold_back_the_batch(db_session, data):
    bad = _event(data, 0, "delivered", "z1", reason="\x00 nul bytes are refused by jsonb")
    good = _event(data, 1, "delivered", "z2")
    batch_id = _store(db_session, [bad, good])
    result = webhook_events.process_batch(db_session, batch_id)
    assert (result.recorded, result.failed) == (1, 1)
    db_session.expire_all()
    assert db_session.get(Delivery, data.deliveries[1].id).outcome == "delivered"
    assert "event 0" in db_session.get(WebhookBatch, batch_id).error


def test_processed_settles_a_row_in_flight_and_the_sender_does_not_count_it_again(db_session, data):
    row = db_session.get(Delivery, data.deliveries[0].id)
    row.status = DeliveryStatus.QUEUED.value  # its batch's request is under way
    db_session.flush()
    stats_row = db_session.get(CampaignStats, data.campaign.id)
    before = stats_row.sent if stats_row is not None else 0

    webhook_events.process_batch(
        db_session, _store(db_session, [_event(data, 0, "processed", "p1")])
    )
    db_session.expire_all()
    assert db_session.get(Delivery, row.id).status == DeliveryStatus.SENT.value
    assert db_session.get(CampaignStats, data.campaign.id).sent == before + 1

    # The worker's own outcome arrives afterwards: it skips rows already sent, so the
    # delivery is counted once.
    assert ledger.record_sent(db_session, [row.id], now=utcnow()) == 0


def test_an_address_sendgrid_spells_differently_still_finds_its_member(db_session):
    """Events without our custom_args name the address: found in any case or Unicode form.

    The member was stored as "josé@example.org" (é as one character); SendGrid reports
    "JOSE" + a combining accent in capitals. Trimming and lower-casing alone found nobody:
    the unsubscribe was lost, the bounce suppressed an address no member has, and the
    member went on being emailed.
    """
    jose = members.create_member(db_session, email="jos\u00e9@example.org")
    rene = members.create_member(db_session, email="ren\u00e9@example.org")
    news = factories.mailing_list(db_session)
    for person in (jose, rene):
        factories.subscribe(db_session, person, news)
    campaign = factories.campaign(db_session, lists=[news], status="sent")
    delivery = factories.delivery(db_session, campaign, jose, provider_message_id="msg1")
    spelled = {jose.id: " JOSE\u0301@EXAMPLE.ORG", rene.id: "RENE\u0301@Example.org"}
    events = [
        {"email": spelled[jose.id], "event": "delivered", "sg_event_id": "n1",
         "sg_message_id": "msg1.filter0001", "timestamp": int(time.time())},
        {"email": spelled[jose.id], "event": "group_unsubscribe", "sg_event_id": "n2",
         "timestamp": int(time.time())},
        {"email": spelled[rene.id], "event": "bounce", "type": "bounce", "sg_event_id": "n3",
         "reason": "550 no such user", "timestamp": int(time.time())},
    ]  # fmt: skip
    webhook_events.process_batch(db_session, _store(db_session, events))
    db_session.expire_all()
    assert db_session.get(Delivery, delivery.id).outcome == "delivered"
    assert db_session.get(Subscription, (jose.id, news.id)).status == "unsubscribed"
    assert subscriptions.is_suppressed(db_session, rene.email)
    assert db_session.scalars(sa.select(Suppression.email)).all() == [rene.email]
