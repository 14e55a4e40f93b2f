"""A fake SendGrid v3 Mail Send API: a real HTTP server on loopback for tests and benchmarks.

`FakeSendGrid` answers `POST /v3/mail/send` the way SendGrid does (202 + `X-Message-Id`,
or SendGrid's error shape), validates each request against SendGrid's own JSON Schema
(`tests/fixtures/sendgrid/mail-send.request.schema.json`) plus the documented limits that JSON
Schema cannot express, records every accepted personalization, and can be told to fail
(429, 500, 400, hang) on demand or at random. Run it in-process::

    with FakeSendGrid() as fake:
        SendGridAPIClient(api_key="SG.test", host=fake.url).send(message)
        assert fake.count_by_email()["member@example.org"] == 1

or as its own process (benchmarks), controlled over HTTP (`/__fake__/stats`,
`/__fake__/mode`, `/__fake__/reset`)::

    python -m tests.fakes.sendgrid --port 8025 --validate-sample 0.01 --no-bodies

Only the standard library and `jsonschema` are used, so it runs wherever the tests run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import random
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal, get_args

from jsonschema import Draft202012Validator

from tests.fakes.sendgrid_events import EventWebhookSender

Mode = Literal["ok", "429", "500", "400", "hang"]
MODES: Final[frozenset[str]] = frozenset(get_args(Mode))

MAIL_SEND_PATH: Final = "/v3/mail/send"
# SendGrid's published schema and example events, copied into the repository (their origin
# is in tests/fixtures/sendgrid/README.md): tests read them from here and nowhere else.
FIXTURES_DIR: Final = Path(__file__).resolve().parent.parent / "fixtures" / "sendgrid"
SCHEMA_PATH: Final = FIXTURES_DIR / "mail-send.request.schema.json"
WEBHOOK_EXAMPLES_PATH: Final = FIXTURES_DIR / "event-webhook.examples.json"

# The limits below are SendGrid's documented ones (see the `$comment`s of the schema and
# the Mail Send API's documentation, "Limitations"). Where the docs are vague,
# the stricter reading is taken: a fake laxer than SendGrid would hide bugs.
MAX_RECIPIENTS: Final = 1000
MAX_CUSTOM_ARGS_BYTES: Final = 10_000
MAX_SUBSTITUTIONS_BYTES: Final = 10_000
MAX_BODY_BYTES: Final = 30_000_000  # "< 30 MB"; decimal MB is the stricter reading
MAX_SEND_AT_AHEAD_SECONDS: Final = 72 * 3600
RESERVED_HEADERS: Final = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
MAX_SCHEMA_ERRORS: Final = 20
FAILURE_OPTIONS: Final = ("hang_seconds", "accepted", "reset_in", "retry_after")
SETTINGS: Final = frozenset({"mode", "p429", "p500", "seed", "fail_next", "fail_mode"}).union(
    FAILURE_OPTIONS
)
# An oversized body up to this size is read and thrown away so that the client gets to see
# the 413 (a client still writing into a closed socket only sees a reset); beyond it the
# connection is simply closed.
MAX_DRAINED_BYTES: Final = 4 * MAX_BODY_BYTES
RATE_LIMIT: Final = 600

_BEARER = re.compile(r"Bearer \S+")
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

ErrorItem = dict[str, Any]


def _error(message: str, field: str | None = None) -> ErrorItem:
    """One item of SendGrid's error body (`ErrorResponse` in the schema)."""
    return {"message": message, "field": field, "help": None}


