"""Demo audience for `make run`: two lists and about 200 members, generated deterministically.

No Faker here (a development dependency only): small lists of common Canadian first and last
names, locals and postal-code areas, combined by a seeded random generator, so every run
creates the same people.
"""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.models import (
    ConsentBasis,
    MailingList,
    Member,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
)
from app.services import DbSession
from app.services.audience import lists

ALL_MEMBERS = "All members"
ACTION_NETWORK = "Action network"
DEMO_DOMAIN = "example.org"
MEMBER_COUNT = 200
_SEED = 1917

_FIRST_EN = [
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Jack",
    "Charlotte",
    "Benjamin",
    "Amelia",
    "Lucas",
    "Ava",
    "Owen",
    "Sophia",
    "Ethan",
    "Chloe",
    "Samuel",
    "Maya",
    "Priya",
    "Harjit",
    "Wei",
    "Mei",
    "Aisha",
    "Omar",
    "Daniel",
    "Grace",
    "Nathan",
    "Hannah",
    "Ryan",
    "Leah",
    "Tyler",
    "Jasmine",
    "Kwame",
    "Fatima",
]
_FIRST_FR = [
    "Gabriel",
    "Léa",
    "Raphaël",
    "Alice",
    "Louis",
    "Florence",
    "Arthur",
    "Béatrice",
    "Thomas",
    "Juliette",
    "Félix",
    "Rosalie",
    "Étienne",
    "Camille",
    "Mathis",
    "Maëlle",
    "Jérôme",
    "Geneviève",
    "Marc-André",
    "Anne-Marie",
]
_LAST_EN = [
    "Smith",
    "Brown",
    "Tremblay",
    "Martin",
    "Roy",
    "Wilson",
    "MacDonald",
    "Taylor",
    "Campbell",
    "Anderson",
    "Singh",
    "Nguyen",
    "Chen",
    "Patel",
    "Thompson",
    "Clarke",
    "O'Neil",
    "Johnston",
    "Kaur",
    "Ahmed",
    "Morrison",
    "Fraser",
]
_LAST_FR = [
    "Gagnon",
    "Côté",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Gagné",
    "Ouellet",
    "Pelletier",
    "Bélanger",
    "Lévesque",
    "Bergeron",
    "Leblanc",
    "Paquette",
    "Girard",
    "Simard",
    "Boucher",
]
# (local, postal-code areas where its members live)
_LOCALS = [
    ("Local 1004", ["T2P", "T2R", "T3A", "T2E"]),  # Calgary
    ("Local 30", ["T5J", "T5K", "T6E", "T5H"]),  # Edmonton
    ("Local 2316", ["M5V", "M4C", "M6H", "M6P"]),  # Toronto
    ("Local 301", ["H2X", "H3B", "H1A", "H2J"]),  # Montréal
    ("Local 4400", ["V5K", "V6B", "V5L"]),  # Vancouver
    ("Local 500", ["R3C", "R2W"]),  # Winnipeg
]
_WORKPLACES = [
    "General Hospital",
    "City Transit Depot",
    "Public Library",
    "School Board",
    "Water Treatment Plant",
    "Hôpital Notre-Dame",
    "Long-term Care Home",
]
_LETTERS = "ABCEGHJKLMNPRSTVWXYZ"


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _postal_code(rng: random.Random, area: str) -> str:
    return f"{area} {rng.randint(0, 9)}{rng.choice(_LETTERS)}{rng.randint(0, 9)}"


