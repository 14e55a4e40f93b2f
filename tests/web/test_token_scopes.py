"""A pixel or click URL cannot stand for the unsubscribe link: each use has its own token.

The attack: an image proxy, a log or anyone shown the open pixel's URL takes its token to
/u/<token>, reads the member's address and unsubscribes them. Emails sent before scopes
carry one legacy token for everything; /u/ honours it for 60 days after sending, masked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.infra.tokens import Scope
from app.models import Delivery, Event, Subscription
from app.services.sending.rendering import BatchBuilder, ClaimedRow
from app.services.tracking.runtime import runtime
from tests.services.test_tokens import legacy_token
from tests.support.tracking import sent_campaign

BASE = "https://rally.example.org"


@pytest.fixture
def sent(db_session, app):
    data = sent_campaign(db_session, app, members=1)
    db_session.commit()
    return data


def _untouched(db_session, data) -> None:
    db_session.expire_all()
    member, mailing_list = data.members[0], data.lists[0]
    assert db_session.get(Subscription, (member.id, mailing_list.id)).status == "subscribed"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0
    assert db_session.get(Delivery, data.deliveries[0].id).unsubscribed_at is None


@pytest.mark.parametrize("scope", [Scope.OPEN, Scope.CLICK])
def test_pixel_and_click_tokens_do_not_open_the_unsubscribe_page(client, db_session, sent, scope):
    token = sent.token(0, scope)
    page = client.get(f"/u/{token}")
    assert page.status_code == 404
    assert sent.members[0].email not in page.get_data(as_text=True)
    one_click = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 404
    assert client.post(f"/u/{token}", data={"action": "all"}).status_code == 404
    _untouched(db_session, sent)


def test_the_unsubscribe_token_still_unsubscribes(client, db_session, sent):
    page = client.get(f"/u/{sent.unsubscribe_token(0)}").get_data(as_text=True)
    assert sent.members[0].email in page
    response = client.post(
        f"/u/{sent.unsubscribe_token(0)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    db_session.expire_all()
    key = (sent.members[0].id, sent.lists[0].id)
    assert db_session.get(Subscription, key).status == "unsubscribed"


def test_a_sent_message_pairs_each_url_with_its_own_scope(app, client, db_session, sent):
    """What the sender writes: List-Unsubscribe unsubscribes, the pixel's token cannot."""
    delivery, member = sent.deliveries[0], sent.members[0]
    builder = BatchBuilder(sent.campaign, signer=runtime(app).signer, base_url=BASE)
    row = ClaimedRow(delivery.id, member.email, "en", "", "", "", "en", "", {})
    outgoing = builder.recipient(row)
    header = outgoing.headers["List-Unsubscribe"]
    pixel_token = outgoing.recipient.open_token
    signer = runtime(app).signer
    assert signer.verify(pixel_token, Scope.OPEN) is not None
    assert signer.verify(outgoing.recipient.click_token, Scope.CLICK) is not None

    assert client.get(f"/u/{pixel_token}").status_code == 404
    assert client.get(f"/u/{outgoing.recipient.click_token}").status_code == 404
    _untouched(db_session, sent)

    path = re.fullmatch(rf"<{re.escape(BASE)}(/u/[^>]+)>", header)
    assert path is not None
    assert outgoing.recipient.preferences_url == f"{BASE}{path.group(1)}#preferences"
    response = client.post(path.group(1), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    db_session.expire_all()
    assert db_session.get(Subscription, (member.id, sent.lists[0].id)).status == "unsubscribed"


def _legacy(app, data) -> str:
    secret = app.config["SECRET_KEY"]
    return legacy_token(secret, data.campaign.id, data.deliveries[0].id)


def test_a_legacy_token_unsubscribes_within_60_days_with_the_address_masked(
    app, client, db_session, sent
):
    token = _legacy(app, sent)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    email = sent.members[0].email
    assert email not in text
    assert f"{email[0]}•••@{email.split('@')[1]}" in text
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    db_session.expire_all()
    key = (sent.members[0].id, sent.lists[0].id)
    assert db_session.get(Subscription, key).status == "unsubscribed"


@pytest.mark.parametrize("sent_at", [timedelta(days=61), None])
def test_a_legacy_token_is_refused_at_u_after_60_days_or_when_never_sent(
    app, client, db_session, sent, sent_at
):
    delivery = db_session.get(Delivery, sent.deliveries[0].id)
    delivery.sent_at = None if sent_at is None else datetime.now(UTC) - sent_at
    db_session.commit()
    token = _legacy(app, sent)
    assert client.get(f"/u/{token}").status_code == 404
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    _untouched(db_session, sent)