def _error_body(*errors: ErrorItem) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=4)
def load_validator(path: Path) -> Draft202012Validator:
    """A validator for the schema at `path`, built once per path (building one costs ~50 ms)."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    # With the format checker, `"format": "email"` is enforced; jsonschema only asks for an
    # "@", which is cheap and never stricter than SendGrid.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(validator: Draft202012Validator, body: Any) -> list[ErrorItem]:
    """The request's schema violations as SendGrid-shaped errors (at most MAX_SCHEMA_ERRORS)."""
    errors = []
    for error in itertools.islice(validator.iter_errors(body), MAX_SCHEMA_ERRORS):
        path = [str(part) for part in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            # jsonschema reports a missing property at its parent; SendGrid names the property.
            missing = [name for name in error.validator_value if name not in error.instance]
            path += missing[:1]
        errors.append(_error(error.message, ".".join(path) or None))
    return errors


# --------------------------------------------------------------------------- limits


def _string_map_bound(mapping: Mapping[str, Any]) -> int | None:
    """An upper bound of `mapping`'s size as compact UTF-8 JSON, or None if a value is no string.

    An escaped control character takes 6 bytes and no other character more than 4, plus 6 for
    the quotes, colon and comma of an item. Exact encoding costs ~2 µs a map, 4 ms for a
    1000-personalization request, so it is only done when this bound is over a limit.
    """
    bound = 2
    for key, value in mapping.items():
        if type(value) is not str:
            return None
        bound += 6 * (len(key) + len(value) + 1)
    return bound


def _json_bytes(mapping: Mapping[str, Any]) -> int:
    return len(_COMPACT_JSON.encode(mapping).encode())


def _header_errors(headers: Any, field: str) -> list[ErrorItem]:
    errors = []
    for name, value in headers.items():
        if type(value) is not str:
            errors.append(_error("Header values must be strings.", f"{field}.{name}"))
        if name.lower() in RESERVED_HEADERS:
            errors.append(
                _error(f"The header {name!r} is reserved and cannot be overridden.", field)
            )
    return errors


def _content_errors(content: Any) -> list[ErrorItem]:
    types = [part["type"] for part in content]
    errors = []
    if types.count("text/plain") > 1 or types.count("text/html") > 1:
        errors.append(
            _error("If present, text/plain and text/html may only be provided once.", "content")
        )
    # SendGrid refuses any other order (sendgrid-python issue #451).
    expected = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected)] != expected:
        errors.append(
            _error(
                "If present, text/plain content must be first, followed by text/html, "
                "followed by any other content.",
                "content",
            )
        )
    return errors


def _send_at_error(send_at: Any, now: float, field: str) -> ErrorItem | None:
    if type(send_at) is not int:
        return _error("The send_at parameter must be a unix timestamp (an integer).", field)
    if send_at > now + MAX_SEND_AT_AHEAD_SECONDS:
        return _error("The send_at parameter cannot be more than 72 hours in the future.", field)
    return None


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One accepted personalization: what SendGrid would turn into one message.

    With `keep_bodies=False` only `email`, `custom_args` and `message_id` are filled in.
    Records share the parsed request's objects (no copies): treat them as read-only.
    """

    email: str  # first `to` address, lower-cased
    custom_args: Mapping[str, str]  # message-level merged with personalization-level
    message_id: str
    recipients: tuple[str, ...] = ()  # every to, cc and bcc address, lower-cased
    subject: str | None = None  # after substitutions
    headers: Mapping[str, str] | None = None  # message-level merged with personalization-level
    substitutions: Mapping[str, str] | None = None
    content: Sequence[Mapping[str, str]] | None = None  # the request's, before substitutions

    def render(self, mime_type: str = "text/html") -> str | None:
        """This recipient's part of `mime_type`, with its substitutions applied (None if absent)."""
        for part in self.content or ():
            if part.get("type") == mime_type:
                return apply_substitutions(part["value"], self.substitutions or {})
        return None


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    """An accepted request body, kept when the fake runs with `keep_bodies=True`."""

    message_id: str
    body: Mapping[str, Any]


