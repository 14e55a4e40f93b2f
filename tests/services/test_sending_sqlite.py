"""`make run` sends on SQLite: the same freeze, claim and outcome, without SKIP LOCKED."""

from __future__ import annotations

from email import message_from_bytes, policy

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.emails.samples import IDENTITIES, SAMPLES
from app.models import (
    Base,
    Campaign,
    CampaignVariant,
    Delivery,
    MailingList,
    Member,
    OrgSettings,
    Sender,
    Subscription,
    Suppression,
    campaign_lists,
)
from app.services import sending
from app.services.transports.outbox import OutboxTransport
from tests.support.sending import clear_sending_keys, sending_context


def test_a_campaign_goes_out_on_sqlite(app_ctx, test_environ, tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dev.db'}")
    Base.metadata.create_all(engine)
    clear_sending_keys(test_environ["REDIS_URL"])
    identity = IDENTITIES["en"]
    with Session(engine) as session:
        session.add(
            OrgSettings(
                id=1,
                organization=identity.organization,
                mailing_address=identity.mailing_address,
                contact=identity.contact,
            )
        )
        session.add(Sender(email="alerts@prairieworkers.example", name="PPWU"))
        members_list = MailingList(name="All", slug="all")
        session.add(members_list)
        session.flush()
        for n in range(5):
            member = Member(
                email=f"m{n}@example.org",
                first_name=f"Name{n}",
                language="fr" if n % 2 else "en",
                consent_basis="express",
            )
            session.add(member)
            session.flush()
            session.add(Subscription(member_id=member.id, list_id=members_list.id))
        campaign = Campaign(
            name="Dec. 17",
            layout="day_of_action",
            from_email="alerts@prairieworkers.example",
            from_name="PPWU",
        )
        for language in ("en", "fr"):
            content = SAMPLES[("day_of_action", language)]
            campaign.variants.append(
                CampaignVariant(
                    language=language,
                    subject=content.subject,
                    body=content.body,
                    fields=dict(content.fields),
                )
            )
        session.add(campaign)
        session.flush()
        session.execute(
            campaign_lists.insert().values(campaign_id=campaign.id, list_id=members_list.id)
        )
        session.add(Suppression(email="m4@example.org", reason="manual"))
        session.commit()

        sending.send_now(session, campaign)
        session.commit()
        frozen = sending.freeze_audience(session, campaign.id, batch_size=2)
        session.commit()
        context = sending_context(
            OutboxTransport(str(tmp_path / "outbox")), test_environ["REDIS_URL"]
        )
        for batch_no in frozen.batches:
            sending.send_batch(session, campaign.id, batch_no, context=context)

        statuses = dict(session.execute(sa.select(Delivery.email, Delivery.status)).all())
        assert statuses == {f"m{n}@example.org": "sent" for n in range(4)}
        session.refresh(campaign)
        assert campaign.status == "sent"
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 4
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["List-Unsubscribe"].startswith("<https://rally.example.org/u/")
    engine.dispose()