def load_audience(session: DbSession, now: datetime | None = None) -> bool:
    """Create the demo lists, members and consent records if absent.

    Idempotent: the lists are found by name and the members by address; a second call creates
    nothing. Returns True when something was created. Flushes.
    """
    now = now or datetime.now(UTC)
    created = False
    everyone = lists.list_by_name(session, ALL_MEMBERS)
    if everyone is None:
        everyone = lists.create_list(
            session,
            name=ALL_MEMBERS,
            description="Every member in good standing: bargaining updates and union news.",
        )
        created = True
    action = lists.list_by_name(session, ACTION_NETWORK)
    if action is None:
        action = lists.create_list(
            session,
            name=ACTION_NETWORK,
            description="Members and allies who show up: rallies, petitions, days of action.",
            is_public=True,
            opt_in="double",
        )
        created = True
    session.flush()
    if session.scalar(
        sa.select(sa.func.count()).select_from(Member).where(Member.email.like(f"%@{DEMO_DOMAIN}"))
    ):
        return created
    _create_members(session, everyone, action, now)
    return True


def _create_members(
    session: DbSession, everyone: MailingList, action: MailingList, now: datetime
) -> None:
    rng = random.Random(_SEED)
    seen: set[str] = set()
    rows: list[Member] = []
    for n in range(MEMBER_COUNT):
        french = rng.random() < 0.3
        first = rng.choice(_FIRST_FR if french else _FIRST_EN)
        last = rng.choice(_LAST_FR if french else _LAST_EN)
        local, areas = _LOCALS[3] if french and rng.random() < 0.8 else rng.choice(_LOCALS)
        email = f"{_ascii(first)}.{_ascii(last)}@{DEMO_DOMAIN}"
        if email in seen:
            email = f"{_ascii(first)}.{_ascii(last)}{n}@{DEMO_DOMAIN}"
        seen.add(email)
        joined = now - timedelta(days=rng.randint(30, 3650))
        member = Member(
            email=email,
            first_name=first,
            last_name=last,
            language="fr" if french else "en",
            postal_code=_postal_code(rng, rng.choice(areas)),
            local=local,
            attributes={
                "Workplace": rng.choice(_WORKPLACES),
                "Member since": joined.date().isoformat(),
            },
            created_at=joined,
            updated_at=joined,
        )
        roll = rng.random()
        if roll < 0.70:  # current members: implied consent while they are members
            member.consent_basis = ConsentBasis.IMPLIED_MEMBERSHIP.value
            member.consent_source = "membership card"
            member.consent_at = joined
        elif roll < 0.85:  # signed up on a form: express consent
            member.consent_basis = ConsentBasis.EXPRESS.value
            member.consent_source = "sign-up sheet, May Day rally"
            member.consent_at = joined
        elif roll < 0.93:  # former members: two years after the membership ended
            ended = now - timedelta(days=rng.randint(200, 760))
            member.consent_basis = ConsentBasis.IMPLIED_MEMBERSHIP.value
            member.consent_source = "membership card"
            member.consent_at = joined
            member.membership_ended_at = ended
            member.consent_expires_at = ended.replace(year=ended.year + 2)
        else:  # an inquiry: six months
            asked = now - timedelta(days=rng.randint(100, 200))
            member.consent_basis = ConsentBasis.IMPLIED_INQUIRY.value
            member.consent_source = "phoned the union office"
            member.consent_at = asked
            member.consent_expires_at = asked + timedelta(days=182)
        rows.append(member)
    session.add_all(rows)
    session.flush()
    for member in rows:
        session.add(
            Subscription(
                member_id=member.id,
                list_id=everyone.id,
                status=SubscriptionStatus.SUBSCRIBED.value,
                source=SubscriptionSource.IMPORT.value,
                subscribed_at=member.created_at,
            )
        )
        roll = rng.random()
        if roll < 0.35:
            status = SubscriptionStatus.SUBSCRIBED
        elif roll < 0.40:
            status = SubscriptionStatus.PENDING
        elif roll < 0.45:
            status = SubscriptionStatus.UNSUBSCRIBED
        else:
            continue
        session.add(
            Subscription(
                member_id=member.id,
                list_id=action.id,
                status=status.value,
                source=SubscriptionSource.FORM.value,
                subscribed_at=member.created_at
                if status is SubscriptionStatus.SUBSCRIBED
                else None,
                unsubscribed_at=now - timedelta(days=10)
                if status is SubscriptionStatus.UNSUBSCRIBED
                else None,
            )
        )
    session.flush()
