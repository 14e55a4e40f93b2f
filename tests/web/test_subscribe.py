"""Public subscribe forms: CSRF or form token, honeypot, rate limit, suppression, double opt-in."""

from __future__ import annotations

import json
import time

import itsdangerous
import pytest
import redis
import sqlalchemy as sa

from app.models import Member, Subscription, SuppressionReason
from app.services.audience import lists, optin, subscriptions
from tests import factories as f
from tests.support.forms import csrf_token


@pytest.fixture
def single(db_session):
    lst = lists.create_list(db_session, name="Newsletter", is_public=True)
    db_session.commit()
    return lst


@pytest.fixture
def double(db_session):
    lst = lists.create_list(db_session, name="Action network", is_public=True, opt_in="double")
    db_session.commit()
    return lst


def post_form(client, lst, **fields):
    url = f"/subscribe/{lst.slug}"
    data = {"email": "pat@example.org", "first_name": "Pat", "language": "en", **fields}
    data.setdefault("csrf_token", csrf_token(client, url))
    return client.post(url, data=data)


def test_private_lists_have_no_public_form(client, db_session):
    private = lists.create_list(db_session, name="Stewards")
    db_session.commit()
    assert client.get(f"/subscribe/{private.slug}").status_code == 404


def test_hosted_form_needs_the_csrf_token(client, single):
    response = client.post(f"/subscribe/{single.slug}", data={"email": "pat@example.org"})
    assert response.status_code == 400


def test_single_opt_in_subscribes_and_records_express_consent(client, single, db_session):
    page = client.get(f"/subscribe/{single.slug}").get_data(as_text=True)
    assert "Sign me up" in page
    response = post_form(client, single)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("state=subscribed")
    m = db_session.scalar(sa.select(Member).where(Member.email == "pat@example.org"))
    assert db_session.get(Subscription, (m.id, single.id)).status == "subscribed"
    assert m.consent_basis == "express"
    assert m.consent_detail["ip"] == "127.0.0.1"
    assert "Newsletter" in m.consent_detail["wording"]


def test_double_opt_in_is_pending_and_queues_the_confirmation(
    client, double, db_session, test_environ
):
    queue = redis.Redis.from_url(test_environ["REDIS_URL"])
    queue.delete("transactional")
    response = post_form(client, double, email="Sam@Example.org")
    assert response.headers["Location"].endswith("state=pending")
    m = db_session.scalar(sa.select(Member).where(Member.email == "sam@example.org"))
    assert db_session.get(Subscription, (m.id, double.id)).status == "pending"
    messages = [json.loads(raw) for raw in queue.lrange("transactional", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["transactional.send"]
    assert "optin_confirmation" in messages[0]["headers"]["argsrepr"]
    queue.delete("transactional")
    thanks = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Check your email" in thanks


def test_honeypot_changes_nothing_but_answers_the_same(client, single, db_session):
    response = post_form(client, single, website="http://spam.example")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("state=subscribed")
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0


def test_suppressed_address_is_not_subscribed_and_the_answer_does_not_tell(
    client, single, db_session
):
    subscriptions.suppress(db_session, "blocked@example.org", SuppressionReason.SPAM_REPORT)
    db_session.commit()
    fresh = post_form(client, single, email="fresh@example.org")
    blocked = post_form(client, single, email="blocked@example.org")
    assert (blocked.status_code, blocked.headers["Location"]) == (
        fresh.status_code,
        fresh.headers["Location"],
    )
    statuses = dict(
        db_session.execute(
            sa.select(Member.email, Subscription.status).join(
                Subscription, Subscription.member_id == Member.id
            )
        )
        .tuples()
        .all()
    )
    assert statuses == {"fresh@example.org": "subscribed"}


def test_invalid_email_is_a_form_error(client, single):
    response = post_form(client, single, email="not-an-email")
    assert response.status_code == 422
    assert "not valid" in response.get_data(as_text=True)


def test_form_is_rate_limited(client, single, db_session):
    statuses = [post_form(client, single, email=f"p{n}@example.org").status_code for n in range(6)]
    assert statuses[:5] == [302] * 5
    assert statuses[5] == 429


def test_embedded_form_posts_cross_site_with_its_signed_token(
    client, single, double, app, db_session
):
    token = optin.form_token(app.config["SECRET_KEY"], single.id)
    url = f"/subscribe/{single.slug}/embed"
    ok = client.post(url, data={"form_token": token, "email": "web@example.org", "language": "en"})
    assert ok.status_code == 302
    assert db_session.scalar(sa.select(Member.id).where(Member.email == "web@example.org"))
    other_list = optin.form_token(app.config["SECRET_KEY"], double.id)
    for bad in ["", "forged", other_list, token + "x"]:
        response = client.post(url, data={"form_token": bad, "email": "x@example.org"})
        assert response.status_code == 400, bad
    assert db_session.scalar(sa.select(Member.id).where(Member.email == "x@example.org")) is None


def test_confirm_page_then_button(client, double, db_session, app):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=optin.SubscriptionSource.FORM)
    db_session.commit()
    token = optin.confirmation_token(app.config["SECRET_KEY"], m.id, double.id, m.email)
    url = f"/subscribe/confirm/{token}"
    page = client.get(url)
    assert page.status_code == 200
    assert "Yes, subscribe me" in page.get_data(as_text=True)
    assert (
        db_session.get(Subscription, (m.id, double.id)).status == "pending"
    )  # GET changes nothing
    done = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert done.status_code == 200
    assert "You're subscribed" in done.get_data(as_text=True)
    assert db_session.get(Subscription, (m.id, double.id)).status == "subscribed"


def test_tampered_and_expired_confirm_links_are_refused(
    client, double, db_session, app, monkeypatch
):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=optin.SubscriptionSource.FORM)
    db_session.commit()
    token = optin.confirmation_token(app.config["SECRET_KEY"], m.id, double.id, m.email)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/subscribe/confirm/{tampered}").status_code == 404
    eight_days_ago = int(time.time()) - 8 * 24 * 3600
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
    old = optin.confirmation_token(app.config["SECRET_KEY"], m.id, double.id, m.email)
    monkeypatch.undo()
    expired = client.get(f"/subscribe/confirm/{old}")
    assert expired.status_code == 410
    assert "expired" in expired.get_data(as_text=True)
    url = f"/subscribe/confirm/{old}"
    posted = client.post(url, data={"csrf_token": csrf_token(client, f"/subscribe/{double.slug}")})
    assert posted.status_code == 410
    assert db_session.get(Subscription, (m.id, double.id)).status == "pending"
