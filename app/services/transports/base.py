"""The one interface every mail transport implements: a batch in, a result or an error out.

A transport receives one `OutgoingBatch`: the skeleton of one campaign variant (rendered
once) and up to 1,000 recipients with their substitutions, headers and ids. SendGrid sends
the skeleton once with one personalization per recipient; SMTP and outbox personalize
locally and send message by message over one connection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.emails.content import Recipient
from app.emails.render import Skeleton


@dataclass(slots=True)  # not frozen: built per recipient of a send (see Recipient)
class OutgoingRecipient:
    """One recipient of a batch. `delivery_id` is None for test sends and transactional mail."""

    email: str
    recipient: Recipient
    delivery_id: int | None = None
    message_id: str = ""  # deterministic per delivery (app.emails.headers.message_id)
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    custom_args: Mapping[str, str] = field(default_factory=dict)  # string values only


@dataclass(frozen=True)
class OutgoingBatch:
    from_email: str
    from_name: str
    reply_to: str
    skeleton: Skeleton
    recipients: list[OutgoingRecipient]
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)
    subject_prefix: str = ""  # "[TEST] " for test sends


@dataclass
class BatchResult:
    """What the transport says about a batch that it accepted as a whole."""

    provider_message_id: str | None = None
    # Per-recipient refusals the transport reported without failing the batch (SMTP).
    refused: dict[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """Sending failed. `retryable` errors may pass (429, 5xx, timeouts); others will not.

    By default nothing of the batch left. Two exceptions to that, which the sender must not
    retry blindly: `accepted` names the addresses a message-by-message transport (SMTP)
    delivered before it failed, and `uncertain` those that may or may not have left (the
    message in flight when an SMTP connection dropped; the whole batch when SendGrid took
    the request but its answer never came). Retrying those could send a second copy.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        accepted: Collection[str] = (),
        uncertain: Collection[str] = (),
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.accepted = frozenset(accepted)
        self.uncertain = frozenset(uncertain)


class Transport(Protocol):
    name: str

    def send_batch(self, batch: OutgoingBatch) -> BatchResult:
        """Send every recipient of `batch`, or raise TransportError for the whole batch."""
        ...
