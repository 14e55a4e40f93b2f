"""The web process's tracking buffer: a request appends a hit and returns; a thread ships them.

Every TRACKING_FLUSH_MS (20 ms) a daemon thread drains the buffer into one pipelined XADD per
few hundred hits (about 0.8 of a bare route's throughput, against ~0.5 for one XADD per
request). When Redis cannot be reached the thread writes the hits straight to the database,
so a hit is never lost and a request never waits for Redis.

Loss window: the buffer lives in process memory. A graceful stop (SIGTERM to gunicorn, a worker
recycled, interpreter exit) flushes it through `atexit`; a hard kill (SIGKILL, OOM) of a web
worker loses the hits it had buffered but not yet shipped, i.e. at most one flush interval
(~20 ms) of that worker's hits.

TRACKING_FLUSH_MS=0 closes that window: each request XADDs its own hit before it answers, so
a hit that got a 2xx is in Redis (or the database) even if the host dies the next instant.

Entries already in Redis are kept here until the flusher's watermark says they are committed;
if Redis restarts and loses them (a new EPOCH_KEY), or Sentinel promotes a replica that may
lack the last ones (a new replication id), they are added again. Hit ids make every replay
harmless.

When Redis and the database are both unreachable, hits wait in memory up to SPILL_AFTER; past
that (and at a graceful stop) they are written to files in TRACKING_SPILL_DIR, so memory stays
bounded through a long outage. Once hits ship again, the web processes sharing the directory
take the files back one at a time and delete each only after its hits have shipped.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.infra import redis_client
from app.services.tracking import hit_stream
from app.services.tracking.hits import Hit, decode_hits, encode_hits

log = logging.getLogger(__name__)

RecordDirect = Callable[[Sequence[Hit]], None]


class HitBuffer:
    """Hits waiting to leave this process, and the entries Redis holds but has not committed."""

    MAX_ENTRY_HITS = 500  # hits per stream entry (~75 KB): bounded entries, few XADDs
    RETAIN_LIMIT = 200_000  # hits kept for replay; past it the oldest are trusted to Redis
    WATERMARK_POLL = 0.25  # seconds between epoch/watermark reads
    SPILL_AFTER = 50_000  # hits held in memory (~25 MB) while Redis and the database are down
    UNSPILL_EVERY = 1.0  # seconds between looks for spilled files once hits ship again
    STALE_CLAIM = 60.0  # a file claimed this long ago belongs to a process that died

    def __init__(
        self,
        redis_target: str | Mapping[str, Any],
        record_direct: RecordDirect,
        *,
        interval_ms: int = 20,
        spill_dir: str | Path | None = None,
    ) -> None:
        # A URL, or the app's config (REDIS_URL or Sentinel: app/infra/redis_client.py).
        self.redis_target: Mapping[str, Any] = (
            {"REDIS_URL": redis_target} if isinstance(redis_target, str) else redis_target
        )
        self.record_direct = record_direct
        # 0: each request ships its own hit before it answers (no loss window when a web host
        # dies, for about 15-20 % more CPU a hit: docs/capacity.md); the thread then only
        # retries and takes spilled files back.
        self.synchronous = interval_ms <= 0
        self.interval = 1.0 if self.synchronous else interval_ms / 1000
        self.spill_dir = Path(spill_dir) if spill_dir else None
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._pending: deque[tuple[Any, ...]] = deque()
        self._prefix = secrets.token_hex(5) + "."
        self._counter = itertools.count(1)
        self._started = False
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._epoch: tuple[bytes | None, str | None] | None = None
        self._retained: deque[tuple[tuple[int, int], list[tuple[Any, ...]]]] = deque()
        self._retained_hits = 0
        self._last_poll = 0.0
        self._claimed: list[Path] = []  # spilled files whose hits are back in _pending
        self._last_unspill = 0.0
        self._shipping = True  # False from a failed flush until hits ship again
        self.direct_writes = 0  # hits written to the database because Redis was unreachable
        self.spilled = 0  # hits written to spill files by this process

    # -- the request side: as little work as possible ------------------------------------

    def add(
        self,
        kind: str,
        campaign_id: int,
        delivery_id: int,
        link_id: int,
        ip: str | None,
        user_agent: str | None,
        head: bool,
    ) -> None:
        if self._pid != os.getpid():  # forked after the buffer was made: start afresh
            self._reset()
        hit_id = f"{self._prefix}{next(self._counter):x}"
        self._pending.append(
            (
                hit_id,
                kind,
                campaign_id,
                delivery_id,
                link_id,
                round(time.time(), 3),
                ip or "",
                (user_agent or "")[:300],
                head,
            )
        )
        if not self._started:
            self._start()
        if self.synchronous:
            try:
                self.flush()
            except Exception:  # queued again (or spilled): the thread retries it
                log.exception("tracking hit not shipped at once")

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._thread = threading.Thread(
                target=self._run, name="tracking-hit-buffer", daemon=True
            )
            self._thread.start()
            atexit.register(self.close)
            self._started = True

    # -- the thread ------------------------------------------------------------------------

    def _redis(self) -> redis.Redis:
        if self._client is None:
            # No retries and short timeouts: an outage must turn into the database fallback
            # within a second, while hits keep queueing in memory meanwhile.
            self._client = redis_client.make_client(
                self.redis_target,
                socket_connect_timeout=0.5,
                socket_timeout=1,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the thread must survive anything; hits stay queued
                log.exception("tracking buffer flush failed")

    def flush(self) -> int:
        """Ship what is buffered (Redis, else the database). Returns the hits shipped."""
        with self._flush_lock:
            if self._may_unspill():
                self._unspill()
            batch = self._drain()
            poll = (
                bool(self._retained) and time.monotonic() - self._last_poll >= self.WATERMARK_POLL
            )
            if not batch and not poll:
                return 0
            try:
                self._to_redis(batch)
            except redis.RedisError as exc:
                log.warning(
                    "Redis unreachable (%s): %d new and %d unconfirmed hits to the database",
                    exc,
                    len(batch),
                    self._retained_hits,
                )
                self._to_database(batch)
            # Shipped: every hit taken back from a spill file was in this batch.
            self._shipping = True
            self._release_claims()
            return len(batch)

    def _drain(self) -> list[tuple[Any, ...]]:
        batch = []
        pending = self._pending
        try:
            while True:
                batch.append(pending.popleft())
        except IndexError:
            return batch

    def _to_redis(self, batch: list[tuple[Any, ...]]) -> None:
        client = self._redis()
        chunks = [
            batch[i : i + self.MAX_ENTRY_HITS] for i in range(0, len(batch), self.MAX_ENTRY_HITS)
        ]
        checking = self._epoch is None or time.monotonic() - self._last_poll >= self.WATERMARK_POLL
        if not checking:
            # Most rounds: one XADD and nothing else (the round's fixed cost is what a busy
            # worker pays per ~10 hits). Epoch and watermark are read every WATERMARK_POLL;
            # entries added meanwhile are retained, so a restart noticed late loses none.
            for chunk in chunks:
                entry_id = client.execute_command(
                    "XADD", hit_stream.STREAM_KEY, "*", "h", encode_hits(chunk)
                )
                self._retain(entry_id, chunk)
            return
        pipe = client.pipeline(transaction=False)
        for chunk in chunks:
            pipe.xadd(hit_stream.STREAM_KEY, {"h": encode_hits(chunk)})
        # A fresh value each time: after a restart whoever sets it first names the new epoch,
        # and it can never equal the epoch we knew.
        pipe.set(hit_stream.EPOCH_KEY, secrets.token_hex(8), nx=True)
        pipe.get(hit_stream.EPOCH_KEY)
        pipe.get(hit_stream.WATERMARK_KEY)
        pipe.info("replication")
        # INFO may be refused (a managed Redis that renames it): that alone must not send
        # every hit to the database, so only the other commands' errors count.
        results = pipe.execute(raise_on_error=False)
        for result in results[:-1]:
            if isinstance(result, Exception):
                raise result
        ids, epoch, mark = results[: len(chunks)], results[-3], results[-2]
        # A replica promoted by Sentinel keeps EPOCH_KEY but may lack the last entries the
        # old master took; its replication id is new, so a change of either means replay.
        info = results[-1]
        epoch = (epoch, info.get("master_replid") if isinstance(info, dict) else None)
        self._last_poll = time.monotonic()

        if self._epoch is not None and epoch != self._epoch and self._retained:
            # Redis came back without its data: what it held for us is gone. Add it again.
            lost = [hits for _, hits in self._retained]
            self._retained.clear()
            self._retained_hits = 0
            log.warning(
                "Redis lost its data or failed over; adding %d tracking entries again", len(lost)
            )
            replay = client.pipeline(transaction=False)
            for hits in lost:
                replay.xadd(hit_stream.STREAM_KEY, {"h": encode_hits(hits)})
            for entry_id, hits in zip(replay.execute(), lost, strict=True):
                self._retain(entry_id, hits)
        self._epoch = epoch
        for entry_id, chunk in zip(ids, chunks, strict=True):
            self._retain(entry_id, chunk)
        if mark is not None:
            committed = hit_stream.parse_id(mark)
            while self._retained and self._retained[0][0] <= committed:
                self._retained_hits -= len(self._retained.popleft()[1])

    def _retain(self, entry_id: bytes | str, hits: list[tuple[Any, ...]]) -> None:
        self._retained.append((hit_stream.parse_id(entry_id), hits))
        self._retained_hits += len(hits)
        while self._retained_hits > self.RETAIN_LIMIT and len(self._retained) > 1:
            self._retained_hits -= len(self._retained.popleft()[1])

    def _to_database(self, batch: list[tuple[Any, ...]]) -> None:
        # Entries Redis held may be gone with it: write them too (hit ids dedupe).
        kept = [hits for _, hits in self._retained]
        hits = [Hit(*h) for h in [*batch, *itertools.chain.from_iterable(kept)]]
        if not hits:
            return
        try:
            self.record_direct(hits)
        except Exception:
            # Database down as well: keep the new hits queued and try again next round, on
            # disk once there are too many to hold in memory.
            log.exception("could not write %d tracking hits to the database", len(batch))
            self._shipping = False
            self._pending.extendleft(reversed(batch))
            if len(self._pending) > self.SPILL_AFTER:
                self._spill()
            raise
        self._retained.clear()
        self._retained_hits = 0
        self.direct_writes += len(batch)

    # -- spilling to disk through a double outage -----------------------------------------

    def _spill(self) -> None:
        """Write every pending hit to a new spill file (atomically), then forget them here."""
        if self.spill_dir is None:
            return
        batch = self._drain()
        if not batch:
            return
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            name = f"hits-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(3)}.json"
            temporary = self.spill_dir / f".{name}.tmp"
            temporary.write_text(encode_hits(batch))
            os.replace(temporary, self.spill_dir / name)
        except OSError:
            log.exception("could not spill %d tracking hits to %s", len(batch), self.spill_dir)
            self._pending.extendleft(reversed(batch))
            return
        # Hits taken back from older files are in the new one now.
        self._release_claims()
        self.spilled += len(batch)
        log.error(
            "Redis and the database are unreachable: %d tracking hits written to %s",
            len(batch),
            self.spill_dir,
        )

    def _release_claims(self) -> None:
        for path in self._claimed:
            path.unlink(missing_ok=True)
        self._claimed.clear()

    def _may_unspill(self) -> bool:
        """Once a second at most, while nothing taken back is in flight, and only when hits
        can ship (so a file is not read and rewritten over and over during an outage)."""
        if self.spill_dir is None or self._claimed:
            return False
        now = time.monotonic()
        if now - self._last_unspill < self.UNSPILL_EVERY:
            return False
        self._last_unspill = now
        if not self._shipping:
            try:  # an idle process notices the end of the outage by itself
                self._redis().ping()
            except redis.RedisError:
                return False
        return True

    def _unspill(self) -> None:
        """Take the oldest spilled file's hits back into the queue: this round ships them,
        and the file is deleted once they have shipped."""
        assert self.spill_dir is not None
        try:
            candidates = sorted(self.spill_dir.iterdir())
        except OSError:
            return
        for path in candidates:
            if path.name.startswith("."):
                continue
            if path.suffix == ".claimed":
                try:
                    if time.time() - path.stat().st_mtime < self.STALE_CLAIM:
                        continue  # another web process is sending these
                except OSError:
                    continue
            elif path.suffix != ".json":
                continue
            base = path.name.split(".json", 1)[0]
            claimed = path.with_name(f"{base}.json.{os.getpid()}.claimed")
            try:
                os.replace(path, claimed)  # atomic: one process wins the file
                os.utime(claimed)
                hits = decode_hits(claimed.read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                log.exception("unreadable tracking spill file %s; left for a person", path)
                continue
            self._pending.extendleft(reversed([tuple(hit) for hit in hits]))
            self._claimed.append(claimed)
            log.warning("sending %d tracking hits spilled to %s again", len(hits), claimed)
            return

    def close(self) -> None:
        """Stop the thread and ship everything still buffered (graceful stop, atexit)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._pid != os.getpid():
            return
        for _ in range(3):
            try:
                self.flush()
            except Exception:
                log.exception("tracking buffer: final flush failed")
                continue
            if not self._pending:
                break
        if self._pending:
            self._spill()  # Redis and the database are down: keep them on disk

    def forget(self) -> None:
        """Drop every buffered and retained hit and the known epoch (test isolation only)."""
        with self._flush_lock:
            self._pending.clear()
            self._retained.clear()
            self._retained_hits = 0
            self._epoch = None

    @property
    def retained(self) -> int:
        return self._retained_hits

    @property
    def buffered(self) -> int:
        return len(self._pending)
