"""Double opt-in, CASL consent rules and the formula-safe export."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import jobs
from app.infra.spreadsheets import FORMULA_TRIGGERS, neutralise
from app.models import (
    ConsentBasis,
    Member,
    OrgSettings,
    Sender,
    Subscription,
    SubscriptionSource,
    SuppressionReason,
    UnsubscribeSource,
)
from app.services.audience import consent, export, imports, lists, optin, segments, subscriptions
from app.services.transports.outbox import OutboxTransport
from tests import factories as f
from tests.support.member_files import HOSTILE_CSV, HOSTILE_FORMULA

SECRET = "test-secret-key-that-is-long-enough-000000"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def optin_jobs(session) -> list[tuple]:
    return [
        (j.args[1]["member_id"], j.args[1]["list_id"])
        for j in jobs.pending_jobs(session)
        if j.name == jobs.SEND_TRANSACTIONAL and j.args[0] == optin.OPTIN_KIND
    ]


# ---- consent ------------------------------------------------------------------------------


def test_membership_consent_lasts_two_years_after_membership_ends(db_session):
    m = f.member(db_session)
    consent.record_consent(db_session, m, ConsentBasis.IMPLIED_MEMBERSHIP, source="card", at=NOW)
    assert m.consent_expires_at is None
    assert consent.consent_state(m, NOW).state == "valid"
    consent.set_membership_end(db_session, m, datetime(2026, 3, 31, tzinfo=UTC))
    assert m.consent_expires_at == datetime(2028, 3, 31, tzinfo=UTC)
    assert consent.consent_state(m, datetime(2028, 2, 15, tzinfo=UTC)).state == "expiring"
    assert consent.consent_state(m, datetime(2028, 4, 1, tzinfo=UTC)).state == "expired"


def test_inquiry_consent_lasts_six_months(db_session):
    m = f.member(db_session)
    consent.record_consent(
        db_session,
        m,
        ConsentBasis.IMPLIED_INQUIRY,
        source="phone",
        at=datetime(2026, 8, 31, tzinfo=UTC),
    )
    assert m.consent_expires_at == datetime(2027, 2, 28, tzinfo=UTC)


def test_expired_implied_consent_is_never_in_the_valid_clause(db_session):
    now = datetime.now(UTC)
    express = f.member(db_session, email="express@example.org")
    current = f.member(db_session, email="current@example.org")
    expired = f.member(db_session, email="expired@example.org")
    soon = f.member(db_session, email="soon@example.org")
    f.member(db_session, email="none@example.org")
    consent.record_consent(db_session, express, ConsentBasis.EXPRESS, source="form")
    consent.record_consent(db_session, current, ConsentBasis.IMPLIED_MEMBERSHIP, source="card")
    consent.record_consent(
        db_session,
        expired,
        ConsentBasis.IMPLIED_INQUIRY,
        source="call",
        at=now - timedelta(days=200),
    )
    consent.record_consent(
        db_session, soon, ConsentBasis.IMPLIED_INQUIRY, source="call", at=now - timedelta(days=150)
    )
    valid = set(
        db_session.scalars(sa.select(Member.email).where(consent.consent_valid_clause(now)))
    )
    assert valid == {"express@example.org", "current@example.org", "soon@example.org"}
    expiring = set(
        db_session.scalars(sa.select(Member.email).where(consent.consent_expiring_clause(now)))
    )
    assert expiring == {"soon@example.org"}


def test_consent_in_the_future_is_refused(db_session):
    with pytest.raises(consent.ConsentError):
        consent.record_consent(
            db_session,
            f.member(db_session),
            ConsentBasis.EXPRESS,
            source="x",
            at=datetime.now(UTC) + timedelta(days=2),
        )


def test_the_imports_consent_rule_is_the_same_in_python_and_in_sql(db_session):
    """consent.import_should_replace and the SQL the PostgreSQL import runs
    (consent.import_replaces_sql) agree on every old record x import choice."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    expiries = [None, now - timedelta(days=10), now + timedelta(days=10), now + timedelta(days=900)]
    olds = [(None, None)] + [(basis.value, e) for basis in consent.ConsentBasis for e in expiries]
    news = [(basis.value, e) for basis in consent.ConsentBasis for e in expiries]
    python, in_sql = [], []
    for new_basis, new_expires in news:
        clause = consent.import_replaces_sql(new_basis, new_expires)
        query = sa.text(
            f"SELECT {clause} FROM (SELECT CAST(:old_basis AS text) AS consent_basis, "  # noqa: S608
            "CAST(:old_expires AS timestamptz) AS consent_expires_at) m"
        )
        for old_basis, old_expires in olds:
            python.append(
                consent.import_should_replace(old_basis, old_expires, new_basis, new_expires)
            )
            params = {"old_basis": old_basis, "old_expires": old_expires}
            params |= {"c_basis": new_basis, "c_expires": new_expires}
            in_sql.append(db_session.execute(query, params).scalar())
    assert len(python) == 16 * 17
    assert in_sql == python
    assert any(python)
    assert not all(python)


