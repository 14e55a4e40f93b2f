"""The stepped freeze: the first batches leave while the rest of the audience is frozen.

`freeze_in_steps` commits after each step; the campaign can only finish once the last step
has set `frozen_at` (issue 15, keeping issue 11's guarantees).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from app import jobs
from app.models import Campaign, CampaignStatus, Delivery, SendBatch
from app.services import sending
from app.services.sending.audience import LANGUAGE_STRIDE
from app.services.sending.status import finish_if_done
from tests.support.sending import add_members, make_campaign, make_list, setup_org

NOW = datetime(2025, 12, 17, 15, 0, tzinfo=UTC)


@pytest.fixture
def published(monkeypatch):
    """SEND_BATCH jobs as they leave (after each step's commit) or wait to."""
    sent: list[tuple] = []
    monkeypatch.setattr(jobs, "send_now", lambda job: sent.append((job.name, job.args)))
    return sent


def _sending_campaign(db_session, members):
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, members, lst.id)
    campaign = make_campaign(db_session, [lst])
    campaign.status = CampaignStatus.SENDING.value
    campaign.started_at = NOW
    db_session.commit()
    return campaign, lst


def published_jobs(db_session):
    return [(job.name, job.args) for job in jobs.pending_jobs(db_session)]


def _ledger(db_session, campaign_id):
    return db_session.execute(
        sa.select(Delivery.member_id, Delivery.batch_no, Delivery.language)
        .where(Delivery.campaign_id == campaign_id)
        .order_by(Delivery.member_id)
    ).all()


def test_steps_freeze_everyone_once_in_batches_of_one_language(db_session, published):
    campaign, _ = _sending_campaign(db_session, members=23)
    seen: list[tuple[int, bool, datetime | None]] = []

    def after_step(step):
        frozen_at = db_session.scalar(
            sa.select(Campaign.frozen_at).where(Campaign.id == campaign.id)
        )
        seen.append((step.inserted, step.complete, frozen_at))

    result = sending.freeze_in_steps(
        db_session, campaign.id, batch_size=2, first=2, growth=2, after_step=after_step
    )

    rows = _ledger(db_session, campaign.id)
    assert result.complete
    assert result.inserted == 23 == len(rows)
    assert len({r.member_id for r in rows}) == 23
    # Steps of 2, 4, 8, then the rest; frozen_at only in the last step's transaction.
    assert [s[0] for s in seen] == [2, 4, 8, 9]
    assert [s[1] for s in seen] == [False, False, False, True]
    assert [s[2] is None for s in seen] == [True, True, True, False]
    # Every batch: at most batch_size rows, one language, one send_batches row, queued once.
    sizes = Counter(r.batch_no for r in rows)
    assert max(sizes.values()) <= 2
    for batch_no in sizes:
        languages = {r.language for r in rows if r.batch_no == batch_no}
        assert len(languages) == 1
        assert (batch_no >= LANGUAGE_STRIDE) == (languages == {"fr"})
    stored = dict(
        db_session.execute(
            sa.select(SendBatch.batch_no, SendBatch.size).where(
                SendBatch.campaign_id == campaign.id
            )
        ).all()
    )
    assert stored == dict(sizes)
    queued = [args[1] for name, args in published + published_jobs(db_session)
              if name == jobs.SEND_BATCH]  # fmt: skip
    assert sorted(queued) == sorted(sizes)
    assert sorted(result.batches) == sorted(sizes)


def test_a_campaign_never_finishes_before_its_last_step(db_session, published):
    campaign, _ = _sending_campaign(db_session, members=10)
    finished_early: list[bool] = []

    def after_step(step):
        if step.complete:
            return
        # Everything frozen so far was sent: still not done, the audience is not complete.
        db_session.execute(
            sa.update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent")
        )
        db_session.execute(
            sa.update(SendBatch).where(SendBatch.campaign_id == campaign.id).values(status="sent")
        )
        finished_early.append(finish_if_done(db_session, campaign.id))
        db_session.commit()

    result = sending.freeze_in_steps(
        db_session, campaign.id, batch_size=2, first=2, growth=2, after_step=after_step
    )
    assert finished_early == [False, False]  # steps of 2 and 4; the third (4 left) completes
    assert result.complete
    assert not result.finished
    db_session.refresh(campaign)
    assert campaign.status == "sending"


def test_the_last_step_finishes_a_campaign_whose_batches_all_ended(db_session, published):
    campaign, _ = _sending_campaign(db_session, members=4)

    def after_step(step):
        db_session.execute(
            sa.update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent")
        )
        db_session.execute(
            sa.update(SendBatch).where(SendBatch.campaign_id == campaign.id).values(status="sent")
        )
        db_session.commit()

    # Steps of 2 then 4: the second step finds two members, the third none.
    result = sending.freeze_in_steps(
        db_session, campaign.id, batch_size=2, first=2, growth=2, after_step=after_step
    )
    assert result.complete
    db_session.refresh(campaign)
    assert campaign.status == "sent"
    assert result.finished


def test_a_pause_between_steps_stops_the_freeze_and_a_resume_continues_it(db_session, published):
    campaign, _ = _sending_campaign(db_session, members=12)

    def pause_after_first(step):
        if step.inserted == 2:
            sending.pause(db_session, campaign.id, None)
            db_session.commit()

    first = sending.freeze_in_steps(
        db_session, campaign.id, batch_size=2, first=2, growth=2, after_step=pause_after_first
    )
    assert not first.complete
    assert first.inserted == 2
    db_session.refresh(campaign)
    assert campaign.frozen_at is None
    assert campaign.status == "paused"

    sending.resume(db_session, campaign.id, None)
    db_session.commit()
    assert (jobs.DISPATCH_CAMPAIGN, (campaign.id,)) in published
    second = sending.freeze_in_steps(db_session, campaign.id, batch_size=2, first=2, growth=2)
    rows = _ledger(db_session, campaign.id)
    assert second.complete
    assert second.inserted == 10
    assert len(rows) == len({r.member_id for r in rows}) == 12
    # The resumed dispatch queues the first step's batches again too (a lost message).
    first_batches = {r.batch_no for r in rows[:2]}
    assert first_batches <= set(second.batches)


def test_a_late_member_joins_only_while_the_freeze_runs(db_session, published):
    campaign, lst = _sending_campaign(db_session, members=4)

    def add_late(step):
        if step.inserted == 2:
            add_members(db_session, 1, lst.id, prefix="late", start=100)
            db_session.commit()

    sending.freeze_in_steps(
        db_session, campaign.id, batch_size=2, first=2, growth=2, after_step=add_late
    )
    assert len(_ledger(db_session, campaign.id)) == 5
    add_members(db_session, 1, lst.id, prefix="later", start=200)
    db_session.commit()
    again = sending.freeze_in_steps(db_session, campaign.id, batch_size=2, first=2, growth=2)
    assert again.inserted == 0
    assert len(_ledger(db_session, campaign.id)) == 5
