"""Mailing lists: create and edit them, count their subscribers, page through their members."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.models import (
    ImportStatus,
    MailingList,
    Member,
    MemberImport,
    Segment,
    Subscription,
    SubscriptionStatus,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import Conflict, DbSession, Invalid
from app.services.audience.consent import consent_expiring_clause

OPT_INS = ("single", "double")
PER_PAGE = 50


class ListError(Invalid):
    """A list change that cannot be made; the message is for the organizer."""


class ListNameTaken(Conflict, ListError):
    """Another list already has that name."""


class ListInUse(Conflict, ListError):
    """Campaigns use the list, so it stays."""


@dataclass(frozen=True)
class ListCounts:
    subscribed: int = 0
    unsubscribed: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.subscribed + self.unsubscribed + self.pending


def slugify(text: str) -> str:
    """A URL-safe slug: 'Réseau d'action' -> 'reseau-d-action'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:80] or "list"


def _unique_slug(session: DbSession, name: str, exclude_id: int | None = None) -> str:
    base = slugify(name)
    slug, n = base, 1
    while True:
        query = sa.select(MailingList.id).where(MailingList.slug == slug)
        if exclude_id is not None:
            query = query.where(MailingList.id != exclude_id)
        if session.scalar(query) is None:
            return slug
        n += 1
        slug = f"{base}-{n}"


def _clean(name: str, description: str, opt_in: str) -> tuple[str, str]:
    name = " ".join((name or "").split())
    if not name:
        raise ListError("Give the list a name.")
    if len(name) > 200:
        raise ListError("The name is too long (200 characters at most).")
    if opt_in not in OPT_INS:
        raise ListError("Opt-in must be single or double.")
    return name, (description or "").strip()


def create_list(
    session: DbSession,
    *,
    name: str,
    description: str = "",
    is_public: bool = False,
    opt_in: str = "single",
) -> MailingList:
    """Create a mailing list with a unique name and a slug for its public form. Flushes.

    Raises:
        ListError: empty or taken name, unknown opt-in.
    """
    name, description = _clean(name, description, opt_in)
    if session.scalar(sa.select(MailingList.id).where(MailingList.name == name)) is not None:
        raise ListNameTaken(f"There is already a list called {name}.")
    row = MailingList(
        name=name,
        slug=_unique_slug(session, name),
        description=description,
        is_public=is_public,
        opt_in=opt_in,
    )
    session.add(row)
    session.flush()
    return row


def update_list(
    session: DbSession,
    mailing_list: MailingList,
    *,
    name: str | None = None,
    description: str | None = None,
    is_public: bool | None = None,
    opt_in: str | None = None,
) -> MailingList:
    """Change a list's name, description, visibility or opt-in (given fields only). Flushes.

    The slug (the public form's address) stays, so embedded forms keep working after a rename.

    Raises:
        ListError: empty or taken name, unknown opt-in.
    """
    new_name, new_description = _clean(
        mailing_list.name if name is None else name,
        mailing_list.description if description is None else description,
        mailing_list.opt_in if opt_in is None else opt_in,
    )
    taken = session.scalar(
        sa.select(MailingList.id).where(
            MailingList.name == new_name, MailingList.id != mailing_list.id
        )
    )
    if taken is not None:
        raise ListNameTaken(f"There is already a list called {new_name}.")
    mailing_list.name = new_name
    mailing_list.description = new_description
    if is_public is not None:
        mailing_list.is_public = is_public
    if opt_in is not None:
        mailing_list.opt_in = opt_in
    session.flush()
    return mailing_list


def delete_list(session: DbSession, mailing_list: MailingList) -> None:
    """Delete a list and its subscriptions (members stay). Flushes.

    The subscriptions go with it in the database (ON DELETE CASCADE, passive_deletes: none
    is loaded). Past imports into it keep their report, with no list (ON DELETE SET NULL).

    Raises:
        ListError: a campaign was sent (or is set) to this list, whose history needs it; a
            segment's rule names it (a rule on a missing list would silently match no one,
            or everyone); or an import into it is still queued or running.
    """
    used = session.scalar(
        sa.select(sa.func.count())
        .select_from(campaign_lists)
        .where(campaign_lists.c.list_id == mailing_list.id)
    )
    if used:
        raise ListInUse("Campaigns use this list, so it can't be deleted.")
    segments = _segments_naming(session, mailing_list.id)
    if segments:
        names = ", ".join(sorted(segments))
        raise ListInUse(f"The segments {names} use this list; change them first.")
    importing = session.scalar(
        sa.select(sa.func.count())
        .select_from(MemberImport)
        .where(
            MemberImport.list_id == mailing_list.id,
            MemberImport.status.in_([ImportStatus.QUEUED.value, ImportStatus.RUNNING.value]),
        )
    )
    if importing:
        raise ListInUse("An import into this list is still running; try again when it ends.")
    session.delete(mailing_list)
    session.flush()


