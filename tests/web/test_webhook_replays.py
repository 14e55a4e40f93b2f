"""Replays of SendGrid's signed test vector with the signature written another way.

Each form below still verifies (base64 decoding skips stray characters; ECDSA accepts
(r, n-s)), so a replay guard keyed on the signature's text stored the post again. The guard
keys on the signed timestamp and body. Also: a timestamp of non-ASCII digits is a 403.
"""

from __future__ import annotations

import base64

import pytest
import redis
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from app.models import WebhookBatch
from app.services.tracking import webhooks
from tests.conftest import SENDGRID_TEST_PUBLIC_KEY
from tests.support.tracking import webhook_examples

URL = "/webhooks/sendgrid"
# The order of P-256, the curve of SendGrid's Event Webhook key.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _high_s(signature: str) -> str:
    r, s = decode_dss_signature(base64.b64decode(signature))
    return base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()


REENCODINGS = {
    "dot-inserted": lambda sig: sig[:20] + "." + sig[20:],
    "space-inserted": lambda sig: sig[:20] + " " + sig[20:],
    "trailing-bang": lambda sig: sig + "!",
    "r-n-minus-s": _high_s,
}


@pytest.fixture
def vector(app, monkeypatch):
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
        for key in client.scan_iter("rp:webhook:seen:*"):
            client.delete(key)
    data = webhook_examples()["signed_webhook_test_vector"]
    timestamp = data["header_X-Twilio-Email-Event-Webhook-Timestamp"]
    monkeypatch.setattr(webhooks, "now", lambda: int(timestamp) + 30)
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", SENDGRID_TEST_PUBLIC_KEY)
    return {
        "raw": data["raw_body"].encode(),
        "signature": data["header_X-Twilio-Email-Event-Webhook-Signature"],
        "timestamp": timestamp,
    }


def _post(client, vector, signature: str, timestamp: str | None = None):
    headers = {
        webhooks.SIGNATURE_HEADER: signature,
        webhooks.TIMESTAMP_HEADER: timestamp or vector["timestamp"],
        "Content-Type": "application/json",
    }
    return client.post(URL, data=vector["raw"], headers=headers)


def _batches(db_session) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(WebhookBatch))


@pytest.mark.parametrize("form", REENCODINGS.values(), ids=REENCODINGS.keys())
def test_a_reencoded_signature_still_verifies(vector, form):
    """The premise: each form is a valid signature, so only the replay guard can stop it."""
    assert webhooks.verify_signature(
        vector["raw"], form(vector["signature"]), vector["timestamp"], SENDGRID_TEST_PUBLIC_KEY
    )


@pytest.mark.parametrize("form", REENCODINGS.values(), ids=REENCODINGS.keys())
def test_a_reencoded_signature_is_a_replay(client, db_session, vector, form):
    assert _post(client, vector, vector["signature"]).status_code == 202
    response = _post(client, vector, form(vector["signature"]))
    assert response.status_code == 403
    assert response.get_json() == {"error": "replayed"}
    assert _batches(db_session) == 1


@pytest.mark.parametrize("form", REENCODINGS.values(), ids=REENCODINGS.keys())
def test_a_reencoded_replay_is_refused_by_the_database_alone(app, client, db_session, vector, form):
    assert _post(client, vector, vector["signature"]).status_code == 202
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client_redis:
        for key in client_redis.scan_iter("rp:webhook:seen:*"):  # e.g. Redis restarted
            client_redis.delete(key)
    assert _post(client, vector, form(vector["signature"])).status_code == 403
    assert _batches(db_session) == 1


@pytest.mark.parametrize("timestamp", ["17²", "１７", "١٧", "+17", " 17"])
def test_a_timestamp_of_other_digits_is_a_403(client, db_session, vector, timestamp):
    response = _post(client, vector, vector["signature"], timestamp=timestamp)
    assert response.status_code == 403
    assert response.get_json() == {"error": "bad timestamp"}
    assert _batches(db_session) == 0
