"""The live signature count: a count of the responses, cached a moment in Redis.

Never a counter row that every signature updates (under a spike that row would serialise
every signing transaction on its lock). The count is `SELECT count(*) ... WHERE action_id =
:id AND counted`, an index-only scan of the partial index ix_action_responses_counted, and
its answer is kept COUNT_TTL_MS in Redis, so a page viewed 1,000 times a second costs the
database about one count a second. At rest it equals the counted responses exactly.
"""

from __future__ import annotations

import contextlib
import logging

import redis
import sqlalchemy as sa

from app.models import ActionResponse
from app.services import DbSession

log = logging.getLogger(__name__)

COUNT_TTL_MS = 1500
_KEY = "rp:actions:count:{}"


def count_responses(session: DbSession, action_id: int) -> int:
    """The exact number of counted responses (index-only on ix_action_responses_counted)."""
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ActionResponse)
            .where(ActionResponse.action_id == action_id, ActionResponse.counted.is_(True))
        )
        or 0
    )


def live_count(session: DbSession, client: redis.Redis | None, action_id: int) -> int:
    """The count for the public page: cached COUNT_TTL_MS; Redis down means a direct count."""
    key = _KEY.format(action_id)
    if client is not None:
        try:
            cached = client.get(key)
            if cached is not None:
                return int(cached)
        except redis.RedisError:
            log.warning("live count: Redis unreachable, counting in the database")
            client = None
    value = count_responses(session, action_id)
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.set(key, value, px=COUNT_TTL_MS)
    return value


def forget_count(client: redis.Redis | None, action_id: int) -> None:
    """Drop the cached count (after an organizer removes a signature: shown at once)."""
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        client.delete(_KEY.format(action_id))


# INCR only a count that is cached (INCR on a missing key would make one with no expiry).
_BUMP_IF_CACHED = (
    "if redis.call('exists', KEYS[1]) == 1 then return redis.call('incr', KEYS[1]) end return false"
)


def note_signature(client: redis.Redis | None, action_id: int) -> None:
    """After a new counted signature commits: add it to the cached count, if one is cached,
    so the signer's own thank-you page includes them; the cache still expires on time and
    the next count is exact again."""
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        client.eval(_BUMP_IF_CACHED, 1, _KEY.format(action_id))
