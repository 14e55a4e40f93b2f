"""The Redis stream between the web processes and the tracking flusher.

Each stream entry holds the hits one web process buffered for ~20 ms (JSON, field "h"). The
flusher reads entries through a consumer group, records them in PostgreSQL, commits, and only
then acknowledges (XACK) and deletes them: a flusher killed before XACK leaves its entries
pending, and the next run reads them again (recording is idempotent on hit ids).

After each acknowledgement the flusher publishes a watermark (WATERMARK_KEY): every entry id
at or below it is committed to PostgreSQL. Web processes keep the entries they added until the
watermark passes them, and add them again if Redis lost its data (EPOCH_KEY changed): a Redis
restart between XADD and the flush loses no hit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from app.services.tracking.hits import Hit, decode_hits, encode_hits

log = logging.getLogger(__name__)

STREAM_KEY = "rp:tracking:hits"
GROUP = "rp-flushers"
# One consumer name: runs are serialised by LOCK_KEY, so a run reads what an interrupted run
# left pending (XREADGROUP ... 0) at once instead of waiting for XAUTOCLAIM's idle time.
CONSUMER = "flusher"
LOCK_KEY = "rp:tracking:flush-lock"
WATERMARK_KEY = "rp:tracking:committed"
EPOCH_KEY = "rp:tracking:epoch"
# Entries pending this long under another consumer name belong to a dead flusher.
CLAIM_IDLE_MS = 30_000
READ_COUNT = 100  # entries per read (~10 hits each under load): few, large transactions


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


DEAD_KEY = "rp:tracking:dead"  # entries no retry can record, kept for a person to look at


@dataclass
class StreamBatch:
    entry_ids: list[str] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    entries: dict[str, list[Hit]] = field(default_factory=dict)
    # New entries (not a retry of pending or claimed ones), fewer than a full read: the run
    # has caught up with the web processes, and the next tick will find a fuller batch.
    caught_up: bool = False


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(STREAM_KEY, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _decode(entries: list[tuple[bytes, dict[bytes, bytes]]], batch: StreamBatch) -> None:
    for entry_id, fields in entries:
        ident = entry_id.decode()
        batch.entry_ids.append(ident)
        try:
            hits = decode_hits(fields[b"h"])
            batch.entries[ident] = hits
            batch.hits.extend(hits)
        except (KeyError, ValueError, TypeError):
            # A corrupt entry can never be recorded; acknowledge it so it does not block
            # the stream, and keep it in the log.
            log.error("dropping malformed tracking entry %s: %r", ident, fields)
            batch.malformed.append(ident)


def read_batch(client: redis.Redis, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> StreamBatch:
    """The next entries to record: our own unacknowledged ones, a dead consumer's, then new."""
    batch = StreamBatch()
    for attempt in range(2):
        try:
            own: Any = client.xreadgroup(GROUP, CONSUMER, {STREAM_KEY: "0"}, count=READ_COUNT)
            entries = own[0][1] if own else []
            if not entries:
                claimed: Any = client.xautoclaim(
                    STREAM_KEY, GROUP, CONSUMER, claim_idle_ms, "0-0", count=READ_COUNT
                )
                entries = claimed[1]
            if not entries:
                fresh: Any = client.xreadgroup(GROUP, CONSUMER, {STREAM_KEY: ">"}, count=READ_COUNT)
                entries = fresh[0][1] if fresh else []
                batch.caught_up = len(entries) < READ_COUNT
            _decode([e for e in entries if e[1] is not None], batch)
            return batch
        except redis.ResponseError as exc:
            # NOGROUP: the stream or group is new, or Redis restarted without its data.
            if "NOGROUP" not in str(exc) or attempt:
                raise
            ensure_group(client)
    return batch


def acknowledge(client: redis.Redis, entry_ids: list[str]) -> None:
    """XACK then XDEL the recorded entries and publish the new watermark."""
    if entry_ids:
        pipe = client.pipeline(transaction=False)
        pipe.xack(STREAM_KEY, GROUP, *entry_ids)
        pipe.xdel(STREAM_KEY, *entry_ids)
        pipe.execute()
    publish_watermark(client)


def dead_letter(client: redis.Redis, entry_id: str, hits: list[Hit], error: str) -> None:
    """Park an entry that cannot be recorded (and acknowledge it) so it blocks no other hit."""

    pipe = client.pipeline(transaction=True)
    pipe.xadd(DEAD_KEY, {"h": encode_hits(hits), "entry": entry_id, "error": error[:500]})
    pipe.xack(STREAM_KEY, GROUP, entry_id)
    pipe.xdel(STREAM_KEY, entry_id)
    pipe.execute()


def publish_watermark(client: redis.Redis) -> None:
    """Set WATERMARK_KEY to the highest id below which every entry is committed."""
    pending: Any = client.xpending(STREAM_KEY, GROUP)
    info: Any = client.xinfo_groups(STREAM_KEY)
    groups = {g["name"].decode(): g for g in info}
    group = groups.get(GROUP)
    if group is None:
        return
    if pending and pending.get("pending"):
        ms, seq = parse_id(pending["min"])
        mark = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}"
    else:
        last = group["last-delivered-id"]
        mark = last.decode() if isinstance(last, bytes) else str(last)
    client.set(WATERMARK_KEY, mark)


def batches(client: redis.Redis, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> Iterator[StreamBatch]:
    """Read batches until the stream has nothing left for us."""
    while True:
        batch = read_batch(client, claim_idle_ms=claim_idle_ms)
        if not batch.entry_ids:
            return
        yield batch


def backlog(client: redis.Redis) -> int:
    """Entries not yet recorded (pending or never read): the health check and tests read it."""
    try:
        return int(client.xlen(STREAM_KEY))
    except redis.ResponseError:
        return 0
