"""Mail transports behind one interface: SendGrid (production), SMTP (any relay), outbox (dev).

A transport receives one `OutgoingBatch`: the skeleton of one campaign variant (rendered
once) and up to 1,000 recipients with their substitutions, headers and ids. SendGrid sends
the skeleton once with one personalization per recipient; SMTP and outbox personalize
locally and send message by message over one connection.

The package is an engine the domains share (sending's batches, campaigns' test sends,
audience's opt-in confirmations), so it sits beside them rather than inside sending/. It
calls no domain package: it knows emails (app.emails), not campaigns or members. The
interface is in base.py, one implementation per module; `get_transport` picks one by
configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.services.transports.base import (
    BatchResult,
    OutgoingBatch,
    OutgoingRecipient,
    Transport,
    TransportError,
)
from app.services.transports.outbox import OutboxTransport
from app.services.transports.sendgrid import SendGridTransport
from app.services.transports.smtp import SmtpTransport

__all__ = [
    "BatchResult",
    "OutgoingBatch",
    "OutgoingRecipient",
    "Transport",
    "TransportError",
    "get_transport",
]


def get_transport(config: Mapping[str, Any]) -> Transport:
    """The transport chosen by MAIL_TRANSPORT in an app's config."""
    name = str(config.get("MAIL_TRANSPORT", "outbox"))
    if name == "outbox":
        return OutboxTransport(str(config["OUTBOX_DIR"]))
    if name == "smtp":
        return SmtpTransport.from_config(config)
    if name == "sendgrid":
        return SendGridTransport.from_config(config)
    raise ValueError(f"unknown MAIL_TRANSPORT {name!r}")
