"""SendGrid v3 Mail Send: one request per batch, the skeleton once, one personalization each."""

from __future__ import annotations

import functools
import http.client
import json
import math
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import Any, cast
from urllib.error import URLError

import orjson
import python_http_client
from python_http_client.exceptions import HTTPError, handle_error
from sendgrid import SendGridAPIClient

from app.services.transports.base import BatchResult, OutgoingBatch, TransportError

MAIL_SEND_LIMIT = 1000  # recipients per request (to + cc + bcc): SendGrid's hard limit
MAX_ERROR_CHARS = 1000

# We track opens, clicks and unsubscribes ourselves: SendGrid's rewriting would replace our
# signed links and add a second unsubscribe link and header (reference §1.4).
TRACKING_OFF: Mapping[str, Any] = {
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
    "ganalytics": {"enable": False},
}

# SendGrid refuses ";" and "," in a recipient's name; quotes and control characters have
# no business there either.
_NAME_UNSAFE = re.compile(r'[;,"\x00-\x1f\x7f]+')


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A mail-send body as compact JSON in UTF-8 (not ASCII escapes: about 15% fewer bytes
    than json.dumps' defaults).

    orjson: a 1,000-recipient body takes ~1.4 ms against ~6.5 ms with the standard
    library's encoder (5 µs a recipient of the send's CPU); the output is the same JSON.
    """
    return orjson.dumps(body)


class _ConnectTimeoutMixin:
    """Connect within `connect_timeout`, then read with the (longer) request timeout.

    urllib has one timeout for both. A SendGrid that cannot be reached should fail a batch
    in seconds (it is retried), while a SendGrid that has the request deserves time to
    answer: giving up then leaves the batch's fate unknown.
    """

    connect_timeout: float
    timeout: float | None
    sock: socket.socket

    def connect(self) -> None:
        read_timeout = self.timeout
        self.timeout = self.connect_timeout
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPConnection(_ConnectTimeoutMixin, http.client.HTTPConnection):
    def __init__(self, *args: Any, connect_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout


class _HTTPSConnection(_ConnectTimeoutMixin, http.client.HTTPSConnection):
    def __init__(self, *args: Any, connect_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPConnection, connect_timeout=self.connect_timeout)
        return self.do_open(connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float, context: ssl.SSLContext | None = None) -> None:
        super().__init__(context=context)
        self.connect_timeout = connect_timeout
        self.ssl_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPSConnection, connect_timeout=self.connect_timeout)
        return self.do_open(connection, req, context=self.ssl_context)


class _TimedClient(python_http_client.Client):
    """The official client with our opener (connect timeout) kept along the URL chain."""

    opener: urllib.request.OpenerDirector

    def _build_client(self, name: str | None = None) -> _TimedClient:
        url_path = [*self._url_path, name] if name else self._url_path
        client = _TimedClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
        )
        client.opener = self.opener
        return client

    def _make_request(
        self, opener: Any, request: urllib.request.Request, timeout: float | None = None
    ) -> Any:
        try:
            return self.opener.open(request, timeout=timeout or self.timeout)
        except urllib.request.HTTPError as err:
            exc = handle_error(err)
            exc.__cause__ = None
            raise exc from None

    def post_body(self, body: bytes) -> Message:
        """POST an encoded JSON body to this client's URL; returns the answer's headers.

        python_http_client's own call (`client.mail.send.post`) formats the whole body into
        a debug message whether anything logs it or not (~3 ms of CPU for a 1,000-recipient
        body, 3 µs a recipient of the send's) and builds an opener it does not use. This is
        the same request, through our opener, without them; a refusal raises the same
        python_http_client HTTPError.
        """
        request = urllib.request.Request(  # noqa: S310 - http(s) only: SendGridTransport checks
            self._build_url(None), data=body, headers=self.request_headers, method="POST"
        )
        with self._make_request(None, request) as response:
            response.read()
            return cast(Message, response.headers)


class SendGridTransport:
    """POST /v3/mail/send with the official `sendgrid` client.

    The skeleton's subject, text and HTML go in once; each recipient is a personalization
    with its `substitutions` (the skeleton's keys and that member's values), its own
    headers (one-click unsubscribe, a Message-ID derived from the delivery) and
    `custom_args` that come back in webhook events.
    """

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("SendGrid needs an API key (SENDGRID_API_KEY).")
        if not host.startswith(("https://", "http://")):
            raise ValueError(f"SENDGRID_API_HOST must be an http(s) URL; got {host!r}.")
        api = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        headers = dict(api._default_headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        client = _TimedClient(host=api.host, request_headers=headers, version=3)
        client.timeout = read_timeout
        client.opener = urllib.request.build_opener(
            _HTTPHandler(connect_timeout), _HTTPSHandler(connect_timeout, ssl_context)
        )
        api.client = client
        self.api = api
        self._mail_send = client.mail.send
        self.host = api.host
        self.read_timeout = read_timeout

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SendGridTransport:
        """The transport for an app's settings (SENDGRID_API_KEY, SENDGRID_API_HOST, timeouts)."""
        return cls(
            str(config.get("SENDGRID_API_KEY") or ""),
            str(config.get("SENDGRID_API_HOST") or "https://api.sendgrid.com"),
            connect_timeout=float(config.get("SENDGRID_CONNECT_TIMEOUT", 3.0)),
            read_timeout=float(config.get("SENDGRID_READ_TIMEOUT", 30.0)),
        )

    def build_body(self, batch: OutgoingBatch) -> dict[str, Any]:
        """The request body for one batch, as a plain dict (tests and benchmarks read it)."""
        if not batch.recipients:
            raise ValueError("A batch needs at least one recipient.")
        if len(batch.recipients) > MAIL_SEND_LIMIT:
            raise ValueError(f"SendGrid takes at most {MAIL_SEND_LIMIT} recipients a request.")
        skeleton = batch.skeleton
        substitutions = skeleton.substitutions
        personalizations: list[dict[str, Any]] = []
        append = personalizations.append
        for to in batch.recipients:
            address: dict[str, str] = {"email": to.email}
            recipient = to.recipient
            name = f"{recipient.first_name} {recipient.last_name}".strip()
            if name:
                name = _NAME_UNSAFE.sub(" ", name).strip()[:100]
                if name:
                    address["name"] = name
            personalization: dict[str, Any] = {"to": [address]}
            subs = substitutions(recipient)
            if subs:
                personalization["substitutions"] = subs
            if to.headers or to.message_id:
                headers = dict(to.headers)
                if to.message_id:
                    headers["Message-ID"] = to.message_id
                personalization["headers"] = headers
            if to.custom_args:
                personalization["custom_args"] = dict(to.custom_args)
            append(personalization)

        sender: dict[str, str] = {"email": batch.from_email}
        if batch.from_name:
            sender["name"] = batch.from_name
        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": sender,
            "subject": batch.subject_prefix + skeleton.subject,
            # SendGrid wants text/plain first, then text/html.
            "content": [
                {"type": "text/plain", "value": skeleton.text},
                {"type": "text/html", "value": skeleton.html},
            ],
            "tracking_settings": TRACKING_OFF,
        }
        if batch.reply_to:
            body["reply_to"] = {"email": batch.reply_to}
        if batch.categories:
            body["categories"] = list(batch.categories)[:10]
        if batch.custom_args:
            body["custom_args"] = dict(batch.custom_args)
        return body

    def send_batch(self, batch: OutgoingBatch) -> BatchResult:
        """Send a batch in one request.

        Raises:
            TransportError: 429 (retryable, `retry_after` from X-RateLimit-Reset or
                Retry-After), 5xx and connection failures (retryable, nothing sent), a
                timeout or a dropped connection after the request went out (retryable but
                every recipient `uncertain`), other 4xx (not retryable, with SendGrid's
                messages).
        """
        payload = encode_body(self.build_body(batch))
        emails = [to.email for to in batch.recipients]
        try:
            headers = self.post(payload)
        except HTTPError as exc:
            raise _http_error(exc) from None
        except URLError as exc:
            # urllib wraps what fails while connecting and writing the request: SendGrid has
            # not got a whole request, so nothing can have been sent.
            raise TransportError(
                f"Could not reach SendGrid at {self.host}: {exc.reason}", retryable=True
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            # The request went out; the answer did not come back (read timeout, reset). It
            # may have been accepted: the caller must not send these recipients again.
            raise TransportError(
                f"SendGrid did not answer in time ({type(exc).__name__}: {exc}); "
                "the batch may have been accepted",
                retryable=True,
                uncertain=emails,
            ) from exc
        return BatchResult(provider_message_id=headers.get("X-Message-Id") or None)

    def post(self, payload: bytes) -> Message:
        """POST an encoded body (`encode_body`) to /v3/mail/send; the answer's headers.

        Raises:
            python_http_client's HTTPError for a refusal, urllib's URLError when SendGrid
            cannot be reached, OSError or http.client's errors when the answer is lost.
        """
        return self._mail_send.post_body(payload)


def _http_error(exc: HTTPError) -> TransportError:
    status = int(exc.status_code)
    message = _error_messages(exc.body) or f"HTTP {status} {exc.reason}"
    text = f"SendGrid answered {status}: {message}"[:MAX_ERROR_CHARS]
    if status == 429:
        return TransportError(
            text, retryable=True, status=status, retry_after=_retry_after(exc.headers)
        )
    return TransportError(text, retryable=status >= 500, status=status)


def _error_messages(body: Any) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one line."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, TypeError):
        return body.decode(errors="replace")[:300] if isinstance(body, bytes) else ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors[:10]:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message") or "").strip()
        field = item.get("field")
        parts.append(f"{message} ({field})" if field else message)
    return "; ".join(part for part in parts if part)


def _retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait: Retry-After if given, else until X-RateLimit-Reset (epoch seconds)."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    for name, relative in (("Retry-After", True), ("X-RateLimit-Reset", False)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        return max(0.0, value if relative else value - now)
    return None
