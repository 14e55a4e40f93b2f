"""Tests for the day-of-action calendar file (RFC 5545)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.emails.calendar import build_ics
from app.emails.samples import PETITION_URL, SAMPLES

STAMP = datetime(2025, 12, 1, 15, 30, tzinfo=UTC)


def _parse(ics: str) -> list[tuple[str, str]]:
    """Unfold and split content lines into (name with parameters, value)."""
    unfolded = ics.replace("\r\n ", "")
    lines = unfolded.split("\r\n")
    assert lines[-1] == ""  # the file ends with CRLF
    return [tuple(line.split(":", 1)) for line in lines[:-1]]  # type: ignore[misc]


def _unescape(value: str) -> str:
    out, chars = [], iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars)
            out.append("\n" if following in "nN" else following)
        else:
            out.append(char)
    return "".join(out)


def test_event_parses_back() -> None:
    fields = SAMPLES["day_of_action", "fr"].fields
    ics = build_ics(
        fields,
        uid="campaign-45@send.prairieworkers.example",
        summary="Journée d'action, 17 décembre : libérez Nadia Rahimi",
        url=PETITION_URL,
        dtstamp=STAMP,
    )
    properties = _parse(ics)
    names = [name for name, _ in properties]
    assert names[:2] == ["BEGIN", "VERSION"]
    assert names[-2:] == ["END", "END"]
    values = dict(properties)
    assert values["UID"] == "campaign-45@send.prairieworkers.example"
    assert values["DTSTAMP"] == "20251201T153000Z"
    # Noon and 13:30 in Edmonton (UTC-7 in December).
    assert values["DTSTART"] == "20251217T190000Z"
    assert values["DTEND"] == "20251217T203000Z"
    assert _unescape(values["SUMMARY"]) == "Journée d'action, 17 décembre : libérez Nadia Rahimi"
    assert _unescape(values["LOCATION"]) == (
        "Assemblée législative de l'Alberta, marches sud, 10800 97 Avenue NW, Edmonton AB"
    )
    description = _unescape(values["DESCRIPTION"])
    assert description.startswith("Assemblée législative de l'Alberta, marches sud\n10800 97")
    assert "Une pancarte faite maison\nDes vêtements chauds" in description
    assert values["URL"] == PETITION_URL
    assert ("BEGIN", "VEVENT") in properties
    assert ("END", "VCALENDAR") in properties


def test_crlf_line_endings_and_75_octet_folding() -> None:
    ics = build_ics(
        SAMPLES["day_of_action", "fr"].fields,
        uid="u@example.org",
        summary="é" * 100,  # two octets each: folding must not split one
        dtstamp=STAMP,
    )
    assert "\n" not in ics.replace("\r\n", "")
    physical = ics.split("\r\n")[:-1]
    assert all(len(line.encode("utf-8")) <= 75 for line in physical)
    assert any(line.startswith(" ") for line in physical)  # something was folded
    for line in physical:
        line.encode("utf-8").decode("utf-8")  # each piece is whole UTF-8
    assert dict(_parse(ics))["SUMMARY"] == "é" * 100


def test_text_values_are_escaped() -> None:
    fields = {**SAMPLES["day_of_action", "en"].fields, "place": "Hall; room 2, back\\door"}
    ics = build_ics(fields, uid="u@example.org", summary="A, B; C\nD", dtstamp=STAMP)
    values = dict(_parse(ics))
    assert values["SUMMARY"] == "A\\, B\\; C\\nD"
    assert values["LOCATION"].startswith("Hall\\; room 2\\, back\\\\door\\, ")


def test_default_duration_without_end_time() -> None:
    fields = {
        k: v for k, v in SAMPLES["day_of_action", "en"].fields.items() if k != "event_end_time"
    }
    values = dict(_parse(build_ics(fields, uid="u@example.org", summary="S", dtstamp=STAMP)))
    assert (values["DTSTART"], values["DTEND"]) == ("20251217T190000Z", "20251217T200000Z")
