"""A small SMTP sink on loopback for the SMTP transport's tests: STARTTLS or SSL, AUTH, refusals.

It speaks enough ESMTP for smtplib (EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET,
NOOP, QUIT), records every accepted message with its connection number, refuses recipients
whose address starts with "refuse" (550) and defers those starting with "defer" (451), and can
drop the connection after accepting the n-th message's data (`drop_after`), before answering.
"""

from __future__ import annotations

import base64
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field


@dataclass
class Received:
    connection: int
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SinkState:
    username: str = "relay-user"
    password: str = "relay-pass"
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    drop_after: int | None = None  # drop the connection instead of answering this DATA
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        if self.server.mode == "ssl":
            self.request = self.server.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            # A TLS-wrapped socket replaced the one the server knows about (and will close).
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        state = self.server.state
        with state.lock:
            state.connections += 1
            number = state.connections
        tls = self.server.mode == "ssl"
        authenticated = not self.server.require_auth
        sender, recipients = "", []
        self._reply("220 sink.example ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            argument = line[len(verb) :].strip()
            if verb in ("EHLO", "HELO"):
                features = ["250-sink.example"]
                if self.server.mode == "starttls" and not tls:
                    features.append("250-STARTTLS")
                if tls or self.server.mode == "none":
                    features.append("250-AUTH PLAIN LOGIN")
                features.append("250 8BITMIME")
                for feature in features:
                    self._reply(feature)
            elif verb == "STARTTLS":
                self._reply("220 go ahead")
                self.rfile.close()
                self.wfile.close()
                self.request = self.server.context.wrap_socket(self.request, server_side=True)
                self.rfile = self.request.makefile("rb")
                self.wfile = self.request.makefile("wb")
                tls = True
            elif verb == "AUTH":
                mechanism, _, initial = argument.partition(" ")
                if mechanism.upper() == "PLAIN":
                    decoded = base64.b64decode(initial or "").split(b"\0")
                    user, password = decoded[1].decode(), decoded[2].decode()
                else:
                    self._reply("334 VXNlcm5hbWU6")
                    user = base64.b64decode(self.rfile.readline().strip()).decode()
                    self._reply("334 UGFzc3dvcmQ6")
                    password = base64.b64decode(self.rfile.readline().strip()).decode()
                if (user, password) == (state.username, state.password):
                    authenticated = True
                    self._reply("235 ok")
                else:
                    self._reply("535 5.7.8 authentication failed")
            elif verb == "MAIL":
                if not authenticated:
                    self._reply("530 5.7.0 authentication required")
                    continue
                sender, recipients = argument.split(":", 1)[1].strip("<> "), []
                self._reply("250 ok")
            elif verb == "RCPT":
                address = argument.split(":", 1)[1].strip("<> ").split()[0].strip("<>")
                if address.startswith("refuse"):
                    self._reply("550 5.1.1 no such user")
                elif address.startswith("defer"):
                    self._reply("451 4.3.0 try again later")
                else:
                    recipients.append(address)
                    self._reply("250 ok")
            elif verb == "DATA":
                self._reply("354 end with .")
                chunks = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    chunks.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                with state.lock:
                    state.messages.append(Received(number, sender, recipients, b"".join(chunks)))
                    drop = state.drop_after is not None and len(state.messages) == state.drop_after
                if drop:
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                self._reply("250 queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self._reply("250 ok")
            elif verb == "NOOP":
                self._reply("250 ok")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, mode: str, context: ssl.SSLContext, state: SinkState, require_auth: bool
    ) -> None:
        self.mode = mode
        self.context = context
        self.state = state
        self.require_auth = require_auth
        super().__init__(("127.0.0.1", 0), _Handler)


class SmtpSink:
    """Run with `with SmtpSink(mode, context) as sink:`; `sink.port`, `sink.state.messages`."""

    def __init__(
        self, mode: str, server_context: ssl.SSLContext, *, require_auth: bool = True
    ) -> None:
        self.state = SinkState()
        self.server = _Server(mode, server_context, self.state, require_auth)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def __enter__(self) -> SmtpSink:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
