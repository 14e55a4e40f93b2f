"""Plain data for one email: the organizer's content, the sender's identity, a recipient."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BodyFormat = Literal["markdown", "html"]

LANGUAGES = ("en", "fr")
BODY_FORMATS = ("markdown", "html")

MAX_SUBJECT_CHARS = 200
MAX_PREHEADER_CHARS = 250
MAX_FIELD_CHARS = 1000
# A day of action without an end time still needs a DTEND in the calendar file.
DEFAULT_EVENT_DURATION = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Problem:
    """One save-time error in a campaign's content.

    Attributes:
        field: The field at fault: "subject", "preheader", "body", "layout", "language",
            or the name of a layout field such as "headline" or "cta_url".
        line: The 1-based line in that field, when one is known.
        message: A sentence for the organizer.
    """

    field: str
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Identity:
    """The sender identification CASL asks for, shown in every footer.

    Attributes:
        organization: The name the sender operates under, e.g. "Prairie Public Workers' Union".
        mailing_address: A postal address; may span several lines.
        contact: A phone number, email address or web address that stays valid for 60 days.
    """

    organization: str
    mailing_address: str
    contact: str


@dataclass(frozen=True)
class EmailContent:
    """One language variant of a campaign, as the organizer wrote it.

    `fields` holds the layout's own fields (see `LAYOUTS`). It is copied on construction
    so a caller's later changes to its dict do not leak into a cached skeleton.
    """

    layout: str
    language: str
    subject: str
    preheader: str
    body: str
    body_format: BodyFormat
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", dict(self.fields))


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (2.9 against 1.2 µs for these eleven fields), and a send builds one per recipient.
@dataclass(slots=True)
class Recipient:
    """The per-recipient values a skeleton substitutes; plain strings only.

    `open_token` (the pixel), `click_token` (tracked links), `unsubscribe_url` and
    `preferences_url` are computed by the caller (signed tokens are not this package's
    business; each use has its own token, so one URL cannot stand for another). Missing
    values are empty strings, which
    makes merge-field defaults apply; `Recipient()` is an anonymous reader (web archive).
    """

    first_name: str = ""
    last_name: str = ""
    email: str = ""
    local: str = ""
    language: str = ""
    postal_code: str = ""
    attributes: Mapping[str, object] = field(default_factory=dict)
    open_token: str = ""
    click_token: str = ""
    unsubscribe_url: str = ""
    preferences_url: str = ""


@dataclass(frozen=True, slots=True)
class LayoutSpec:
    """The fields one layout requires and accepts."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every field name the layout knows."""
        return self.required + self.optional


# The one table of layouts and their fields; templates/emails/<name>.{html,txt} exist for each.
LAYOUTS: Mapping[str, LayoutSpec] = {
    "action_alert": LayoutSpec(required=("headline", "cta_label", "cta_url")),
    "day_of_action": LayoutSpec(
        required=("headline", "event_date", "event_time", "timezone", "place", "address"),
        optional=("event_end_time", "what_to_bring", "cta_label", "cta_url"),
    ),
    "statement": LayoutSpec(required=("headline",), optional=("byline",)),
}

# Organizer text that may print personal fields; it goes through the sandbox. Every other
# field is data (dates, URLs, a place shared by the calendar file) and is used verbatim.
TEMPLATED_FIELDS = frozenset({"headline", "cta_label", "byline"})
URL_FIELDS = frozenset({"cta_url"})
MULTILINE_FIELDS = frozenset({"address", "what_to_bring"})

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def is_http_url(url: str) -> bool:
    """Tell whether `url` is an absolute http(s) URL with a host and no whitespace."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


@dataclass(frozen=True, slots=True)
class EventTime:
    """When a day of action happens, as aware datetimes in the event's time zone."""

    start: datetime
    end: datetime | None
    zone: ZoneInfo

    @property
    def calendar_end(self) -> datetime:
        """The end for a calendar entry: the given end, or a default duration."""
        return self.end or self.start + DEFAULT_EVENT_DURATION


def parse_event_time(fields: Mapping[str, str]) -> EventTime:
    """Read event_date, event_time, event_end_time and timezone from day-of-action fields.

    Args:
        fields: The layout fields; they must have passed `check_fields`.

    Returns:
        The event's start and optional end.

    Raises:
        ValueError: When a value is malformed (`check_fields` reports these kindly).
    """
    zone = _zone(fields.get("timezone", ""))
    day = _date(fields.get("event_date", ""))
    start = datetime.combine(day, _clock(fields.get("event_time", "")), tzinfo=zone)
    end_text = fields.get("event_end_time", "").strip()
    end = datetime.combine(day, _clock(end_text), tzinfo=zone) if end_text else None
    if end is not None and end <= start:
        raise ValueError("The end time must be after the start time.")
    return EventTime(start=start, end=end, zone=zone)


