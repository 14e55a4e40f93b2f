"""Tests for the content data and its structural checks (no rendering)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.emails.content import LAYOUTS, EmailContent, check_fields, is_http_url, parse_event_time
from app.emails.samples import SAMPLES
from app.emails.strings import UI_STRINGS, format_event_date, format_event_hours


def _fields_problems(content: EmailContent) -> dict[str, str]:
    return {p.field: p.message for p in check_fields(content)}


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_samples_are_sound(key: tuple[str, str]) -> None:
    assert check_fields(SAMPLES[key]) == []


def test_every_layout_has_samples_in_both_languages() -> None:
    assert {layout for layout, _ in SAMPLES} == set(LAYOUTS)
    assert {language for _, language in SAMPLES} == {"en", "fr"}


def test_ui_strings_have_the_same_keys_in_both_languages() -> None:
    assert set(UI_STRINGS["en"]) == set(UI_STRINGS["fr"])


def test_fields_are_copied_so_the_callers_dict_cannot_change_them() -> None:
    fields = {"headline": "A"}
    content = EmailContent("statement", "en", "S", "", "B", "markdown", fields)
    fields["headline"] = "B"
    assert content.fields["headline"] == "A"


def test_unknown_layout_and_language() -> None:
    content = replace(SAMPLES["statement", "en"], layout="poster", language="de")
    problems = _fields_problems(content)
    assert "Unknown layout 'poster'" in problems["layout"]
    assert problems["language"] == "The language must be en or fr."


def test_missing_required_and_unknown_fields() -> None:
    content = replace(SAMPLES["action_alert", "en"], fields={"headline": "x", "colour": "red"})
    problems = check_fields(content)
    assert {p.field for p in problems} >= {"cta_label", "cta_url", "colour"}
    assert all(p.line is None for p in problems)


def test_subject_must_be_one_short_line() -> None:
    base = SAMPLES["statement", "en"]
    assert _fields_problems(replace(base, subject=" "))["subject"] == "This field is required."
    assert "one line" in _fields_problems(replace(base, subject="a\r\nBcc: x@y.z"))["subject"]
    assert "under 200" in _fields_problems(replace(base, subject="x" * 201))["subject"]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://example.org/x",
        "/relative/path",
        "https://",
        "https://exa mple.org",
        "https://example.org/\nx",
        "data:text/html,hi",
        "",
    ],
)
def test_cta_url_must_be_http(url: str) -> None:
    fields = {**SAMPLES["action_alert", "en"].fields, "cta_url": url}
    problems = _fields_problems(replace(SAMPLES["action_alert", "en"], fields=fields))
    assert "cta_url" in problems


def test_is_http_url_accepts_ordinary_links() -> None:
    assert is_http_url("https://example.org/petition?a=1&b=2#x")
    assert is_http_url("http://example.org")
    assert not is_http_url("https://[::1")  # urlsplit raises on this one


def test_button_needs_label_and_link() -> None:
    fields = {k: v for k, v in SAMPLES["day_of_action", "en"].fields.items() if k != "cta_label"}
    problems = _fields_problems(replace(SAMPLES["day_of_action", "en"], fields=fields))
    assert problems["cta_label"] == "A button needs both a label and a link."


def test_merge_fields_refused_in_data_fields() -> None:
    fields = {**SAMPLES["day_of_action", "en"].fields, "place": "{{ member.local }} hall"}
    problems = _fields_problems(replace(SAMPLES["day_of_action", "en"], fields=fields))
    assert problems["place"] == "Personal fields can't be used in this field."


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("event_date", "17/12/2025"),
        ("event_date", "2025-02-30"),
        ("event_time", "noon"),
        ("event_time", "24:00"),
        ("event_end_time", "9:00"),
        ("timezone", "Mountain"),
        ("timezone", "../../etc/passwd"),
        ("event_end_time", "11:00"),  # before the start
    ],
)
def test_bad_event_values(name: str, value: str) -> None:
    fields = {**SAMPLES["day_of_action", "en"].fields, name: value}
    problems = _fields_problems(replace(SAMPLES["day_of_action", "en"], fields=fields))
    assert name in problems


def test_event_time_is_in_the_events_zone() -> None:
    event = parse_event_time(SAMPLES["day_of_action", "en"].fields)
    assert event.start.isoformat() == "2025-12-17T12:00:00-07:00"
    assert event.end is not None
    assert event.end.isoformat() == "2025-12-17T13:30:00-07:00"


def test_event_dates_and_hours_read_naturally() -> None:
    event = parse_event_time(SAMPLES["day_of_action", "en"].fields)
    assert format_event_date(event.start, "en") == "Wednesday, December 17, 2025"
    assert format_event_date(event.start, "fr") == "mercredi 17 décembre 2025"
    assert format_event_hours(event, "en") == "12:00 p.m. to 1:30 p.m. (MST)"
    assert format_event_hours(event, "fr") == "de 12 h à 13 h 30 (MST)"
    first = event.start.replace(day=1, hour=9)
    assert format_event_date(first, "fr") == "lundi 1er décembre 2025"
