"""A send-rate limit shared by every worker: a token bucket in Redis, updated atomically."""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

BUCKET_KEY = "rp:sending:bucket"

# Refill by elapsed time on Redis' own clock (so workers' clocks do not matter), grant up to
# the tokens wanted, and say how long until the rest would be there. One script, so two
# workers can never both spend the same tokens.
_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
end
local granted = math.min(want, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 60000)
local missing = want - granted
local wait = 0
if missing > 0 then
  wait = (math.min(missing, capacity) - tokens) / rate
end
return {granted, tostring(wait)}
"""

_REFUND = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', key, 'tokens'))
if tokens ~= nil then
  redis.call('HSET', key, 'tokens', tostring(math.min(capacity, tokens + n)))
end
return 0
"""


@dataclass(frozen=True)
class Grant:
    """Tokens granted now, and the seconds to wait for the rest of those asked for."""

    granted: int
    wait: float


def bucket_capacity(per_minute: int) -> int:
    """Ten seconds of sending, at least one message: bursts stay small for slow rates."""
    return max(1, math.ceil(per_minute / 6))


class TokenBucket:
    """`per_minute` messages a minute across all workers (0 = no limit)."""

    def __init__(self, client: redis.Redis, per_minute: int, key: str = BUCKET_KEY) -> None:
        if per_minute < 0:
            raise ValueError("The send rate cannot be negative.")
        self.client = client
        self.per_minute = per_minute
        self.key = key

    @property
    def unlimited(self) -> bool:
        return self.per_minute == 0

    def take(self, wanted: int) -> Grant:
        """Take up to `wanted` tokens; may grant fewer (or none) and say how long to wait."""
        if self.unlimited or wanted <= 0:
            return Grant(max(wanted, 0), 0.0)
        capacity = bucket_capacity(self.per_minute)
        granted, wait = self.client.eval(
            _TAKE, 1, self.key, str(self.per_minute / 60), str(capacity), str(int(wanted))
        )
        return Grant(int(granted), max(float(wait), 0.0))

    def refund(self, count: int) -> None:
        """Give back tokens taken for messages that were not sent after all."""
        if self.unlimited or count <= 0:
            return
        capacity = bucket_capacity(self.per_minute)
        self.client.eval(_REFUND, 1, self.key, str(capacity), str(int(count)))