def check_fields(content: EmailContent) -> list[Problem]:
    """Check the structure of a campaign variant, without rendering any template.

    Checks the layout and language, the subject and preheader lines, that the body is
    present, that the layout's required fields are there and no unknown ones, that
    links are http(s), and the day-of-action date, times and time zone.

    Args:
        content: The variant to check.

    Returns:
        The problems found, empty when the structure is sound.
    """
    problems: list[Problem] = []
    spec = LAYOUTS.get(content.layout)
    if spec is None:
        names = ", ".join(LAYOUTS)
        problems.append(Problem("layout", None, f"Unknown layout {content.layout!r}; use {names}."))
    if content.language not in LANGUAGES:
        problems.append(Problem("language", None, "The language must be en or fr."))
    if content.body_format not in BODY_FORMATS:
        problems.append(Problem("body", None, "The body must be written in Markdown or HTML."))
    problems += _check_line("subject", content.subject, MAX_SUBJECT_CHARS, required=True)
    problems += _check_line("preheader", content.preheader, MAX_PREHEADER_CHARS, required=False)
    if not content.body.strip():
        problems.append(Problem("body", None, "Write the body of the email."))
    if spec is not None:
        problems += _check_layout_fields(content.layout, spec, content.fields)
    return problems


def _check_line(name: str, value: str, limit: int, *, required: bool) -> list[Problem]:
    if required and not value.strip():
        return [Problem(name, None, "This field is required.")]
    if "\n" in value or "\r" in value:
        # Both end up in a one-line context (a mail header, the inbox preview).
        return [Problem(name, None, "This field must fit on one line.")]
    if len(value) > limit:
        return [Problem(name, None, f"Keep this under {limit} characters ({len(value)} now).")]
    return []


def _check_layout_fields(layout: str, spec: LayoutSpec, fields: Mapping[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for name in fields:
        if name not in spec.accepted:
            problems.append(Problem(name, None, f"The {layout} layout has no field {name!r}."))
    for name in spec.required:
        if not fields.get(name, "").strip():
            problems.append(Problem(name, None, "This field is required."))
    for name, value in fields.items():
        if name not in spec.accepted or not value:
            continue
        if len(value) > MAX_FIELD_CHARS:
            problems.append(Problem(name, None, f"Keep this under {MAX_FIELD_CHARS} characters."))
        elif name not in MULTILINE_FIELDS and ("\n" in value or "\r" in value):
            problems.append(Problem(name, None, "This field must fit on one line."))
        if name in URL_FIELDS and not is_http_url(value):
            problems.append(
                Problem(
                    name, None, "Links must be full addresses starting with https:// or http://."
                )
            )
        if name not in TEMPLATED_FIELDS and ("{{" in value or "{%" in value):
            problems.append(Problem(name, None, "Personal fields can't be used in this field."))
    if bool(fields.get("cta_label", "").strip()) != bool(fields.get("cta_url", "").strip()):
        missing = "cta_url" if fields.get("cta_label", "").strip() else "cta_label"
        problems.append(Problem(missing, None, "A button needs both a label and a link."))
    if layout == "day_of_action":
        problems += _check_event(fields)
    return problems


def _check_event(fields: Mapping[str, str]) -> list[Problem]:
    checks = (
        ("event_date", _date, "Write the date as YYYY-MM-DD, e.g. 2025-12-17."),
        ("event_time", _clock, "Write the time as HH:MM on a 24-hour clock, e.g. 12:00."),
        ("event_end_time", _clock, "Write the time as HH:MM on a 24-hour clock, e.g. 14:00."),
        ("timezone", _zone, "Use a time zone name such as America/Edmonton."),
    )
    problems: list[Problem] = []
    for name, parse, message in checks:
        value = fields.get(name, "").strip()
        if not value:
            continue  # a missing required field is reported once, above
        try:
            parse(value)
        except ValueError:
            problems.append(Problem(name, None, message))
    if not problems and all(fields.get(n, "").strip() for n in ("event_date", "timezone")):
        try:
            parse_event_time(fields)
        except ValueError as error:
            problems.append(Problem("event_end_time", None, str(error)))
    return problems


def _date(value: str) -> date:
    if not _ISO_DATE.fullmatch(value):
        raise ValueError(value)
    return date.fromisoformat(value)


def _clock(value: str) -> time:
    if not _CLOCK_TIME.fullmatch(value):
        raise ValueError(value)
    return time.fromisoformat(value)


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as error:
        # ZoneInfo raises ValueError on path-like keys, and OSError or TypeError on odd ones.
        raise ValueError(value) from error
