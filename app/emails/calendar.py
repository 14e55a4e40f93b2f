"""The .ics file (RFC 5545) behind a day of action's "Add to calendar" link."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from app.emails.content import parse_event_time

PRODID = "-//Rallypoint//Campaign email//EN"
MAX_LINE_OCTETS = 75  # RFC 5545 section 3.1, excluding the CRLF
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def build_ics(
    fields: Mapping[str, str],
    *,
    uid: str,
    summary: str,
    description: str | None = None,
    url: str | None = None,
    dtstamp: datetime | None = None,
) -> str:
    """Build a one-event calendar for a day of action.

    Times are written in UTC (`...Z`), which every client understands without the
    VTIMEZONE block a TZID would require; the client shows them in the reader's zone.
    An event without an end time lasts `DEFAULT_EVENT_DURATION`.

    Args:
        fields: The day-of-action fields (event_date, event_time, event_end_time,
            timezone, place, address, what_to_bring); they must have passed `check_fields`.
        uid: A globally unique, stable id, e.g. "campaign-45@send.example.org", so that
            adding the event twice updates it rather than duplicating it.
        summary: The event's title, usually the headline.
        description: The event's notes; by default the place, address and what to bring.
        url: An address to attach, e.g. the petition.
        dtstamp: When the file was made; now by default (tests pass a fixed one).

    Returns:
        The calendar, with CRLF line endings and lines folded at 75 octets.
    """
    event = parse_event_time(fields)
    stamp = (dtstamp or datetime.now(UTC)).astimezone(UTC)
    if description is None:
        parts = (fields.get(name, "").strip() for name in ("place", "address", "what_to_bring"))
        description = "\n".join(part for part in parts if part)
    location = ", ".join(
        line.strip()
        for line in [fields.get("place", ""), *fields.get("address", "").splitlines()]
        if line.strip()
    )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{_text(uid)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"DTSTART:{_utc(event.start)}",
        f"DTEND:{_utc(event.calendar_end)}",
        f"SUMMARY:{_text(summary)}",
        f"LOCATION:{_text(location)}",
        f"DESCRIPTION:{_text(description)}",
    ]
    if url:
        lines.append(f"URL:{_CONTROL.sub('', url)}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(folded + "\r\n" for line in lines for folded in _fold(line))


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 section 3.3.11)."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\n", "\\n")


def _fold(line: str) -> Iterator[str]:
    """Split a content line into 75-octet pieces, never inside a UTF-8 character."""
    piece: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > MAX_LINE_OCTETS:
            yield "".join(piece)
            # A continuation line starts with one space, which counts toward its 75.
            piece, size = [" "], 1
        piece.append(char)
        size += width
    yield "".join(piece)