# ---- double opt-in ------------------------------------------------------------------------


@pytest.fixture
def double(db_session):
    return lists.create_list(db_session, name="Action network", is_public=True, opt_in="double")


def test_double_opt_in_makes_a_pending_subscription_and_queues_one_email(db_session, double):
    m = f.member(db_session, email="pat@example.org")
    outcome = optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    assert outcome is optin.SubscribeOutcome.PENDING
    assert db_session.get(Subscription, (m.id, double.id)).status == "pending"
    assert optin_jobs(db_session) == [(m.id, double.id)]
    assert m.consent_basis is None  # consent only when they confirm


def test_confirm_with_a_valid_link_subscribes_and_records_express_consent(db_session, double):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    token = optin.confirmation_token(SECRET, m.id, double.id, m.email)
    result = optin.confirm(db_session, SECRET, token, detail={"ip": "192.0.2.7"})
    assert result.outcome is optin.ConfirmOutcome.CONFIRMED
    subscription = db_session.get(Subscription, (m.id, double.id))
    assert (subscription.status, subscription.source) == ("subscribed", "form")
    assert m.consent_basis == "express"
    assert m.consent_detail["ip"] == "192.0.2.7"
    assert "Action network" in m.consent_detail["wording"]
    again = optin.confirm(db_session, SECRET, token)
    assert again.outcome is optin.ConfirmOutcome.ALREADY


@pytest.mark.parametrize("tamper", ["flip", "other-secret", "other-list", "truncate"])
def test_tampered_links_are_refused(db_session, double, tamper):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    token = optin.confirmation_token(SECRET, m.id, double.id, m.email)
    if tamper == "flip":
        token = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    elif tamper == "other-secret":
        token = optin.confirmation_token("another-secret", m.id, double.id, m.email)
    elif tamper == "other-list":
        other = lists.create_list(db_session, name="Other", opt_in="double")
        token = optin.confirmation_token(SECRET, m.id, other.id, m.email)
    else:
        token = token[:20]
    assert optin.confirm(db_session, SECRET, token).outcome is optin.ConfirmOutcome.INVALID
    assert db_session.get(Subscription, (m.id, double.id)).status == "pending"


def test_expired_link_is_refused(db_session, double):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    token = optin.confirmation_token(SECRET, m.id, double.id, m.email)
    result = optin.confirm(db_session, SECRET, token, max_age=timedelta(seconds=-1))
    assert result.outcome is optin.ConfirmOutcome.EXPIRED
    assert db_session.get(Subscription, (m.id, double.id)).status == "pending"


def test_old_link_cannot_undo_a_later_unsubscribe(db_session, double):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    token = optin.confirmation_token(SECRET, m.id, double.id, m.email)
    subscriptions.unsubscribe(db_session, m.id, list_ids=[double.id], source=UnsubscribeSource.LINK)
    assert optin.confirm(db_session, SECRET, token).outcome is optin.ConfirmOutcome.INVALID
    assert db_session.get(Subscription, (m.id, double.id)).status == "unsubscribed"


def test_suppressed_address_is_never_subscribed(db_session, double):
    single = lists.create_list(db_session, name="News")
    m = f.member(db_session, email="blocked@example.org")
    token = optin.confirmation_token(SECRET, m.id, double.id, m.email)
    subscriptions.suppress(db_session, m.email, SuppressionReason.MANUAL)
    for target in (single, double):
        outcome = optin.subscribe(db_session, m, target, source=SubscriptionSource.FORM)
        assert outcome is optin.SubscribeOutcome.BLOCKED
    assert optin.confirm(db_session, SECRET, token).outcome is optin.ConfirmOutcome.INVALID
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0
    assert optin_jobs(db_session) == []


def test_resubscribing_after_an_unsubscribe_needs_confirmation_even_on_single_opt_in(db_session):
    single = lists.create_list(db_session, name="News")
    m = f.member(db_session, email="pat@example.org")
    assert optin.subscribe(db_session, m, single, source=SubscriptionSource.FORM) == "subscribed"
    subscriptions.unsubscribe(db_session, m.id, list_ids=[single.id], source=UnsubscribeSource.LINK)
    assert optin.subscribe(db_session, m, single, source=SubscriptionSource.FORM) == "pending"
    assert db_session.get(Subscription, (m.id, single.id)).status == "pending"


