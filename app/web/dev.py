"""The development inbox: the outbox transport's .eml files, readable in the browser.

Only when DEV_TOOLS is on (development and tests); every /dev/ URL is a 404 otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template
from flask.typing import ResponseReturnValue

from app.models import Role
from app.web.roles import role_required

bp = Blueprint("dev", __name__, url_prefix="/dev")

MAX_LISTED = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,200}\.eml")
# The message's HTML runs in a sandbox without scripts, forms or same-origin access; links
# may open (in a new tab, thanks to <base target="_blank">), images may load.
_HTML_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "img-src * data:; style-src 'unsafe-inline'; font-src * data:"
)


@bp.before_request
def _only_in_development() -> None:
    if not current_app.config.get("DEV_TOOLS"):
        abort(404)


def _directory() -> Path:
    return Path(current_app.config["OUTBOX_DIR"]).resolve()


def _path(name: str) -> Path:
    """The file `name` inside the outbox, or 404 (no other path is ever read)."""
    if not _NAME.fullmatch(name):
        abort(404)
    directory = _directory()
    path = (directory / name).resolve()
    if path.parent != directory or not path.is_file():
        abort(404)
    return path


def _read(name: str) -> EmailMessage:
    message = message_from_bytes(_path(name).read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@dataclass(frozen=True)
class Listed:
    name: str
    subject: str
    to: str
    sender: str
    written: datetime


@bp.route("/outbox")
@role_required(Role.ORGANIZER)
def outbox() -> ResponseReturnValue:
    directory = _directory()
    entries: list[os.DirEntry[str]] = []
    if directory.is_dir():
        with os.scandir(directory) as scan:
            entries = [e for e in scan if e.is_file() and _NAME.fullmatch(e.name)]
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    listed = []
    for entry in entries[:MAX_LISTED]:
        with open(entry.path, "rb") as handle:
            # The headers are all the list needs; a message body can be large.
            head = handle.read(16384).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        headers = message_from_bytes(head, policy=policy.default)
        listed.append(
            Listed(
                name=entry.name,
                subject=str(headers.get("Subject", "")),
                to=str(headers.get("To", "")),
                sender=str(headers.get("From", "")),
                written=datetime.fromtimestamp(entry.stat().st_mtime, UTC),
            )
        )
    return render_template(
        "dev/outbox.html",
        messages=listed,
        total=len(entries),
        more=len(entries) > MAX_LISTED,
        directory=str(directory),
    )


def one_click_url(mail: EmailMessage) -> str | None:
    """The message's RFC 8058 one-click unsubscribe address, when it is one of ours."""
    if str(mail.get("List-Unsubscribe-Post", "")) != "List-Unsubscribe=One-Click":
        return None
    ours = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/u/"
    for part in str(mail.get("List-Unsubscribe", "")).split(","):
        url = part.strip().removeprefix("<").removesuffix(">")
        if url.startswith(ours):
            return url
    return None


@bp.route("/outbox/<name>")
@role_required(Role.ORGANIZER)
def message(name: str) -> ResponseReturnValue:
    mail = _read(name)
    html_part = mail.get_body(("html",))
    text_part = mail.get_body(("plain",))
    return render_template(
        "dev/message.html",
        name=name,
        subject=str(mail.get("Subject", "")),
        headers=[(key, str(value)) for key, value in mail.items()],
        text=text_part.get_content() if text_part is not None else "",
        has_html=html_part is not None,
        one_click_url=one_click_url(mail),
    )


@bp.route("/outbox/<name>/html")
@role_required(Role.ORGANIZER)
def message_html(name: str) -> ResponseReturnValue:
    part = _read(name).get_body(("html",))
    if part is None:
        abort(404)
    html = str(part.get_content())
    base = '<base target="_blank">'
    html = html.replace("<head>", "<head>" + base, 1) if "<head>" in html else base + html
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _HTML_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response
