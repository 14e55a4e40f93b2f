"""CASL consent: expiry rules, the SQL clause every send uses, and recording consent.

Rules (reference/sendgrid-deliverability-casl.md §5; not legal advice):

- Express consent (an opt-in form, a confirmed double opt-in, a signed card) never expires
  until it is withdrawn (an unsubscribe does that per list; a suppression for every list).
- Implied consent through membership lasts while the person is a member and two years after
  the membership ends (s.10(13)(c), s.10(14)(b)): ``consent_expires_at`` is NULL while they are
  a member and ``membership_ended_at + 2 years`` once it has ended.
- Implied consent through an inquiry lasts six months from the inquiry (s.10(9)).
- Other implied consent (an existing business relationship) carries its own expiry date.
- A member with no consent record has no valid consent: they are never sent to.

The sender's audience query uses :func:`consent_valid_clause`; the UI warns
:data:`EXPIRY_WARNING` (60 days) ahead with :func:`consent_expiring_clause`. An import
replaces a member's consent by :func:`import_should_replace`, which the PostgreSQL import
applies in SQL through :func:`import_replaces_sql`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.models import ConsentBasis, Member
from app.models.base import utcnow
from app.services import DbSession

EXPIRY_WARNING = timedelta(days=60)
MEMBERSHIP_GRACE_YEARS = 2
INQUIRY_MONTHS = 6
OTHER_IMPLIED_YEARS = 2

# How much a basis proves: an import never replaces stronger consent with weaker consent.
_RANK = {
    ConsentBasis.EXPRESS.value: 3,
    ConsentBasis.IMPLIED_MEMBERSHIP.value: 2,
    ConsentBasis.IMPLIED_OTHER.value: 1,
    ConsentBasis.IMPLIED_INQUIRY.value: 1,
}

BASIS_LABELS = {
    ConsentBasis.EXPRESS.value: "Express consent",
    ConsentBasis.IMPLIED_MEMBERSHIP.value: "Implied consent (membership)",
    ConsentBasis.IMPLIED_INQUIRY.value: "Implied consent (inquiry)",
    ConsentBasis.IMPLIED_OTHER.value: "Implied consent (other relationship)",
}


class ConsentError(ValueError):
    """A consent change that does not make sense; the message is for the organizer."""


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later, clamped to the end of a shorter month (Aug 31 + 6 -> Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def implied_expiry(
    basis: ConsentBasis | str,
    consent_at: datetime,
    membership_ended_at: datetime | None = None,
) -> datetime | None:
    """When consent of `basis` given at `consent_at` lapses; None means no expiry yet.

    Args:
        basis: the consent basis.
        consent_at: when consent was given (the inquiry date for inquiries).
        membership_ended_at: for membership-based consent, when the membership ended (None
            while the person is still a member).
    """
    basis = ConsentBasis(basis)
    if basis is ConsentBasis.EXPRESS:
        return None
    if basis is ConsentBasis.IMPLIED_MEMBERSHIP:
        if membership_ended_at is None:
            return None
        return add_months(membership_ended_at, 12 * MEMBERSHIP_GRACE_YEARS)
    if basis is ConsentBasis.IMPLIED_INQUIRY:
        return add_months(consent_at, INQUIRY_MONTHS)
    return add_months(consent_at, 12 * OTHER_IMPLIED_YEARS)


def consent_valid_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL condition on ``members``: the member may be sent to at `now` under CASL.

    True for express consent, for membership consent of a current member (no expiry yet), and
    for any implied consent whose expiry is still ahead. False for expired implied consent and
    for members with no consent record. Use it in the audience query (together with the
    subscription status and suppressions), e.g.::

        sa.select(Member.id).where(consent_valid_clause(now), ...)

    It reads ``members.consent_basis`` and ``members.consent_expires_at`` only (the latter is
    indexed), so it adds no join to the audience query.
    """
    return sa.or_(
        Member.consent_basis == ConsentBasis.EXPRESS.value,
        sa.and_(
            Member.consent_basis == ConsentBasis.IMPLIED_MEMBERSHIP.value,
            Member.consent_expires_at.is_(None),
        ),
        sa.and_(Member.consent_basis.is_not(None), Member.consent_expires_at > now),
    )


def consent_expiring_clause(
    now: datetime, within: timedelta = EXPIRY_WARNING
) -> sa.ColumnElement[bool]:
    """SQL condition: implied consent still valid at `now` but lapsing within `within`."""
    return sa.and_(
        Member.consent_basis.is_not(None),
        Member.consent_basis != ConsentBasis.EXPRESS.value,
        Member.consent_expires_at > now,
        Member.consent_expires_at <= now + within,
    )


def consent_expired_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL condition: implied consent that has lapsed at `now`."""
    return sa.and_(
        Member.consent_basis.is_not(None),
        Member.consent_basis != ConsentBasis.EXPRESS.value,
        Member.consent_expires_at <= now,
    )


@dataclass(frozen=True)
class ConsentState:
    """How a member's consent stands, in words for the member page."""

    state: str  # valid, expiring, expired, none
    label: str
    message: str
    expires_at: datetime | None

    @property
    def can_send(self) -> bool:
        return self.state in ("valid", "expiring")