@functools.lru_cache(maxsize=256)
def _substitution_pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    # Longest key first, so "-name-" does not eat the start of "-name-full-"; one pass, so a
    # substituted value is never substituted again.
    return re.compile("|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True)))


def apply_substitutions(text: str, substitutions: Mapping[str, str]) -> str:
    """`text` with each substitution key replaced by its value, as SendGrid does."""
    keys = tuple(key for key in substitutions if key)
    if not keys:
        return text
    return _substitution_pattern(keys).sub(lambda match: substitutions[match[0]], text)


def inspect_mail_send(
    body: Any, *, now: float, message_id: str, keep_bodies: bool = True
) -> tuple[list[ErrorItem], list[SentRecord], set[str]]:
    """Check the limits JSON Schema cannot express and build the records, in one pass.

    These checks are cheap and run on every request, validated by the schema or not. They
    assume the body has the schema's shape: a malformed one raises TypeError, KeyError,
    AttributeError or IndexError, and the caller then asks the schema what is wrong.

    Returns:
        The errors (empty if the request is acceptable), one record per personalization, and
        the set of every recipient address, lower-cased.
    """
    errors: list[ErrorItem] = []
    records: list[SentRecord] = []
    seen: set[str] = set()

    personalizations = body["personalizations"]
    if type(personalizations) is not list or not personalizations:
        errors.append(_error("You must include at least one personalization.", "personalizations"))
        return errors, records, seen

    message_args = body.get("custom_args") or {}
    message_args_bound = _string_map_bound(message_args)
    if message_args_bound is None:
        errors.append(_error("custom_args values must be strings.", "custom_args"))
        message_args_bound = 0
    message_headers = body.get("headers") or {}
    errors += _header_errors(message_headers, "headers")
    template_id = body.get("template_id")
    message_subject = body.get("subject")
    content = body.get("content")
    if content:
        errors += _content_errors(content)
    elif not template_id:
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content",
            )
        )
    if "send_at" in body and (error := _send_at_error(body["send_at"], now, "send_at")):
        errors.append(error)

    total = 0
    reported: set[str] = set()  # report each kind of limit once, as SendGrid does
    every_personalization_has_subject = True
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        first = personalization["to"][0]["email"].lower()
        recipients: list[str] = []
        for kind in ("to", "cc", "bcc"):
            addresses = personalization.get(kind)
            if not addresses:
                continue
            total += len(addresses)
            for address in addresses:
                email = address["email"].lower()
                if email in seen:
                    if "duplicate" not in reported:
                        reported.add("duplicate")
                        errors.append(
                            _error(
                                "Each email address in the personalization block should be "
                                "unique between to, cc, and bcc. We found the first duplicate "
                                f"instance of [{email}] in the {where}.{kind} field.",
                                f"{where}.{kind}",
                            )
                        )
                else:
                    seen.add(email)
                if keep_bodies:
                    recipients.append(email)

        args = personalization.get("custom_args")
        if args:
            bound = _string_map_bound(args)
            if bound is None:
                if "args_type" not in reported:
                    reported.add("args_type")
                    errors.append(
                        _error("custom_args values must be strings.", f"{where}.custom_args")
                    )
            elif (
                bound + message_args_bound > MAX_CUSTOM_ARGS_BYTES
                and _json_bytes(args) + _json_bytes(message_args) > MAX_CUSTOM_ARGS_BYTES
                and "args_size" not in reported
            ):
                reported.add("args_size")
                errors.append(
                    _error(
                        "The custom_args of a message (message-level and personalization-level "
                        f"combined) may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                        f"{where}.custom_args",
                    )
                )
            merged_args = {**message_args, **args} if message_args else args
        else:
            merged_args = message_args

        substitutions = personalization.get("substitutions")
        if substitutions:
            bound = _string_map_bound(substitutions)
            if (
                bound is not None  # a non-string value is the schema's to report
                and bound > MAX_SUBSTITUTIONS_BYTES
                and _json_bytes(substitutions) > MAX_SUBSTITUTIONS_BYTES
                and "subs_size" not in reported
            ):
                reported.add("subs_size")
                errors.append(
                    _error(
                        "The substitutions of a personalization may not exceed "
                        f"{MAX_SUBSTITUTIONS_BYTES} bytes.",
                        f"{where}.substitutions",
                    )
                )

        headers = personalization.get("headers")
        if headers:
            errors += _header_errors(headers, f"{where}.headers")
        if "send_at" in personalization and (
            error := _send_at_error(personalization["send_at"], now, f"{where}.send_at")
        ):
            errors.append(error)
        subject = personalization.get("subject") or message_subject
        if not subject:
            every_personalization_has_subject = False

        if errors:
            continue  # the request is refused; records would be thrown away
        if keep_bodies:
            records.append(
                SentRecord(
                    email=first,
                    custom_args=merged_args,
                    message_id=message_id,
                    recipients=tuple(recipients),
                    subject=apply_substitutions(subject, substitutions) if subject else None,
                    headers={**message_headers, **headers} if headers else message_headers,
                    substitutions=substitutions or {},
                    content=content,
                )
            )
        else:
            records.append(SentRecord(first, merged_args, message_id))

    if total > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"The total number of recipients must be no more than {MAX_RECIPIENTS}. This "
                "includes all recipients defined within the to, cc, and bcc parameters, across "
                "each object that you include in the personalizations array.",
                "personalizations",
            )
        )
    if not template_id and not every_personalization_has_subject:
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every single personalization has a "
                "subject defined.",
                "subject",
            )
        )
    return errors, records, seen


