"""The development transport: every message becomes a .eml file under var/outbox."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from app.services.transports.base import BatchResult, OutgoingBatch
from app.services.transports.mime import build_message

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def send_batch(self, batch: OutgoingBatch) -> BatchResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        for to in batch.recipients:
            message = build_message(batch, to)
            stem = f"{to.delivery_id or 'test'}-{_UNSAFE.sub('_', to.email)[:80]}"
            # Write then rename, so the inbox page never shows half a message.
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(bytes(message))
            os.replace(tmp, self.directory / f"{stem}-{os.urandom(4).hex()}.eml")
        return BatchResult()
