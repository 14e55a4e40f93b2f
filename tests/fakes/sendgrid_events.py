"""The fake SendGrid's Event Webhook: signed batches of events, POSTed back like SendGrid does.

SendGrid reports on every message it accepts: a `processed` event at once, then `delivered`
(or a bounce) when the receiving server answers. Events carry the personalization's
`custom_args` as top-level keys, arrive in batches (SendGrid posts up to a few thousand
events, at least every 30 seconds) and are signed with ECDSA P-256 over timestamp + body
(`X-Twilio-Email-Event-Webhook-Signature`/`-Timestamp`; see SendGrid's "Event Webhook
Security Features" page). A failed POST is tried again, as SendGrid does for 24 hours.

Attached to a `FakeSendGrid`, an `EventWebhookSender` makes the tests exercise settlement
end to end: a batch whose request reached the fake is reported; one that never arrived is
not, and the app has to notice.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class EventWebhookSender:
    """Queue events for accepted messages and POST them, signed, in batches, from a thread.

    Args:
        url: the app's `/webhooks/sendgrid` URL.
        batch_size: events per POST at most (SendGrid: up to a few thousand).
        interval: seconds between POSTs while events wait (SendGrid: up to 30 s).
        delivered: also report `delivered` for each message, after its `processed`.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 1000,
        interval: float = 0.2,
        delivered: bool = True,
    ) -> None:
        self.url = url
        self.batch_size = batch_size
        self.interval = interval
        self.delivered = delivered
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()
        self._pending: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.posted_events = 0
        self.posts = 0
        self.failed_posts = 0
        self.held = False  # tests hold the events back, e.g. to settle later

    # -- what the fake calls

    def accepted(self, message_id: str, records: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        """Report one accepted request: (address, custom_args) for each personalization."""
        now = int(time.time())
        events: list[dict[str, Any]] = []
        for index, (email, args) in enumerate(records):
            base = {
                "email": email,
                "timestamp": now,
                "smtp-id": f"<{message_id}.{index}@ismtpd0001p1iad2.sendgrid.net>",
                "sg_message_id": f"{message_id}.filterdrecv-{index}",
                **args,
            }
            events.append({**base, "event": "processed", "sg_event_id": _event_id()})
            if self.delivered:
                delivered = {**base, "event": "delivered", "response": "250 OK"}
                events.append({**delivered, "sg_event_id": _event_id()})
        with self._lock:
            self._pending.extend(events)
        self._wake.set()

    # -- lifecycle

    def start(self) -> EventWebhookSender:
        self._thread = threading.Thread(target=self._run, name="fake-event-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until every queued event has been POSTed and acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending():
                return True
            time.sleep(0.05)
        return False

    # -- the sender thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            while not self._stop.is_set() and not self.held:
                with self._lock:
                    batch = [
                        self._pending.popleft()
                        for _ in range(min(self.batch_size, len(self._pending)))
                    ]
                if not batch:
                    break
                if not self._post(batch):
                    with self._lock:
                        self._pending.extendleft(reversed(batch))  # SendGrid retries
                    self._stop.wait(self.interval)
                    break

    def _post(self, events: list[dict[str, Any]]) -> bool:
        body = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                TIMESTAMP_HEADER: timestamp,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            ok = False
        if ok:
            self.posts += 1
            self.posted_events += len(events)
        else:
            self.failed_posts += 1
        return ok


def _event_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