# --------------------------------------------------------------------------- failures


@dataclass(frozen=True, slots=True)
class Failure:
    """How one request is failed.

    `hang_seconds` is how long a "hang" holds the connection before closing it unanswered
    (stop() ends it sooner). With `accepted=True` a hanging request is first validated and
    recorded as accepted: SendGrid took the batch but the answer never came back, the
    ambiguous case the exactly-once invariant has to survive. `reset_in` is how far ahead a
    429's X-RateLimit-Reset lies; `retry_after` adds a Retry-After header (SendGrid does
    not document one, so it is off by default).
    """

    mode: Mode
    hang_seconds: float = 3600.0
    accepted: bool = False
    reset_in: float = 1.0
    retry_after: float | None = None

    def __post_init__(self) -> None:
        # Checked here because settings also arrive as JSON over /__fake__/mode, and a bad
        # value must be refused there, not blow up later in a request thread.
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {sorted(MODES)}")
        for name in ("hang_seconds", "reset_in", "retry_after"):
            value = getattr(self, name)
            if value is None and name == "retry_after":
                continue
            if type(value) not in (int, float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if type(self.accepted) is not bool:
            raise ValueError(f"accepted must be true or false, not {self.accepted!r}")


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    hang_seconds: float | None = None  # hold the connection, then close it without an answer


def _json_reply(status: int, payload: Any) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


def _checked_probabilities(p429: float, p500: float) -> tuple[float, float]:
    if not (p429 >= 0 and p500 >= 0 and p429 + p500 <= 1):  # "not" also refuses NaN
        raise ValueError(f"need p429, p500 >= 0 and p429 + p500 <= 1, not {p429}, {p500}")
    return p429, p500


def _failure_reply(failure: Failure) -> _Reply:
    if failure.mode == "429":
        # SendGrid's documented rate-limit answer: the exact body, and the reset as epoch seconds.
        headers = [
            ("X-RateLimit-Limit", str(RATE_LIMIT)),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(math.ceil(time.time() + failure.reset_in))),
        ]
        if failure.retry_after is not None:
            headers.append(("Retry-After", str(math.ceil(failure.retry_after))))
        body = json.dumps({"errors": [{"field": None, "message": "too many requests"}]})
        return _Reply(429, body.encode(), headers)
    if failure.mode == "500":
        return _Reply(500, _error_body(_error("internal server error")))
    if failure.mode == "400":
        return _Reply(
            400,
            _error_body(_error("The from email does not contain a valid address.", "from.email")),
        )
    return _Reply(0, hang_seconds=failure.hang_seconds)  # "hang"


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # stop() ends connections itself, with a bound; joining handler threads in server_close()
    # would wait for idle keep-alive connections and hanging requests forever.
    block_on_close = False
    # Benchmarks open a connection per request (urllib sends Connection: close) from many
    # workers at once; the default backlog of 5 would refuse some.
    request_queue_size = 128

    def __init__(self, fake: FakeSendGrid, port: int, host: str = "127.0.0.1") -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_changed = threading.Condition()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn): a DNS query that a
        # loopback server has no use for.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self.connections_changed:
            if open_:
                self.connections.add(connection)
            else:
                self.connections.discard(connection)
            self.connections_changed.notify_all()

    def close_connections(self, timeout: float) -> None:
        """Cut every open connection and wait (bounded) for their threads to let go."""
        with self.connections_changed:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)
            self.connections_changed.wait_for(lambda: not self.connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (timeout, reset) is part of the tests, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that clients which keep connections alive can; urllib (the sendgrid
    # client) sends Connection: close and gets one connection per request.
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid/1.0"
    # Headers and body are two writes; without TCP_NODELAY the second waits for a delayed ACK
    # (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def version_string(self) -> str:
        return self.server_version  # without the Python version BaseHTTPRequestHandler adds

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the test output

    def do_GET(self) -> None:
        if self.path.partition("?")[0] == "/__fake__/stats":
            self._send(_json_reply(200, self.server.fake.stats()))
        elif self.path.partition("?")[0] == "/__fake__/emails":
            # Every accepted address and how often it came (scripts/cluster_test.py counts).
            self._send(_json_reply(200, dict(self.server.fake.count_by_email())))
        else:
            self._send(_json_reply(404, {"errors": [_error("resource not found")]}))

    def do_POST(self) -> None:
        fake = self.server.fake
        path = self.path.partition("?")[0]
        raw = self._read_body(count_as_mail_send=path == MAIL_SEND_PATH)
        if raw is None:
            return
        try:
            if path == MAIL_SEND_PATH:
                reply = fake._mail_send(self.headers.get("Authorization"), raw)
            elif path == "/__fake__/mode":
                reply = fake._configure_over_http(raw)
            elif path == "/__fake__/reset":
                fake.reset()
                reply = _json_reply(200, fake.stats())
            else:
                reply = _json_reply(404, {"errors": [_error("resource not found")]})
        except Exception:
            # A bug in the fake must not look like SendGrid's 500 (the client would retry
            # and the test pass); it is kept for the tests to assert on.
            fake._record_internal_error(traceback.format_exc())
            reply = _json_reply(500, {"errors": [_error("the fake SendGrid crashed")]})
        self._send(reply)

    def _read_body(self, *, count_as_mail_send: bool) -> bytes | None:
        """The request body; None after answering an unreadable or oversized one itself."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(_json_reply(411, {"errors": [_error("Content-Length is required")]}))
            return None
        if length >= MAX_BODY_BYTES:
            if count_as_mail_send:
                self.server.fake._count_rejection()
            if length <= MAX_DRAINED_BYTES:
                remaining = length
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 20))):
                    remaining -= len(chunk)
            else:
                self.close_connection = True
            self._send(_json_reply(413, {"errors": [_error("content too large")]}))
            return None
        return self.rfile.read(length)

    def _send(self, reply: _Reply) -> None:
        if reply.hang_seconds is not None:
            fake = self.server.fake
            with fake._lock:
                fake._hanging += 1
            try:
                fake._stopping.wait(reply.hang_seconds)
            finally:
                with fake._lock:
                    fake._hanging -= 1
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.body:
            self.wfile.write(reply.body)


class FakeSendGrid:
    """SendGrid's `POST /v3/mail/send` on 127.0.0.1, recording what it accepts.

    Thread-safe: the server answers each connection in its own thread, and tests may
    switch modes or read records while requests are in flight.

    Args:
        port: 0 (the default) picks a free port.
        validate_sample: share of requests validated against the full JSON Schema, 0..1.
            Full validation costs ~100 ms for a 1000-personalization request, so a
            benchmark uses 0.01; the first request is always validated when the share is
            above 0, then one in every 1/share. The cheap limits are checked on every request.
        keep_bodies: keep request bodies and full records. False keeps only each record's
            email, custom_args and message id, so a 1M-recipient benchmark stays small.
        schema_path: defaults to the copy in tests/fixtures/sendgrid.
        api_key: when given, only `Bearer <api_key>` is let in; by default any bearer token.
        events: when given, every accepted personalization is reported through SendGrid's
            Event Webhook (`processed`, then `delivered`), signed, to the app under test.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        validate_sample: float = 1.0,
        keep_bodies: bool = True,
        schema_path: Path | None = None,
        api_key: str | None = None,
        events: EventWebhookSender | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        # host: another address to listen on (the stand-in of scripts/cluster.sh, on its own
        # network namespace); url keeps naming it.
        self.host = host
        if not 0.0 <= validate_sample <= 1.0:
            raise ValueError(f"validate_sample must be within 0..1, not {validate_sample}")
        self._validate_sample = validate_sample
        self._keep_bodies = keep_bodies
        self._validator = load_validator(schema_path or SCHEMA_PATH)
        self._port = port
        self._api_key = api_key
        self.events = events
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.internal_errors: list[str] = []
        self._clear()

    def _clear(self) -> None:
        """Forget what was received and every failure setting; caller holds the lock."""
        self._requests = 0
        self._first_request_at: float | None = None  # time.time() of the first /mail/send
        self._hanging = 0
        self._accepted_requests = 0
        self._rejected = 0
        self._validated = 0
        self._accepted_recipients = 0
        self._records: list[SentRecord] = []  # with keep_bodies
        # Without keep_bodies, records are kept as columns: strings and string-only dicts are
        # not tracked by the garbage collector, 100k record objects would be, and each
        # collection that parsing a request triggers would walk them all again.
        self._record_emails: list[str] = []
        self._record_args: list[Mapping[str, str]] = []
        self._record_ids: list[str] = []
        self._bodies: list[AcceptedRequest] = []
        self._emails: Counter[str] = Counter()
        self._mode: Failure | None = None
        self._one_shots: deque[Failure] = deque()
        self._p429 = self._p500 = 0.0
        self._rng = random.Random()
        # Sampling by credit rather than by coin: reproducible, and the first request is checked.
        self._sample_credit = 1.0 if self._validate_sample > 0 else 0.0

    @property
    def validate_sample(self) -> float:
        return self._validate_sample

    @property
    def keep_bodies(self) -> bool:
        return self._keep_bodies

    # -- lifecycle

    def start(self) -> FakeSendGrid:
        """Bind 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeSendGrid is already running")
        self._stopping.clear()
        self._server = _Server(self, self._port, self.host)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-sendgrid:{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, release hanging requests and cut open connections. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections(timeout)
        thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The `host` to give a SendGrid client; it posts to `{url}/v3/mail/send`."""
        return f"http://{self.host}:{self.port}"

    # -- failure modes

    def set_mode(
        self,
        mode: Mode,
        *,
        hang_seconds: float = 3600.0,
        accepted: bool = False,
        reset_in: float = 1.0,
        retry_after: float | None = None,
    ) -> None:
        """Answer every request with `mode` ("ok" ends it); options as in `Failure`."""
        failure = Failure(mode, hang_seconds, accepted, reset_in, retry_after)
        with self._lock:
            self._mode = None if mode == "ok" else failure

    def fail_next(
        self,
        n: int = 1,
        mode: Mode = "500",
        *,
        hang_seconds: float = 3600.0,
        accepted: bool = False,
        reset_in: float = 1.0,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next `n` requests with `mode`, ahead of any other setting."""
        failure = Failure(mode, hang_seconds, accepted, reset_in, retry_after)
        with self._lock:
            self._one_shots.extend([failure] * n)

    def set_random_failures(
        self, p429: float = 0.0, p500: float = 0.0, seed: int | None = None
    ) -> None:
        """Fail each request with 429 with probability p429, else with 500 with p500."""
        p429, p500 = _checked_probabilities(p429, p500)
        with self._lock:
            self._p429, self._p500 = p429, p500
            self._rng = random.Random(seed)

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Apply the settings of `POST /__fake__/mode`: all of them, or none.

        Keys, all optional: "mode" and the options of `Failure` (as `set_mode`; the options
        also apply to "fail_next"), "p429", "p500" and "seed" (as `set_random_failures`),
        "fail_next" and "fail_mode" (as `fail_next(n, mode)`, mode "500" by default).

        Raises:
            ValueError, TypeError: for an unknown key or a bad value; nothing changes then.
        """
        unknown = set(settings) - SETTINGS
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
        options = {key: settings[key] for key in FAILURE_OPTIONS if key in settings}
        mode = Failure(settings["mode"], **options) if "mode" in settings else None
        one_shots: list[Failure] = []
        if "fail_next" in settings:
            count = settings["fail_next"]
            if type(count) is not int or count < 0:
                raise ValueError(f"fail_next must be a count >= 0, not {count!r}")
            one_shots = [Failure(settings.get("fail_mode", "500"), **options)] * count
        random_failures = None
        if {"p429", "p500", "seed"} & set(settings):
            p429, p500 = float(settings.get("p429", 0.0)), float(settings.get("p500", 0.0))
            seed = settings.get("seed")
            if seed is not None and type(seed) is not int:
                raise ValueError(f"seed must be an integer, not {seed!r}")
            random_failures = (*_checked_probabilities(p429, p500), random.Random(seed))
        with self._lock:
            if mode is not None:
                self._mode = None if mode.mode == "ok" else mode
            self._one_shots.extend(one_shots)
            if random_failures is not None:
                self._p429, self._p500, self._rng = random_failures

    def _next_failure(self) -> Failure | None:
        """Caller holds the lock. One-shots first, then the mode, then the dice."""
        if self._one_shots:
            return self._one_shots.popleft()
        if self._mode is not None:
            return self._mode
        if self._p429 or self._p500:
            roll = self._rng.random()
            if roll < self._p429:
                return Failure("429")
            if roll < self._p429 + self._p500:
                return Failure("500")
        return None

    def _take_validation_ticket(self) -> bool:
        """Caller holds the lock."""
        validate = self._sample_credit >= 1.0
        if validate:
            self._sample_credit -= 1.0
        self._sample_credit += self._validate_sample
        return validate

    # -- queries

    @property
    def hanging(self) -> int:
        """Requests held unanswered right now ("hang" mode)."""
        with self._lock:
            return self._hanging

    @property
    def requests(self) -> int:
        """How many mail-send requests arrived, answered or not."""
        with self._lock:
            return self._requests

    @property
    def records(self) -> list[SentRecord]:
        """One record per accepted personalization, in order of acceptance."""
        with self._lock:
            if self.keep_bodies:
                return list(self._records)
            return list(map(SentRecord, self._record_emails, self._record_args, self._record_ids))

    @property
    def accepted(self) -> list[AcceptedRequest]:
        """The accepted request bodies (empty with keep_bodies=False)."""
        with self._lock:
            return list(self._bodies)

    def count_by_email(self) -> Counter[str]:
        """Accepted recipient addresses (to, cc and bcc, lower-cased) and how often each came."""
        with self._lock:
            return Counter(self._emails)

    def stats(self) -> dict[str, Any]:
        """The counters that `GET /__fake__/stats` answers."""
        with self._lock:
            return {
                "requests": self._requests,
                "accepted_requests": self._accepted_requests,
                "rejected": self._rejected,
                "validated": self._validated,
                "accepted_recipients": self._accepted_recipients,
                "distinct_emails": len(self._emails),
                "duplicates": sum(1 for count in self._emails.values() if count > 1),
                "mode": self._mode.mode if self._mode else "ok",
                "p429": self._p429,
                "p500": self._p500,
                "internal_errors": len(self.internal_errors),
                "events_posted": self.events.posted_events if self.events else 0,
                "events_pending": self.events.pending() if self.events else 0,
                "first_request_at": self._first_request_at,
            }

    def reset(self) -> None:
        """Forget everything received and go back to mode "ok" with no random failures."""
        with self._lock:
            self._clear()
            self.internal_errors.clear()

    # -- request handling (called from the server's threads)

    def _count_rejection(self) -> None:
        with self._lock:
            self._requests += 1
            self._rejected += 1

    def _record_internal_error(self, text: str) -> None:
        print(text, file=sys.stderr)
        with self._lock:
            self.internal_errors.append(text)

    def _mail_send(self, authorization: str | None, raw: bytes) -> _Reply:
        if not _BEARER.fullmatch(authorization or ""):
            self._count_rejection()
            return _json_reply(401, {"errors": [_error("authorization required")]})
        if self._api_key is not None and authorization != f"Bearer {self._api_key}":
            self._count_rejection()
            message = "The provided authorization grant is invalid, expired, or revoked"
            return _json_reply(401, {"errors": [_error(message)]})
        with self._lock:
            self._requests += 1
            if self._first_request_at is None:
                self._first_request_at = time.time()
            failure = self._next_failure()
            validate = self._take_validation_ticket()
        if failure is not None and not (failure.mode == "hang" and failure.accepted):
            with self._lock:
                self._rejected += 1
            return _failure_reply(failure)

        reply = self._accept(raw, validate=validate)
        if failure is not None and reply.status == 202:
            return _failure_reply(failure)  # accepted, then hang
        return reply

    def _accept(self, raw: bytes, *, validate: bool) -> _Reply:
        try:
            body = json.loads(raw)
        except ValueError as exc:  # also UnicodeDecodeError
            return self._refuse(_error(f"Bad Request: the body is not valid JSON ({exc})"))
        message_id = secrets.token_urlsafe(16)  # 22 characters, like SendGrid's
        errors = schema_errors(self._validator, body) if validate else []
        try:
            limit_errors, records, emails = inspect_mail_send(
                body, now=time.time(), message_id=message_id, keep_bodies=self.keep_bodies
            )
        except (TypeError, KeyError, AttributeError, IndexError) as exc:
            # The body is not shaped as the schema says, so the schema explains best what
            # is wrong, even when this request was not in the validation sample.
            if not validate:
                errors = schema_errors(self._validator, body)
            limit_errors = [] if errors else [_error(f"Bad Request: malformed body ({exc!r})")]
            records, emails = [], set()
        errors += limit_errors
        if errors:
            return self._refuse(*errors, validated=validate)
        with self._lock:
            self._accepted_requests += 1
            self._validated += validate
            self._accepted_recipients += len(emails)
            self._emails.update(emails)
            if self.keep_bodies:
                self._records += records
            else:
                self._record_emails += [record.email for record in records]
                self._record_args += [record.custom_args for record in records]
                self._record_ids += [message_id] * len(records)
            if self.keep_bodies:
                self._bodies.append(AcceptedRequest(message_id, body))
        if self.events is not None:
            self.events.accepted(message_id, [(r.email, r.custom_args) for r in records])
        return _Reply(202, headers=[("X-Message-Id", message_id)])

    def _refuse(self, *errors: ErrorItem, validated: bool = False) -> _Reply:
        with self._lock:
            self._rejected += 1
            self._validated += validated
        return _Reply(400, _error_body(*errors))

    def _configure_over_http(self, raw: bytes) -> _Reply:
        try:
            settings = json.loads(raw or b"{}")
            if not isinstance(settings, dict):
                raise TypeError("the body must be a JSON object")
            self.configure(settings)
        except (ValueError, TypeError) as exc:
            return _json_reply(400, {"errors": [_error(str(exc))]})
        return _json_reply(200, self.stats())


# --------------------------------------------------------------------------- process mode


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the first line printed is the URL."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.sendgrid", description="Fake SendGrid mail-send API."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--validate-sample", type=float, default=1.0, metavar="SHARE")
    parser.add_argument("--no-bodies", action="store_true", help="keep only email+custom_args")
    parser.add_argument("--api-key", help="the only key let in (default: any bearer token)")
    parser.add_argument(
        "--webhook-url",
        help="report accepted messages to this Event Webhook URL (the public key is printed "
        "on the second line)",
    )
    parser.add_argument("--webhook-batch", type=int, default=1000, help="events per POST")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    events = (
        EventWebhookSender(args.webhook_url, batch_size=args.webhook_batch).start()
        if args.webhook_url
        else None
    )
    fake = FakeSendGrid(
        args.port,
        validate_sample=args.validate_sample,
        keep_bodies=not args.no_bodies,
        api_key=args.api_key,
        events=events,
        host=args.host,
    )
    with fake:
        print(fake.url, flush=True)
        if events is not None:
            print(events.public_key, flush=True)
        # A timed wait, so the signal handler gets to run in this (the main) thread.
        while not stop_requested.wait(0.2):
            pass
    if events is not None:
        events.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
