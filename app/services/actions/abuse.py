"""Per-address limits that flag rather than refuse: a union hall signs from one address.

A meeting of 300 members on the hall's Wi-Fi is one IP address, and every one of them must be
able to sign, so an address above the threshold is never refused: its signatures are
flagged for an organizer to review (keep or remove) in the petition's report. The counter is
one Redis INCR per signature in a fixed window; Redis being down flags nothing.
"""

from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger(__name__)

_KEY = "rp:actions:ip:{}:{}:{}"


def ip_flag_reason(
    client: redis.Redis | None,
    action_id: int,
    ip: str,
    *,
    threshold: int,
    window_seconds: int = 3600,
    now: float | None = None,
) -> str:
    """Count one signature from `ip`; the reason to flag it once the address passed
    `threshold` signatures of this action in the current window, else ""."""
    if client is None or not ip or threshold <= 0:
        return ""
    window = int((now or time.time()) // window_seconds)
    key = _KEY.format(action_id, window, ip)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window_seconds + 60)
        seen = int(pipe.execute()[0])
    except redis.RedisError:
        log.warning("signature limit: Redis unreachable, not counting %s", ip)
        return ""
    if seen > threshold:
        return f"More than {threshold} signatures from one address within an hour"
    return ""
