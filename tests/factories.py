"""Small factories for model rows (plain functions over a session; flush, no commit)."""

from __future__ import annotations

import itertools
from typing import Any

from app.models import (
    Campaign,
    CampaignVariant,
    Delivery,
    MailingList,
    Member,
    Subscription,
    campaign_lists,
)

_seq = itertools.count(1)


def member(session, **fields: Any) -> Member:
    n = next(_seq)
    row = Member(email=fields.pop("email", f"member{n}@example.org"), **fields)
    session.add(row)
    session.flush()
    return row


def mailing_list(session, **fields: Any) -> MailingList:
    n = next(_seq)
    name = fields.pop("name", f"List {n}")
    row = MailingList(name=name, slug=fields.pop("slug", f"list-{n}"), **fields)
    session.add(row)
    session.flush()
    return row


def subscribe(session, m: Member, lst: MailingList, status: str = "subscribed") -> Subscription:
    row = Subscription(member_id=m.id, list_id=lst.id, status=status, source="admin")
    session.add(row)
    session.flush()
    return row


def campaign(session, lists: list[MailingList] = (), **fields: Any) -> Campaign:  # type: ignore[assignment]
    row = Campaign(name=fields.pop("name", f"Campaign {next(_seq)}"), **fields)
    row.variants.append(CampaignVariant(language="en", subject="Hello", body="Hi"))
    session.add(row)
    session.flush()
    for lst in lists:
        session.execute(campaign_lists.insert().values(campaign_id=row.id, list_id=lst.id))
    return row


def delivery(session, c: Campaign, m: Member, **fields: Any) -> Delivery:
    row = Delivery(campaign_id=c.id, member_id=m.id, email=m.email, **fields)
    session.add(row)
    session.flush()
    return row
