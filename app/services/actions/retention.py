"""Signers' IP addresses and user agents are kept for abuse checks only as long as tracking's.

The per-address flag (abuse.py) and an organizer reviewing flagged signatures need them for
days, not years: after TRACKING_DETAIL_DAYS a response loses `ip` and `user_agent`, like an
open or click event (app/services/stats/retention.py). The consent record's IP address
(`consent_ip`) stays: CASL puts the proof of consent on the sender for as long as it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.models import ActionResponse
from app.models.base import utcnow
from app.services import DbSession

BATCH = 10_000


def forget_signer_details(
    session: DbSession,
    *,
    tracking_days: int,
    commit: Callable[[], None],
    now: datetime | None = None,
    batch: int = BATCH,
) -> int:
    """Blank `ip` and `user_agent` of responses created more than `tracking_days` ago, at
    most `batch` rows a transaction (committed through `commit`). Running it again changes
    nothing more. Returns how many responses changed."""
    before = (now or utcnow()) - timedelta(days=max(1, tracking_days))
    changed = 0
    while True:
        ids = (
            sa.select(ActionResponse.id)
            .where(
                ActionResponse.created_at < before,
                sa.or_(ActionResponse.ip != "", ActionResponse.user_agent != ""),
            )
            .limit(batch)
            .scalar_subquery()
        )
        result = session.execute(
            sa.update(ActionResponse)
            .where(ActionResponse.id.in_(ids))
            .values(ip="", user_agent="")
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        commit()
        changed += count
        if count < batch:
            return changed