def consent_state(member: Member, now: datetime | None = None) -> ConsentState:
    """Describe `member`'s consent at `now` (the same rule as consent_valid_clause)."""
    now = now or utcnow()
    basis = member.consent_basis
    expires = member.consent_expires_at
    if basis is None:
        return ConsentState(
            "none",
            "No consent recorded",
            "Rallypoint will not email this person until consent is recorded.",
            None,
        )
    label = BASIS_LABELS.get(basis, basis)
    if basis == ConsentBasis.EXPRESS.value:
        return ConsentState("valid", label, "Express consent does not expire.", None)
    if expires is None:
        if basis == ConsentBasis.IMPLIED_MEMBERSHIP.value:
            return ConsentState(
                "valid",
                label,
                "Valid while they are a member, and for two years after their membership ends.",
                None,
            )
        return ConsentState("expired", label, "This consent has no end date recorded.", None)
    if expires <= now:
        return ConsentState(
            "expired",
            label,
            f"Expired on {expires:%Y-%m-%d}: Rallypoint no longer emails this person.",
            expires,
        )
    days = (expires - now).days
    if expires - now <= EXPIRY_WARNING:
        return ConsentState(
            "expiring",
            label,
            f"Expires on {expires:%Y-%m-%d} (in {days} days). Ask them to opt in to keep "
            "emailing them.",
            expires,
        )
    return ConsentState("valid", label, f"Valid until {expires:%Y-%m-%d}.", expires)


def record_consent(
    session: DbSession,
    member: Member,
    basis: ConsentBasis,
    *,
    source: str,
    at: datetime | None = None,
    expires_at: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> Member:
    """Record the consent a member gave, replacing the previous record.

    Changes the member's consent basis, source, date, expiry (computed from the basis; for
    implied "other" consent `expires_at` may be given) and details. Enqueues nothing. Flushes.

    Args:
        session: the database session.
        member: the member.
        basis: express, implied_membership, implied_inquiry or implied_other.
        source: how it was given, in words ("signed membership card", "form: Action network").
        at: when it was given (now by default); not in the future.
        expires_at: only for implied_other, when it lapses (two years after `at` by default).
        detail: proof to keep: form wording, list, IP address, user agent, file name.

    Raises:
        ConsentError: a date in the future, or an expiry before the consent.
    """
    now = utcnow()
    at = at or now
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at > now + timedelta(minutes=5):
        raise ConsentError("The consent date can't be in the future.")
    if basis is ConsentBasis.IMPLIED_OTHER and expires_at is not None:
        if expires_at <= at:
            raise ConsentError("The consent must expire after it was given.")
        expiry: datetime | None = expires_at
    else:
        expiry = implied_expiry(basis, at, member.membership_ended_at)
    member.consent_basis = basis.value
    member.consent_source = source[:200]
    member.consent_at = at
    member.consent_expires_at = expiry
    member.consent_detail = dict(detail or {})
    session.flush()
    return member


def withdraw_consent(session: DbSession, member: Member) -> Member:
    """Remove a member's consent record (they can no longer be emailed). Flushes."""
    member.consent_basis = None
    member.consent_source = ""
    member.consent_at = None
    member.consent_expires_at = None
    member.consent_detail = {}
    session.flush()
    return member


def set_membership_end(session: DbSession, member: Member, ended_at: datetime | None) -> Member:
    """Record when a membership ended (None: still a member) and move implied consent with it.

    For membership-based implied consent, the expiry becomes two years after the end (or none
    while still a member). Other consent is unchanged. Flushes.
    """
    member.membership_ended_at = ended_at
    if member.consent_basis == ConsentBasis.IMPLIED_MEMBERSHIP.value:
        member.consent_expires_at = implied_expiry(
            ConsentBasis.IMPLIED_MEMBERSHIP, member.consent_at or utcnow(), ended_at
        )
    session.flush()
    return member


def consent_rank(basis: str | None) -> int:
    """How strong a basis is (0 for none); imports only ever move consent up, or refresh it."""
    return _RANK.get(basis or "", 0)


def import_should_replace(
    old_basis: str | None,
    old_expires_at: datetime | None,
    new_basis: str,
    new_expires_at: datetime | None,
) -> bool:
    """Whether an import's consent replaces a member's current record.

    Yes when the member has none, when the new basis is stronger, or when it is the same
    implied basis with a later (or no) expiry: a re-import of current members renews
    membership consent, a new inquiry renews inquiry consent. Express consent already on file
    is never replaced (its original date is the proof). The PostgreSQL import applies the same
    rule in SQL (import_replaces_sql); a test keeps the two equal.
    """
    old_rank, new_rank = consent_rank(old_basis), consent_rank(new_basis)
    if old_basis is None or new_rank > old_rank:
        return True
    if old_basis != new_basis or new_basis == ConsentBasis.EXPRESS.value:
        return False
    if old_expires_at is None:
        return False
    return new_expires_at is None or new_expires_at > old_expires_at


def import_replaces_sql(new_basis: str, new_expires_at: datetime | None) -> str:
    """SQL true where an import's consent replaces a member's record: import_should_replace.

    For the PostgreSQL import's set-based UPDATE: the member is the alias ``m``, the new
    basis is bound as ``:c_basis`` and its expiry as ``:c_expires``. The ranks come from the
    same table as consent_rank; tests/services/test_optin_consent_export.py checks that the
    SQL and the Python agree on every combination.
    """
    rank = " ".join(f"WHEN '{basis}' THEN {rank}" for basis, rank in _RANK.items())
    old_rank = f"CASE m.consent_basis {rank} ELSE 0 END"
    if new_basis == ConsentBasis.EXPRESS.value:
        same_basis_renews = "FALSE"
    elif new_expires_at is None:
        same_basis_renews = (
            "(m.consent_basis = CAST(:c_basis AS text) AND m.consent_expires_at IS NOT NULL)"
        )
    else:
        same_basis_renews = (
            "(m.consent_basis = CAST(:c_basis AS text) AND m.consent_expires_at IS NOT NULL"
            " AND CAST(:c_expires AS timestamptz) > m.consent_expires_at)"
        )
    return (
        f"(m.consent_basis IS NULL OR {consent_rank(new_basis)} > {old_rank} "
        f"OR {same_basis_renews})"
    )