def test_a_form_sent_again_soon_does_not_send_another_email(db_session, double):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM, now=NOW)
    subscription = db_session.get(Subscription, (m.id, double.id))
    subscription.confirmation_sent_at = NOW  # the task sent it
    optin.subscribe(
        db_session, m, double, source=SubscriptionSource.FORM, now=NOW + timedelta(minutes=5)
    )
    assert len(optin_jobs(db_session)) == 1
    optin.subscribe(
        db_session, m, double, source=SubscriptionSource.FORM, now=NOW + timedelta(hours=1)
    )
    assert len(optin_jobs(db_session)) == 2


def test_form_tokens_are_per_list(db_session, double):
    token = optin.form_token(SECRET, double.id)
    assert optin.check_form_token(SECRET, token, double.id)
    assert not optin.check_form_token(SECRET, token, double.id + 1)
    assert not optin.check_form_token("other", token, double.id)
    assert not optin.check_form_token(SECRET, token + "x", double.id)


def test_send_confirmation_writes_one_email_with_a_working_link(db_session, double, tmp_path, app):
    db_session.add(
        OrgSettings(organization="Prairie Workers", mailing_address="1 Main St", contact="a@b.ca")
    )
    db_session.add(Sender(email="news@example.org", name="Prairie Workers", is_default=True))
    m = f.member(db_session, email="pat@example.org", first_name="Pat")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    transport = OutboxTransport(str(tmp_path))
    keys = {"secret_key": app.config["SECRET_KEY"], "base_url": "https://rally.example"}
    assert optin.send_confirmation(db_session, transport, m.id, double.id, **keys) == 1
    assert optin.send_confirmation(db_session, transport, m.id, double.id, **keys) == 0  # once
    files = list(tmp_path.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    assert "Confirm your subscription" in text
    assert "https://rally.example/subscribe/confirm/" in text
    token = re.search(r"/subscribe/confirm/([A-Za-z0-9_.\-]+)", text).group(1)
    result = optin.confirm(db_session, app.config["SECRET_KEY"], token)
    assert result.outcome is optin.ConfirmOutcome.CONFIRMED


def test_send_confirmation_needs_the_casl_identity(db_session, double, app):
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    with pytest.raises(optin.ConfirmationNotSent, match="mailing address"):
        optin.send_confirmation(
            db_session,
            OutboxTransport("/nonexistent"),
            m.id,
            double.id,
            secret_key="s",
            base_url="x",
        )


# ---- export ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1-800", "'+1-800"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("\ncmd", "'\ncmd"),
        ("Ana", "Ana"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def read_csv(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(chunks))))


def test_export_of_an_import_with_hostile_names_neutralises_formulas(db_session, tmp_path):
    target = lists.create_list(db_session, name="All members")
    path = tmp_path / "hostile.csv"
    path.write_bytes(HOSTILE_CSV)
    imports.import_members(db_session, path=path, list_id=target.id)
    rows = read_csv(export.export_list(db_session, target))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["email", "first_name", "last_name"]
    assert "Workplace" in header
    by_email = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    mal = by_email["mal@example.org"]
    assert mal["first_name"] == "'" + HOSTILE_FORMULA
    assert mal["last_name"] == "'+1-800-EVIL"
    assert mal["Workplace"] == "'@SUM(1+1)"
    for row in body:
        for cell in row:
            assert not cell.startswith(FORMULA_TRIGGERS), cell
    assert by_email["dee@example.org"]["Workplace"] == "Warehouse\nDock 4"


def test_export_of_a_segment(db_session):
    f.member(db_session, email="a@example.org", local="Local 30")
    f.member(db_session, email="b@example.org", local="Local 1")
    segment = segments.create_segment(
        db_session, name="30", rules=[{"field": "local", "op": "equals", "value": "Local 30"}]
    )
    rows = read_csv(export.export_segment(db_session, segment))
    assert [row[0] for row in rows[1:]] == ["a@example.org"]


def test_the_transactional_task_kind_sends_the_confirmation(db_session, double, tmp_path):
    from app.services.sending import transactional

    db_session.add(
        OrgSettings(organization="Prairie Workers", mailing_address="1 Main St", contact="a@b.ca")
    )
    db_session.add(Sender(email="news@example.org", name="Prairie Workers", is_default=True))
    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    [(kind, payload)] = [
        j.args for j in jobs.pending_jobs(db_session) if j.name == jobs.SEND_TRANSACTIONAL
    ]
    transport = OutboxTransport(str(tmp_path))
    assert transactional.deliver(db_session, transport, kind, payload) == 1
    assert transactional.deliver(db_session, transport, kind, payload) == 0  # a redelivery
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_the_transactional_kind_logs_a_missing_identity_instead_of_failing(db_session, double):
    from app.services.sending import transactional

    m = f.member(db_session, email="pat@example.org")
    optin.subscribe(db_session, m, double, source=SubscriptionSource.FORM)
    payload = {"member_id": m.id, "list_id": double.id}
    assert (
        transactional.deliver(
            db_session, OutboxTransport("/nonexistent"), "optin_confirmation", payload
        )
        == 0
    )
