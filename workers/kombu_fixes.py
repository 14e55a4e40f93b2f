"""One fix to kombu 5.7's Redis transport: a lost broker connection must not kill the worker.

When the connection to Redis drops while a task is unacknowledged (acks_late: every batch
being sent), Celery's consumer calls `Connection.collect()`, which tries to give the
unacked message back to the queue — and fails, Redis being down — then releases the
transport, but keeps the channel. The consumer then calls `Connection.close()`, which
closes that channel again; the channel tries the restore once more, now through a
transport whose client is gone, and raises AttributeError ("'NoneType' object has no
attribute 'hostname'"), which Celery treats as unrecoverable: the worker process exits.
Seen in tests/workers/test_sending_chaos.py (a Redis restart mid-campaign), about one run
in ten; the reports upstream (celery #8082, #8091, #10205, #10302) describe workers that
stop consuming after a Redis reconnect.

`collect()` has closed what it could: afterwards the connection holds no channel to close
again. The unacked message stays in kombu's `unacked` hash and comes back after the
visibility timeout; the ledger makes it a no-op, and the sweep re-queues the campaign's
batches long before (docs/architecture.md, "How exactly-once is kept").
"""

from __future__ import annotations

from typing import Any

from kombu import Connection

_collect = Connection.collect


def _collect_and_forget_the_channel(self: Connection, socket_timeout: Any = None) -> None:
    try:
        _collect(self, socket_timeout)
    finally:
        self._default_channel = None


def install() -> None:
    """Patch kombu's Connection.collect (idempotent)."""
    if Connection.collect is not _collect_and_forget_the_channel:
        Connection.collect = _collect_and_forget_the_channel  # type: ignore[method-assign]
