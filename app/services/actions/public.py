"""What the public page needs of an action, read once a moment per process, not per request.

Under a spike every visitor asks for the same petition: its row, its versions, whether it has
lists, the consent sentence and its Markdown rendered to HTML are the same for all of them.
`PublicActionCache` keeps that snapshot for TTL seconds per web process, so a page view costs
no query at all (the count comes from Redis, counts.py) and a signature costs only its own
statements. An organizer's change (an edit, closing the petition) reaches every process
within TTL; a signature posted in that moment to a just-closed petition is still taken.

`PageCache` keeps the anonymous page itself (no reference, referral or source in the
address: the same bytes for every visitor in a language) for PAGE_TTL seconds, and only
while the snapshot it was rendered from is the current one: a spike of visitors costs one
rendering and one count read per language and process a second, the count shown is at most
PAGE_TTL behind the live count, and a petition closed shows closed within TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup

from app.models import Action, action_lists
from app.services import DbSession
from app.services.actions.petitions import open_action_by_slug, render_markdown, settings_of
from app.services.actions.signing import consent_wording

TTL = 2.0
PAGE_TTL = 1.0
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class PublicVersion:
    language: str
    title: str
    headline: str
    target: str
    thank_you: str
    description_html: Markup
    petition_html: Markup


@dataclass(frozen=True)
class PublicAction:
    """A plain, read-only copy of an action for its public page and for signing."""

    id: int
    slug: str
    title: str
    status: str
    default_language: str
    goal: int | None
    image_url: str
    fields: dict[str, Any]
    show_recent_signers: bool
    next_step: str
    next_step_url: str
    require_confirmation: bool
    send_thank_you: bool
    has_lists: bool
    versions: dict[str, PublicVersion] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)

    def version(self, language: str) -> PublicVersion | None:
        """The version in `language`, else the default language's, else any."""
        return (
            self.versions.get(language)
            or self.versions.get(self.default_language)
            or next(iter(self.versions.values()), None)
        )

    @property
    def languages(self) -> list[str]:
        return sorted(self.versions)


def snapshot(session: DbSession, action: Action) -> PublicAction:
    """Copy what the public page shows (Markdown rendered and sanitised once here)."""
    has_lists = (
        session.scalar(
            sa.select(action_lists.c.list_id).where(action_lists.c.action_id == action.id).limit(1)
        )
        is not None
    )
    versions = {
        v.language: PublicVersion(
            v.language,
            v.title or action.title,
            v.headline,
            v.target,
            v.thank_you,
            render_markdown(v.description),
            render_markdown(v.petition_text),
        )
        for v in action.versions
    }
    return PublicAction(
        id=action.id,
        status=action.status,
        **settings_of(action),
        has_lists=has_lists,
        versions=versions,
        consent={language: consent_wording(session, language) for language in ("en", "fr")},
    )


class PublicActionCache:
    """slug -> PublicAction (or None: no such public action), each kept TTL seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, PublicAction | None]] = {}

    def get(self, session: DbSession, slug: str) -> PublicAction | None:
        now = self._clock()
        entry = self._entries.get(slug)
        if entry is not None and entry[0] > now:
            return entry[1]
        action = open_action_by_slug(session, slug)
        value = snapshot(session, action) if action is not None else None
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[slug] = (now + TTL, value)
        return value

    def forget(self, slug: str) -> None:
        self._entries.pop(slug, None)

    def clear(self) -> None:
        self._entries.clear()


class PageCache:
    """(slug, language) -> a rendered page, kept PAGE_TTL seconds while its snapshot is current."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, PublicAction, bytes]] = {}

    def get(self, action: PublicAction, language: str, render: Callable[[], bytes]) -> bytes:
        """The page of `action` in `language`: the kept one, else `render()` kept."""
        now = self._clock()
        key = (action.slug, language)
        entry = self._entries.get(key)
        # `is`: a new snapshot (TTL passed, an edit, the petition closed) renders again.
        if entry is not None and entry[0] > now and entry[1] is action:
            return entry[2]
        body = render()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (now + PAGE_TTL, action, body)
        return body

    def clear(self) -> None:
        self._entries.clear()
