"""Small shared state in Redis that steers sending; PostgreSQL stays the truth.

Everything here may vanish (a Redis restart) without harm: a missing heartbeat only makes
the sweep queue a campaign's batches again (duplicates claim nothing), a lost failure
streak starts counting again, a lost provider block lets one batch ask SendGrid again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType

import redis

log = logging.getLogger(__name__)

_PREFIX = "rp:sending"

# Release a lock only if it is still ours: a run that outlived its lock must not free the
# lock a later run now holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _heartbeat_key(campaign_id: int) -> str:
    return f"{_PREFIX}:alive:{campaign_id}"


def touch(client: redis.Redis, campaign_id: int, ttl: float) -> None:
    """Record that a campaign made progress (or was just queued); it lives `ttl` seconds."""
    try:
        client.set(_heartbeat_key(campaign_id), b"1", px=max(int(ttl * 1000), 1))
    except redis.RedisError:
        log.warning("could not record progress of campaign %s in Redis", campaign_id)


def is_alive(client: redis.Redis, campaign_id: int) -> bool:
    """Whether the campaign made progress within its heartbeat's lifetime."""
    return bool(client.exists(_heartbeat_key(campaign_id)))


def _streak_key(campaign_id: int) -> str:
    return f"{_PREFIX}:failed-streak:{campaign_id}"


def count_failed_batch(client: redis.Redis, campaign_id: int) -> int:
    """One more failed batch in a row for this campaign; returns the streak's length."""
    key = _streak_key(campaign_id)
    try:
        with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, 24 * 3600)
            count, _ = pipe.execute()
        return int(count)
    except redis.RedisError:
        log.warning("could not count a failed batch of campaign %s", campaign_id)
        return 1


def reset_failures(client: redis.Redis, campaign_id: int) -> None:
    """A batch went through (or an organizer resumed): the streak starts again."""
    try:
        client.delete(_streak_key(campaign_id))
    except redis.RedisError:
        log.warning("could not reset the failure streak of campaign %s", campaign_id)


_BLOCK_KEY = f"{_PREFIX}:provider-blocked"


def block_provider(client: redis.Redis, seconds: float) -> None:
    """Every worker holds its next SendGrid request for `seconds` (after a 429)."""
    try:
        client.set(_BLOCK_KEY, b"1", px=max(int(seconds * 1000), 1))
    except redis.RedisError:
        log.warning("could not record SendGrid's rate limit in Redis")


def provider_blocked_for(client: redis.Redis) -> float:
    """Seconds until SendGrid may be asked again (0 when it may be asked now)."""
    try:
        remaining = client.pttl(_BLOCK_KEY)
    except redis.RedisError:
        return 0.0  # without Redis, asking SendGrid once is the way to find out
    return max(int(remaining), 0) / 1000


@contextmanager
def exclusive(client: redis.Redis, name: str, ttl: float) -> Iterator[bool]:
    """Hold a lock named `name` for at most `ttl` seconds; yields whether we got it.

    Beat's periodic runs use it, so a second beat, or a run overlapping a slow previous
    one, does nothing instead of the same work twice.
    """
    key = f"{_PREFIX}:lock:{name}"
    token = secrets.token_hex(8)
    acquired = bool(client.set(key, token, nx=True, px=max(int(ttl * 1000), 1)))
    try:
        yield acquired
    finally:
        if acquired:
            try:
                client.eval(_RELEASE, 1, key, token)
            except redis.RedisError:
                log.warning("could not release lock %s; it expires by itself", name)


def _lease_key(campaign_id: int, batch_no: int) -> str:
    return f"{_PREFIX}:lease:{campaign_id}:{batch_no}"


class Lease:
    """A claimed batch's sign of life: a key that lives `ttl` seconds, refreshed while held.

    The run that claimed a batch holds it from just after the claim's commit until the
    outcome is recorded; a thread sets it again every third of `ttl`, so a slow SendGrid
    request keeps it alive while a SIGKILLed worker's lapses within `ttl`. The sweep reads
    a claimed batch with no lease (and a claim older than `ttl`) as abandoned. After a
    Redis restart the next refresh writes the key again, which is why the sweep waits
    `ttl` past the claim. Redis being unreachable costs only this sign of life: the sweep
    may then mark a live batch unknown, which its own outcome later settles.
    """

    def __init__(
        self, client: redis.Redis, campaign_id: int, batch_no: int, token: str, ttl: float
    ) -> None:
        self.client = client
        self.key = _lease_key(campaign_id, batch_no)
        self.token = token
        self.ttl_ms = max(int(ttl * 1000), 100)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set(self) -> None:
        try:
            self.client.set(self.key, self.token, px=self.ttl_ms)
        except redis.RedisError:
            log.warning("could not renew the lease %s", self.key)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            self._set()

    def __enter__(self) -> Lease:
        self._set()
        self._thread = threading.Thread(target=self._renew, name="batch-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            log.warning("could not release the lease %s; it lapses by itself", self.key)


def leased(client: redis.Redis, batches: Iterable[tuple[int, int]]) -> set[tuple[int, int]] | None:
    """Which of these (campaign, batch) pairs hold a live lease; None when Redis is down."""
    pairs = list(batches)
    if not pairs:
        return set()
    try:
        with client.pipeline(transaction=False) as pipe:
            for campaign_id, batch_no in pairs:
                pipe.exists(_lease_key(campaign_id, batch_no))
            found = pipe.execute()
    except redis.RedisError:
        return None
    return {pair for pair, alive in zip(pairs, found, strict=True) if alive}


_EPOCH_KEY = f"{_PREFIX}:epoch"


def broker_lost_messages(client: redis.Redis) -> bool:
    """True once after Redis lost its data (a restart without persistence, a flush).

    The broker's queues live in the same Redis: if this key (set on the first call, never
    expiring) is gone, every message queued before is gone with it, and the sweep queues
    the batches of every sending campaign again at once instead of waiting for their
    heartbeats to lapse. A first start also answers True; queuing again is harmless.
    """
    try:
        return bool(client.set(_EPOCH_KEY, secrets.token_hex(8), nx=True))
    except redis.RedisError:
        return False


TICK_KEY = f"{_PREFIX}:last-tick"


def mark_tick(client: redis.Redis) -> None:
    """Record when the scheduling tick last ran (seconds since the epoch): how late beat's
    ticks run is how late a scheduled campaign can start (benchmarks/webhooks.py reads it)."""
    try:
        client.set(TICK_KEY, repr(time.time()))
    except redis.RedisError:
        log.warning("could not record the scheduling tick")
