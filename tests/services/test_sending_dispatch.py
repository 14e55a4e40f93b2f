"""Scheduling tick and audience freeze: started once, frozen once, the right people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app import jobs
from app.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    Member,
    SendBatch,
    Subscription,
    SuppressionReason,
    UnsubscribeSource,
)
from app.services import sending
from app.services.audience import subscriptions
from app.services.sending.audience import LANGUAGE_STRIDE
from tests.support.sending import add_members, make_campaign, make_list, setup_org

NOW = datetime(2025, 12, 17, 15, 0, tzinfo=UTC)


def _jobs(session, name):
    return [job.args for job in jobs.pending_jobs(session) if job.name == name]


def _campaign(db_session, members=10, **fields):
    setup_org(db_session)
    lst = make_list(db_session)
    emails = add_members(db_session, members, lst.id)
    return make_campaign(db_session, [lst], **fields), emails, lst


def test_tick_starts_due_campaigns_once(db_session):
    due, _, lst = _campaign(db_session, status="scheduled", send_at=NOW - timedelta(seconds=1))
    later = make_campaign(db_session, [lst], status="scheduled", send_at=NOW + timedelta(minutes=5))
    draft = make_campaign(db_session, [lst], send_at=NOW - timedelta(days=1))

    assert sending.tick(db_session, NOW) == [due.id]
    assert _jobs(db_session, jobs.DISPATCH_CAMPAIGN) == [(due.id,)]
    db_session.commit()

    # A second tick (or a second beat) finds nothing scheduled and due: nothing twice.
    assert sending.tick(db_session, NOW) == []
    assert sending.tick(db_session, NOW + timedelta(seconds=5)) == []
    statuses = dict(db_session.execute(sa.select(Campaign.id, Campaign.status)).all())
    assert statuses == {due.id: "sending", later.id: "scheduled", draft.id: "draft"}
    db_session.refresh(due)
    assert due.started_at == NOW


def test_two_sessions_ticking_together_start_a_campaign_once(app, committed_db):
    from app.extensions import db

    with app.app_context():
        setup_org(db.session)
        lst = make_list(db.session)
        campaign = make_campaign(
            db.session, [lst], status="scheduled", send_at=NOW - timedelta(seconds=1)
        )
        db.session.commit()
        campaign_id = campaign.id
        first = db.session
        second = sa.orm.Session(db.engine)
        try:
            assert sending.tick(first, NOW) == [campaign_id]
            # The second UPDATE waits for the first's row lock, then re-checks the status.
            first.commit()
            assert sending.tick(second, NOW) == []
            second.commit()
        finally:
            second.close()


def test_freeze_writes_one_row_per_eligible_member(db_session):
    campaign, emails, _lst = _campaign(db_session, members=9)
    other = make_list(db_session, "Stewards")
    add_members(db_session, 3, other.id, prefix="member")  # members 1-3 on both lists
    db_session.execute(
        sa.insert(Subscription).from_select(
            ["member_id", "list_id", "status", "source"],
            sa.select(
                Member.id, sa.literal(other.id), sa.literal("subscribed"), sa.literal("x")
            ).where(Member.email == "member4@example.org"),
        )
    )
    from app.models import campaign_lists

    db_session.execute(campaign_lists.insert().values(campaign_id=campaign.id, list_id=other.id))
    # Not eligible: unsubscribed, suppressed, without consent, implied consent expired.
    unsubscribed = db_session.scalar(sa.select(Member).where(Member.email == emails[4]))
    subscriptions.unsubscribe(
        db_session, unsubscribed.id, list_ids=None, source=UnsubscribeSource.LINK
    )
    subscriptions.suppress(db_session, emails[5], SuppressionReason.HARD_BOUNCE)
    db_session.execute(
        sa.update(Member).where(Member.email == emails[6]).values(consent_basis=None)
    )
    db_session.execute(
        sa.update(Member)
        .where(Member.email == emails[7])
        .values(consent_basis="implied_inquiry", consent_expires_at=NOW - timedelta(days=1))
    )
    db_session.execute(
        sa.update(Member)
        .where(Member.email == emails[8])
        .values(consent_basis="implied_inquiry", consent_expires_at=NOW + timedelta(days=30))
    )
    campaign.status = CampaignStatus.SENDING.value
    db_session.flush()

    expected = {emails[i] for i in (0, 1, 2, 3, 8)}
    assert sending.audience_count(db_session, campaign, NOW) == len(expected)

    result = sending.freeze_audience(db_session, campaign.id, now=NOW, batch_size=2)
    rows = db_session.execute(
        sa.select(Delivery.email, Delivery.language, Delivery.batch_no, Delivery.status)
        .where(Delivery.campaign_id == campaign.id)
        .order_by(Delivery.member_id)
    ).all()
    assert {r.email for r in rows} == expected
    assert result.inserted == len(expected)
    assert {r.status for r in rows} == {"queued"}
    # Member 3 and 9 are French (every third); the campaign has a French variant.
    languages = {r.email: r.language for r in rows}
    assert languages["member3@example.org"] == "fr"
    assert languages["member9@example.org"] == "fr"
    assert languages["member1@example.org"] == "en"
    # Batches of two per language; French batches start at the stride.
    batches = {r.email: r.batch_no for r in rows}
    assert batches == {
        "member1@example.org": 0,
        "member2@example.org": 0,
        "member4@example.org": 1,
        "member3@example.org": LANGUAGE_STRIDE,
        "member9@example.org": LANGUAGE_STRIDE,
    }
    assert result.batches == [0, 1, LANGUAGE_STRIDE]
    assert _jobs(db_session, jobs.SEND_BATCH) == [
        (campaign.id, 0),
        (campaign.id, 1),
        (campaign.id, LANGUAGE_STRIDE),
    ]


def test_members_without_their_language_get_the_default_variant(db_session):
    campaign, _, _ = _campaign(db_session, members=6, languages=("en",))
    campaign.status = CampaignStatus.SENDING.value
    sending.freeze_audience(db_session, campaign.id, now=NOW)
    languages = set(
        db_session.scalars(sa.select(Delivery.language).where(Delivery.campaign_id == campaign.id))
    )
    assert languages == {"en"}


def test_a_second_dispatch_inserts_nothing_and_requeues_only_what_is_queued(db_session):
    campaign, _emails, lst = _campaign(db_session, members=5)
    campaign.status = CampaignStatus.SENDING.value
    first = sending.freeze_audience(db_session, campaign.id, now=NOW, batch_size=2)
    db_session.commit()
    add_members(db_session, 2, lst.id, prefix="late")
    db_session.execute(
        sa.update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.batch_no == 0)
        .values(status="sent")
    )
    db_session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id, SendBatch.batch_no == 0)
        .values(status="sent")
    )
    second = sending.freeze_audience(db_session, campaign.id, now=NOW, batch_size=2)

    assert first.inserted == 5
    assert second.inserted == 0  # the audience was frozen once; late joiners wait for next time
    assert 0 not in second.batches
    count = db_session.scalar(sa.select(sa.func.count()).where(Delivery.campaign_id == campaign.id))
    assert count == 5


def test_dispatch_leaves_a_paused_campaign_alone(db_session):
    campaign, _, _ = _campaign(db_session)
    campaign.status = CampaignStatus.PAUSED.value
    result = sending.freeze_audience(db_session, campaign.id, now=NOW)
    assert result.inserted == 0
    assert _jobs(db_session, jobs.SEND_BATCH) == []


def test_a_campaign_with_nobody_to_send_to_finishes_at_once(db_session):
    campaign, emails, _ = _campaign(db_session, members=2)
    for email in emails:
        subscriptions.suppress(db_session, email, SuppressionReason.MANUAL)
    campaign.status = CampaignStatus.SENDING.value
    db_session.flush()
    result = sending.freeze_audience(db_session, campaign.id, now=NOW)
    assert result.finished
    db_session.refresh(campaign)
    assert campaign.status == "sent"
