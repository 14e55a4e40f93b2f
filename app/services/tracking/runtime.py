"""Per-process tracking state bound to one Flask app: signer, hit buffer, link cache, Apple ranges.

Built once per app (never per request) and kept in `app.extensions`, so the hit path does no
key derivation, no connection set-up and, for clicks, no database query once a link is cached.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from app.extensions import db
from app.infra.tokens import TokenSigner, signer_from_config
from app.models import Link
from app.services.tracking import hits as tracking
from app.services.tracking import machine_hits
from app.services.tracking.hit_buffer import HitBuffer

_EXT = "rallypoint.tracking"


@dataclass(frozen=True)
class CachedLink:
    campaign_id: int
    url: str
    # The slug when the URL is a hosted action of this instance (/a/<slug>): the redirect
    # then carries a signed reference to the delivery (app.infra.tokens.ActionRefSigner).
    action_slug: str | None = None


_ACTION_PATH = re.compile(r"/a/([a-z0-9]+(?:-[a-z0-9]+)*)/?(?:[?#].*)?")


def hosted_action_slug(url: str, base_url: str) -> str | None:
    """The action slug of `url` if it is this instance's /a/<slug> page, else None."""
    base = base_url.rstrip("/")
    if not base or not url.startswith(base + "/a/"):
        return None
    match = _ACTION_PATH.fullmatch(url[len(base) :])
    return match.group(1) if match else None


class LinkCache:
    """Link id -> (campaign, URL). Links never change once a campaign is sent, so a small
    per-process cache spares the click redirect a query. Unknown ids are remembered briefly
    (a flood of made-up ids costs one query per id per NEGATIVE_TTL), and the cache is bounded.
    """

    TTL = 600.0
    NEGATIVE_TTL = 30.0
    MAX_ENTRIES = 100_000

    def __init__(self, load: Callable[[int], CachedLink | None]) -> None:
        self._load = load
        self._entries: dict[int, tuple[float, CachedLink | None]] = {}

    def get(self, link_id: int) -> CachedLink | None:
        now = time.monotonic()
        entry = self._entries.get(link_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = self._load(link_id)
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[link_id] = (now + (self.TTL if value else self.NEGATIVE_TTL), value)
        return value

    def clear(self) -> None:
        self._entries.clear()


def _load_link(link_id: int) -> CachedLink | None:
    if not 0 < link_id < 2**31:
        return None
    row = db.session.execute(
        sa.select(Link.campaign_id, Link.url).where(Link.id == link_id)
    ).first()
    if row is None:
        return None
    url = row.url.strip()
    # Only web addresses: a stored javascript: or data: URL must never become a redirect.
    if not url.lower().startswith(("http://", "https://")):
        return None
    base = str(current_app.config.get("PUBLIC_BASE_URL") or "")
    return CachedLink(row.campaign_id, url, hosted_action_slug(url, base))


class TrackingRuntime:
    def __init__(self, app: Flask) -> None:
        settings = app.config["SETTINGS"]
        self.app = app
        self.signer: TokenSigner = signer_from_config(settings)
        self.links = LinkCache(_load_link)
        self.apple = machine_hits.AppleRanges(app.config["APPLE_RANGES_FILE"])
        self.buffer = HitBuffer(
            app.config,
            self.record_direct,
            interval_ms=app.config["TRACKING_FLUSH_MS"],
            spill_dir=app.config["TRACKING_SPILL_DIR"],
        )
        self._engine_lock = threading.Lock()

    def record_direct(self, hits: Sequence[tracking.Hit]) -> None:
        """Write hits to the database from the buffer thread (Redis is unreachable)."""

        with self.app.app_context():
            engine = db.engine
        with Session(engine) as session:
            tracking.record_hits(session, hits, apple=self.apple.current())
            session.commit()


def init_app(app: Flask) -> None:
    app.extensions[_EXT] = TrackingRuntime(app)


def runtime(app: Flask | None = None) -> TrackingRuntime:
    target = app if app is not None else current_app
    state: TrackingRuntime = target.extensions[_EXT]
    return state
