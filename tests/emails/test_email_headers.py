"""Tests for per-message headers."""

from __future__ import annotations

import pytest

from app.emails.headers import list_unsubscribe_headers, message_id


def test_one_click_unsubscribe_headers() -> None:
    assert list_unsubscribe_headers("https://t.example.org/u/abc") == {
        "List-Unsubscribe": "<https://t.example.org/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    headers = list_unsubscribe_headers("https://t.example.org/u/abc", mailto="unsub@example.org")
    assert (
        headers["List-Unsubscribe"] == "<https://t.example.org/u/abc>, <mailto:unsub@example.org>"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://t.example.org/u/abc",
        "https://t.example.org/u/a b",
        "https://x.org/u/a>,<x",
        "mailto:x",
    ],
)
def test_unsubscribe_url_must_be_plain_https(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        list_unsubscribe_headers(url)


def test_message_id_is_deterministic_per_delivery() -> None:
    assert message_id(123, 45, "send.example.org") == "<d123.c45@send.example.org>"
    assert message_id(123, 45, "Send.Example.org") == message_id(123, 45, "send.example.org")
    assert message_id(124, 45, "send.example.org") != message_id(123, 45, "send.example.org")


@pytest.mark.parametrize(
    ("delivery", "campaign", "domain"),
    [
        (0, 1, "example.org"),
        (1, -1, "example.org"),
        (1, 1, "localhost"),
        (1, 1, "a b.org"),
        (1, 1, "x.org>\r\nBcc: y"),
    ],
)
def test_message_id_refuses_bad_input(delivery: int, campaign: int, domain: str) -> None:
    with pytest.raises(ValueError, match=r"Message-ID|domain"):
        message_id(delivery, campaign, domain)
