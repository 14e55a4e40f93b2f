"""Build sendable campaigns and audiences fast (set-based inserts) for sending tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa

from app.emails.samples import IDENTITIES, SAMPLES
from app.infra.tokens import TokenSigner
from app.models import (
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Delivery,
    MailingList,
    OrgSettings,
    SendBatch,
    Sender,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import sending
from app.services.sending import SendContext, Settlement, coordination
from app.services.transports import Transport

SENDER = "alerts@prairieworkers.example"
SECRET = "test-secret-key-that-is-long-enough-000000"


def setup_org(session, *, rate_per_minute: int = 0, timezone: str = "America/Edmonton") -> None:
    """The organization's identity (CASL) and one allowed sender."""
    identity = IDENTITIES["en"]
    settings = session.get(OrgSettings, 1)
    if settings is None:
        settings = OrgSettings(id=1)
        session.add(settings)
    settings.organization = identity.organization
    settings.mailing_address = identity.mailing_address
    settings.contact = identity.contact
    settings.timezone = timezone
    settings.send_rate_per_minute = rate_per_minute
    if session.scalar(sa.select(Sender.id).where(Sender.email == SENDER)) is None:
        session.add(Sender(email=SENDER, name="Prairie Public Workers' Union", is_default=True))
    session.flush()


def make_list(session, name: str = "All members") -> MailingList:
    row = MailingList(name=name, slug=name.lower().replace(" ", "-"))
    session.add(row)
    session.flush()
    return row


def add_members(
    session,
    count: int,
    list_id: int,
    *,
    prefix: str = "member",
    start: int = 1,
    french_every: int = 3,
    consent: str | None = "express",
) -> list[str]:
    """`count` members subscribed to a list, one in `french_every` French; their emails."""
    session.execute(
        sa.text(
            """
            INSERT INTO members (email, first_name, last_name, language, postal_code, local,
                                 attributes, consent_basis, consent_source, created_at, updated_at)
            SELECT :prefix || n || '@example.org', 'First' || n, 'Last' || n,
                   CASE WHEN n % CAST(:fr AS integer) = 0 THEN 'fr' ELSE 'en' END, 'T5J 2M1',
                   'Local ' || (n % 7), '{"shift": "nights"}'::jsonb, :consent, 'test',
                   now(), now()
              FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS n
            ON CONFLICT (email) DO NOTHING
            """
        ),
        {
            "prefix": prefix,
            "fr": french_every,
            "consent": consent,
            "start": start,
            "stop": start + count - 1,
        },
    )
    session.execute(
        sa.text(
            """
            INSERT INTO subscriptions (member_id, list_id, status, source, subscribed_at,
                                       created_at, updated_at)
            SELECT m.id, :list_id, 'subscribed', 'import', now(), now(), now()
              FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS n
              JOIN members m ON m.email = :prefix || n || '@example.org'
            ON CONFLICT DO NOTHING
            """
        ),
        {"list_id": list_id, "prefix": prefix, "start": start, "stop": start + count - 1},
    )
    session.flush()
    return [f"{prefix}{n}@example.org" for n in range(start, start + count)]


def make_campaign(
    session,
    lists: list[MailingList],
    *,
    layout: str = "day_of_action",
    languages: tuple[str, ...] = ("en", "fr"),
    **fields: Any,
) -> Campaign:
    """A campaign with the sample content of `layout` in each language, ready to send."""
    campaign = Campaign(
        name=fields.pop("name", "Day of action, Dec. 17"),
        layout=layout,
        from_email=fields.pop("from_email", SENDER),
        from_name=fields.pop("from_name", "Prairie Public Workers' Union"),
        reply_to=fields.pop("reply_to", "office@prairieworkers.example"),
        default_language=languages[0],
        **fields,
    )
    for language in languages:
        content = SAMPLES[(layout, language)]
        campaign.variants.append(
            CampaignVariant(
                language=language,
                subject=content.subject,
                preheader=content.preheader,
                body=content.body,
                body_format=content.body_format,
                fields=dict(content.fields),
            )
        )
    session.add(campaign)
    session.flush()
    for mailing_list in lists:
        session.execute(
            campaign_lists.insert().values(campaign_id=campaign.id, list_id=mailing_list.id)
        )
    session.flush()
    return campaign


@dataclass
class Setup:
    campaign: Campaign
    emails: list[str]


def sending_context(
    transport: Transport,
    redis_url: str,
    *,
    base_url: str = "https://rally.example.org",
    batch_size: int = 1000,
    max_failed_batches: int = 3,
    settlement: Settlement | None = None,
) -> SendContext:
    return SendContext(
        transport=transport,
        redis=redis.Redis.from_url(redis_url),
        signer=TokenSigner([SECRET]),
        base_url=base_url,
        batch_size=batch_size,
        stall_seconds=60.0,
        max_failed_batches=max_failed_batches,
        settlement=settlement or Settlement(),
    )


def clear_sending_keys(redis_url: str) -> None:
    """Forget rate buckets, heartbeats, streaks and locks (this session's private Redis)."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter("rp:sending:*"))
    if keys:
        client.delete(*keys)
    # A Redis that has been up all along: the sweep would otherwise read the missing epoch
    # as a restart that lost every queued message.
    coordination.broker_lost_messages(client)


def finished_with_unknown(session, campaign, *, unknown_batches: int = 1) -> int:
    """Freeze and 'send' a campaign whose first batches a crash left unknown; it is sent.

    Returns how many members are unknown. The batch size is 2, so the campaign needs more
    members than `2 * unknown_batches`.
    """
    campaign.status = CampaignStatus.SENDING.value
    session.flush()
    sending.freeze_audience(session, campaign.id, batch_size=2)
    session.execute(
        sa.update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent")
    )
    session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id)
        .values(status="sent", claimed_at=utcnow())
    )
    doubt = sa.and_(Delivery.campaign_id == campaign.id, Delivery.batch_no < unknown_batches)
    count = session.execute(
        sa.update(Delivery).where(doubt).values(status="unknown", error="no answer")
    ).rowcount
    session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id, SendBatch.batch_no < unknown_batches)
        .values(status="unknown")
    )
    assert sending.finish_if_done(session, campaign.id)
    session.commit()
    return int(count)
