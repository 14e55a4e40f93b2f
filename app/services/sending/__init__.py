"""Sending: schedule, dispatch and deliver every campaign exactly once (docs/architecture.md).

The delivery ledger (`deliveries`, UNIQUE campaign x member, a status per row) is the
truth; Celery only moves it. `tick` starts due campaigns, `freeze_audience` writes the
ledger, `send_batch` claims and sends up to 1,000 rows, `sweep` recovers from crashes and
lost broker messages, and `pause`/`resume`/`cancel` steer a running campaign.
transactional.py sends one-off mail (test sends, opt-in confirmations) on its own queue.

May call: services.campaigns, services.audience and services.stats through peers.py
(transactional.py also calls the opt-in, test-send and petition-signer mail services whose
mail it carries),
services.organization (the time zone), services.transports, app.infra. Only tracking's
webhook events call back into sending (the ledger they settle).
"""

from app.services.sending.audience import (
    FreezeResult,
    audience_count,
    freeze_audience,
    freeze_in_steps,
)
from app.services.sending.batches import BatchOutcome, SendContext, send_batch
from app.services.sending.control import (
    SweepReport,
    cancel,
    pause,
    resend_unknown,
    resume,
    sweep,
)
from app.services.sending.ledger import Settlement
from app.services.sending.progress import Progress, progress, unknown_counts
from app.services.sending.scheduling import (
    check_sendable,
    schedule,
    send_now,
    tick,
    unschedule,
)
from app.services.sending.status import SendingError, TransitionError, finish_if_done

__all__ = [
    "BatchOutcome",
    "FreezeResult",
    "Progress",
    "SendContext",
    "SendingError",
    "Settlement",
    "SweepReport",
    "TransitionError",
    "audience_count",
    "cancel",
    "check_sendable",
    "finish_if_done",
    "freeze_audience",
    "freeze_in_steps",
    "pause",
    "progress",
    "resend_unknown",
    "resume",
    "schedule",
    "send_batch",
    "send_now",
    "sweep",
    "tick",
    "unknown_counts",
    "unschedule",
]
