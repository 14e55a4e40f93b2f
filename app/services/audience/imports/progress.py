"""An import's progress: bytes read, a throttled callback, and what the progress page polls.

The import's own transaction is not visible to the progress page until it commits, so a
running import publishes where it is to Redis (`publish_progress`) and the page reads it
back (`read_progress`, `import_status`). Progress is cosmetic: a Redis error is only logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from app.infra.redis_client import get_redis
from app.models import ImportStatus, MemberImport
from app.services import DbSession

log = logging.getLogger(__name__)

ProgressCallback = Callable[["ImportProgress"], None]

_PROGRESS_KEY = "rallypoint:import-progress:{}"
_PROGRESS_TTL = 24 * 3600


@dataclass
class ImportProgress:
    """Where a running import is: ``phase`` reading (bytes of the file) or saving (steps)."""

    phase: str
    done: int
    total: int
    rows: int = 0

    @property
    def percent(self) -> int:
        if self.phase == "done":
            return 100
        if self.total <= 0:
            return 0
        fraction = self.done / self.total
        # Reading the file is most of the time; the saving steps fill the last fifth.
        return int(80 * fraction) if self.phase == "reading" else 80 + int(19 * fraction)


class CountingReader:
    """A binary stream that counts the bytes read, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.size = os.fstat(raw.fileno()).st_size

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        return data


class Throttled:
    """Calls the progress callback at most every 0.25 s (it writes to Redis)."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0

    def __call__(self, progress: ImportProgress, force: bool = False) -> None:
        if self._callback is None:
            return
        moment = time.monotonic()
        if force or moment - self._last >= 0.25:
            self._last = moment
            self._callback(progress)


def publish_progress(import_id: int, progress: ImportProgress) -> None:
    """Store an import's progress for the page that polls it; a Redis error is only logged."""
    try:
        get_redis().set(
            _PROGRESS_KEY.format(import_id),
            json.dumps({**asdict(progress), "percent": progress.percent}),
            ex=_PROGRESS_TTL,
        )
    except Exception:  # progress is cosmetic: never fail an import over it
        log.warning("import %s: could not publish progress", import_id, exc_info=True)


def read_progress(import_id: int) -> dict[str, Any] | None:
    """The last published progress of an import, or None (not started, or Redis down)."""
    try:
        raw = get_redis().get(_PROGRESS_KEY.format(import_id))
    except Exception:
        return None
    if not raw:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


def import_status(session: DbSession, job: MemberImport) -> dict[str, Any]:
    """What the progress page and the API show about an import."""
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "list_id": job.list_id,
        "filename": job.filename,
        "origin": job.origin,
        "consent": job.consent,
        "error": job.error,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "percent": 0,
        "phase": job.status,
        "rows_read": 0,
    }
    if job.status == ImportStatus.DONE:
        data["percent"] = 100
        data["rows_read"] = job.rows
        data["report"] = {
            **(job.report or {}),
            "rows": job.rows,
            "added": job.added,
            "updated": job.updated,
            "unchanged": job.unchanged,
            "skipped": job.skipped,
            "subscribed": job.subscribed,
            "not_subscribed": job.not_subscribed,
            "warnings": int((job.report or {}).get("warnings", 0)),
        }
    elif job.status == ImportStatus.RUNNING:
        progress = read_progress(job.id)
        if progress:
            data["percent"] = min(99, int(progress.get("percent", 0)))
            data["phase"] = progress.get("phase", "running")
            data["rows_read"] = int(progress.get("rows", 0))
    return data
