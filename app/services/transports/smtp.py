"""SMTP through any relay: one connection per batch, STARTTLS or SSL, optional login."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from app.services.transports.base import BatchResult, OutgoingBatch, TransportError
from app.services.transports.mime import build_message

SECURITY_MODES = ("starttls", "ssl", "none")


def _reply(code: int | None, message: bytes | str | None) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message or "")
    return f"{code} {text}".strip()[:500]


class SmtpTransport:
    """Deliver a batch message by message over one SMTP connection.

    A recipient the server refuses for good (5xx to RCPT or DATA) is reported in
    `BatchResult.refused` and the batch goes on. A temporary refusal (4xx) or a dropped
    connection ends the batch with a retryable TransportError that says which messages
    were already accepted and which one was in flight (its fate is unknown).
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        security: str = "starttls",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.security = security
        self.timeout = timeout
        self.ssl_context = ssl_context

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpTransport:
        """The transport for an app's SMTP_* settings."""
        return cls(
            str(config.get("SMTP_HOST") or "localhost"),
            int(config.get("SMTP_PORT") or 587),
            username=str(config.get("SMTP_USERNAME") or ""),
            password=str(config.get("SMTP_PASSWORD") or ""),
            security=str(config.get("SMTP_SECURITY") or "starttls").lower(),
            timeout=float(config.get("SMTP_TIMEOUT") or 30.0),
        )

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
        except smtplib.SMTPNotSupportedError as exc:
            if smtp is not None:
                smtp.close()
            raise TransportError(
                f"The SMTP server {where} does not offer STARTTLS; set SMTP_SECURITY=ssl or none",
                retryable=False,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            if smtp is not None:
                smtp.close()
            raise TransportError(
                f"Could not connect to SMTP {where}: {exc}", retryable=True
            ) from exc
        if self.username:
            try:
                smtp.login(self.username, self.password)
            except smtplib.SMTPAuthenticationError as exc:
                smtp.close()
                raise TransportError(
                    f"The SMTP server {where} refused the login: "
                    f"{_reply(exc.smtp_code, exc.smtp_error)}",
                    retryable=False,
                    status=exc.smtp_code,
                ) from exc
            except (OSError, smtplib.SMTPException) as exc:
                smtp.close()
                raise TransportError(
                    f"SMTP login at {where} failed: {exc}", retryable=True
                ) from exc
        return smtp

    def send_batch(self, batch: OutgoingBatch) -> BatchResult:
        """Send each recipient its own message over one connection.

        Raises:
            TransportError: when the connection cannot be opened, the login is refused, the
                server defers (4xx) or the connection drops; `accepted` and `uncertain` say
                what had left by then.
        """
        smtp = self._connect()
        accepted: list[str] = []
        refused: dict[str, str] = {}
        try:
            for to in batch.recipients:
                message = build_message(batch, to)
                try:
                    smtp.send_message(message, from_addr=batch.from_email, to_addrs=[to.email])
                except smtplib.SMTPRecipientsRefused as exc:
                    code, reply = exc.recipients.get(to.email, (None, b""))
                    if code is not None and 400 <= code < 500:
                        raise TransportError(
                            f"The SMTP server deferred {to.email}: {_reply(code, reply)}",
                            retryable=True,
                            status=code,
                            accepted=accepted,
                        ) from exc
                    refused[to.email] = _reply(code, reply)
                except smtplib.SMTPSenderRefused as exc:
                    # The sender is the same for every message: the whole batch fails.
                    raise TransportError(
                        f"The SMTP server refused the sender {batch.from_email}: "
                        f"{_reply(exc.smtp_code, exc.smtp_error)}",
                        retryable=400 <= exc.smtp_code < 500,
                        status=exc.smtp_code,
                        accepted=accepted,
                    ) from exc
                except smtplib.SMTPResponseException as exc:
                    if 400 <= exc.smtp_code < 500:
                        raise TransportError(
                            f"The SMTP server deferred a message: "
                            f"{_reply(exc.smtp_code, exc.smtp_error)}",
                            retryable=True,
                            status=exc.smtp_code,
                            accepted=accepted,
                        ) from exc
                    # smtplib has already reset the transaction; the connection goes on.
                    refused[to.email] = _reply(exc.smtp_code, exc.smtp_error)
                except (OSError, smtplib.SMTPException) as exc:
                    # Dropped mid-message: the server may have queued it before the answer
                    # was lost, so this one is uncertain and must not be sent again blindly.
                    raise TransportError(
                        f"The SMTP connection dropped: {exc}",
                        retryable=True,
                        accepted=accepted,
                        uncertain=[to.email],
                    ) from exc
                else:
                    accepted.append(to.email)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return BatchResult(refused=refused)