def _segments_naming(session: DbSession, list_id: int) -> list[str]:
    # Segments are few and their rules are JSON: read them rather than query into JSON.
    return [
        segment.name
        for segment in session.scalars(sa.select(Segment))
        if any(
            isinstance(rule, dict) and rule.get("field") == "list" and _same_id(rule, list_id)
            for rule in segment.rules or []
        )
    ]


def _same_id(rule: dict[str, Any], list_id: int) -> bool:
    value = rule.get("value")
    return str(value) == str(list_id)


def get_list(session: DbSession, list_id: int) -> MailingList | None:
    return session.get(MailingList, list_id)


def list_by_name(session: DbSession, name: str) -> MailingList | None:
    """A list by its exact name, or else by a case-insensitive match or its slug."""
    exact = session.scalar(sa.select(MailingList).where(MailingList.name == name))
    if exact is not None:
        return exact
    return session.scalar(
        sa.select(MailingList).where(
            sa.or_(sa.func.lower(MailingList.name) == name.lower(), MailingList.slug == name)
        )
    )


def public_list_by_slug(session: DbSession, slug: str) -> MailingList | None:
    return session.scalar(
        sa.select(MailingList).where(MailingList.slug == slug, MailingList.is_public.is_(True))
    )


def all_lists(session: DbSession) -> list[MailingList]:
    return list(session.scalars(sa.select(MailingList).order_by(MailingList.name)))


def list_counts(session: DbSession, list_ids: list[int] | None = None) -> dict[int, ListCounts]:
    """Subscribers per list and status.

    One GROUP BY over subscriptions, served by the (list_id, status) index as an index-only
    scan: no member row is read, whatever the size of the lists.
    """
    query = sa.select(Subscription.list_id, Subscription.status, sa.func.count()).group_by(
        Subscription.list_id, Subscription.status
    )
    if list_ids is not None:
        query = query.where(Subscription.list_id.in_(list_ids))
    counts: dict[int, dict[str, int]] = {}
    for list_id, status, count in session.execute(query):
        counts.setdefault(list_id, {})[status] = count
    return {
        list_id: ListCounts(
            subscribed=by_status.get(SubscriptionStatus.SUBSCRIBED.value, 0),
            unsubscribed=by_status.get(SubscriptionStatus.UNSUBSCRIBED.value, 0),
            pending=by_status.get(SubscriptionStatus.PENDING.value, 0),
        )
        for list_id, by_status in counts.items()
    }


def expiring_consent_count(session: DbSession, list_id: int, now: datetime | None = None) -> int:
    """Subscribed members of a list whose implied consent lapses within 60 days.

    Starts from the indexed consent_expires_at range (few rows) and probes subscriptions by
    primary key, so it stays cheap on a large list.
    """
    now = now or utcnow()
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Member)
            .join(Subscription, Subscription.member_id == Member.id)
            .where(
                Subscription.list_id == list_id,
                Subscription.status == SubscriptionStatus.SUBSCRIBED.value,
                consent_expiring_clause(now),
            )
        )
        or 0
    )


@dataclass(frozen=True)
class MemberPage:
    """One page of members: rows (member, subscription status), and whether more follow."""

    rows: list[tuple[Member, str | None]]
    page: int
    per_page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1


def search_condition(search: str) -> sa.ColumnElement[bool] | None:
    """Match an email (start of the address) or a name (any part, first or last, or both)."""
    words = search.strip().lower().split()
    if not words:
        return None
    text = " ".join(words)
    if "@" in text and len(words) == 1:
        return Member.email.startswith(text, autoescape=True)
    conditions = []
    for word in words:
        pattern = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(
            sa.or_(
                sa.func.lower(Member.first_name).like(f"%{pattern}%", escape="\\"),
                sa.func.lower(Member.last_name).like(f"%{pattern}%", escape="\\"),
                Member.email.startswith(word, autoescape=True),
            )
        )
    return sa.and_(*conditions)


def list_members(
    session: DbSession,
    list_id: int | None,
    *,
    search: str = "",
    status: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> MemberPage:
    """A page of a list's members (or of all members when `list_id` is None), newest first.

    Fetches per_page + 1 rows to know whether a next page exists instead of counting the
    whole list: paging stays cheap on a list of a million.
    """
    page = max(1, page)
    if list_id is None:
        query: sa.Select[Any] = sa.select(Member, sa.null())
        order = Member.id.desc()
    else:
        query = sa.select(Member, Subscription.status).join(
            Subscription,
            sa.and_(Subscription.member_id == Member.id, Subscription.list_id == list_id),
        )
        if status:
            query = query.where(Subscription.status == status)
        order = Member.id.desc()
    condition = search_condition(search)
    if condition is not None:
        query = query.where(condition)
    rows = session.execute(
        query.order_by(order).limit(per_page + 1).offset((page - 1) * per_page)
    ).all()
    return MemberPage(
        rows=[(row[0], row[1]) for row in rows[:per_page]],
        page=page,
        per_page=per_page,
        has_next=len(rows) > per_page,
    )
