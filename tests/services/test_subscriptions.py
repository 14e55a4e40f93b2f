"""Unsubscribes and suppressions win immediately, including over queued deliveries."""

from __future__ import annotations

from app.models import SuppressionReason, UnsubscribeSource
from app.services.audience import subscriptions
from tests import factories as f


def test_unsubscribe_from_campaign_lists_skips_only_their_queued_deliveries(db_session):
    m = f.member(db_session)
    news, action = f.mailing_list(db_session), f.mailing_list(db_session)
    f.subscribe(db_session, m, news)
    f.subscribe(db_session, m, action)
    c_news = f.campaign(db_session, [news])
    c_action = f.campaign(db_session, [action])
    d_news = f.delivery(db_session, c_news, m)
    d_action = f.delivery(db_session, c_action, m)

    changed = subscriptions.unsubscribe(
        db_session, m.id, list_ids=[news.id], source=UnsubscribeSource.ONE_CLICK
    )

    assert changed == 1
    db_session.refresh(d_news)
    db_session.refresh(d_action)
    assert (d_news.status, d_action.status) == ("skipped", "queued")
    statuses = {s.list_id: (s.status, s.unsubscribe_source) for s in m.subscriptions}
    assert statuses[news.id] == ("unsubscribed", "one_click")
    assert statuses[action.id][0] == "subscribed"
    # idempotent
    assert (
        subscriptions.unsubscribe(
            db_session, m.id, list_ids=[news.id], source=UnsubscribeSource.LINK
        )
        == 0
    )


def test_unsubscribe_from_all_lists(db_session):
    m = f.member(db_session)
    lists = [f.mailing_list(db_session) for _ in range(3)]
    for lst in lists:
        f.subscribe(db_session, m, lst)
    d = f.delivery(db_session, f.campaign(db_session, lists[:1]), m)
    assert (
        subscriptions.unsubscribe(db_session, m.id, list_ids=None, source=UnsubscribeSource.ADMIN)
        == 3
    )
    db_session.refresh(d)
    assert d.status == "skipped"


def test_suppression_skips_queued_but_not_sent_deliveries(db_session):
    m = f.member(db_session, email="bounce@example.org")
    c = f.campaign(db_session)
    queued = f.delivery(db_session, c, m)
    sent = f.delivery(db_session, f.campaign(db_session), m, status="sent")
    subscriptions.suppress(db_session, " Bounce@Example.org ", SuppressionReason.HARD_BOUNCE, "550")
    subscriptions.suppress(db_session, "bounce@example.org", SuppressionReason.MANUAL)  # idempotent
    db_session.refresh(queued)
    db_session.refresh(sent)
    assert (queued.status, sent.status) == ("skipped", "sent")
    assert subscriptions.is_suppressed(db_session, "BOUNCE@example.org")
    # a hard bounce cannot be lifted by hand; a manual suppression can
    assert subscriptions.unsuppress(db_session, "bounce@example.org") is False
    subscriptions.suppress(db_session, "manual@example.org", SuppressionReason.MANUAL)
    assert subscriptions.unsuppress(db_session, "manual@example.org") is True
    assert not subscriptions.is_suppressed(db_session, "manual@example.org")
