"""Transactional mail by kind: one task (SEND_TRANSACTIONAL) on its own queue sends them all.

A kind maps to the service that sends it: campaign test sends, opt-in confirmations, and a
petition signer's confirmation request or thank-you (app.services.actions.mail). Other
one-off messages add a kind here rather than a task of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app

from app.services import DbSession
from app.services.actions import mail as action_mail
from app.services.audience import optin
from app.services.campaigns import previews
from app.services.transports import Transport

log = logging.getLogger(__name__)

Sender = Callable[[DbSession, Transport, Mapping[str, Any]], int]


class UnknownKind(ValueError):
    """A transactional job of a kind nobody sends (a stale message, or a typo)."""


def _campaign_test(session: DbSession, transport: Transport, payload: Mapping[str, Any]) -> int:
    return previews.send_test(
        session,
        transport,
        campaign_id=int(payload["campaign_id"]),
        emails=[str(e) for e in payload["emails"]],
        language=payload.get("language"),
        member_id=payload.get("member_id"),
    )


def _optin_confirmation(
    session: DbSession, transport: Transport, payload: Mapping[str, Any]
) -> int:

    try:
        return optin.send_confirmation(
            session,
            transport,
            int(payload["member_id"]),
            int(payload["list_id"]),
            secret_key=str(current_app.config["SECRET_KEY"]),
            base_url=str(current_app.config["PUBLIC_BASE_URL"]),
        )
    except optin.ConfirmationNotSent as exc:
        # A setup problem an admin must fix; retrying would not help. The subscription stays
        # pending, and the next sign-up (after optin.RESEND_AFTER) queues the email again.
        log.error("opt-in confirmation for member %s not sent: %s", payload["member_id"], exc)
        return 0


def _action_mail(kind: str) -> Sender:
    def send(session: DbSession, transport: Transport, payload: Mapping[str, Any]) -> int:
        return action_mail.send_response_mail(
            session,
            transport,
            int(payload["response_id"]),
            kind,
            secret_key=str(current_app.config["SECRET_KEY"]),
            base_url=str(current_app.config["PUBLIC_BASE_URL"]),
        )

    return send


KINDS: dict[str, Sender] = {
    previews.TEST_SEND_KIND: _campaign_test,
    "optin_confirmation": _optin_confirmation,
    action_mail.CONFIRM_KIND: _action_mail(action_mail.CONFIRM_KIND),
    action_mail.THANKS_KIND: _action_mail(action_mail.THANKS_KIND),
}


def deliver(session: DbSession, transport: Transport, kind: str, payload: Mapping[str, Any]) -> int:
    """Send one transactional job.

    Returns:
        How many messages the transport accepted.

    Raises:
        UnknownKind: No sender for `kind`.
        app.services.transports.TransportError: The transport failed (retry if retryable).
    """
    sender = KINDS.get(kind)
    if sender is None:
        raise UnknownKind(f"Unknown transactional message kind {kind!r}.")
    return sender(session, transport, payload)
