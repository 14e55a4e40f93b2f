"""Per-message headers: one-click unsubscribe (RFC 8058) and a deterministic Message-ID."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_URL_UNSAFE = re.compile(r"[\s<>,\x00-\x1f\x7f]")


def list_unsubscribe_headers(
    unsubscribe_url: str, *, mailto: str | None = None, allow_http: bool = False
) -> dict[str, str]:
    """Return the List-Unsubscribe and List-Unsubscribe-Post headers for one recipient.

    Gmail and Yahoo require both for bulk senders; mail clients then POST
    "List-Unsubscribe=One-Click" to the URL, with no cookie and no confirmation page.

    Args:
        unsubscribe_url: The recipient's own https unsubscribe address.
        mailto: An optional address for clients that only do mailto unsubscribes.
        allow_http: Accept an http URL too (development and tests only, so one-click
            unsubscribe can be tried on http://localhost; mail providers ignore it).

    Returns:
        The two headers.

    Raises:
        ValueError: If the URL is not https (RFC 8058 requires it) or could break the header.
    """
    parts = urlsplit(unsubscribe_url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname or _URL_UNSAFE.search(unsubscribe_url):
        raise ValueError("List-Unsubscribe needs an https URL without spaces, commas or brackets.")
    value = f"<{unsubscribe_url}>"
    if mailto is not None:
        if _URL_UNSAFE.search(mailto) or "@" not in mailto:
            raise ValueError("The mailto address cannot go into a header as is.")
        value += f", <mailto:{mailto}>"
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def message_id(delivery_id: int, campaign_id: int, domain: str) -> str:
    """Return the Message-ID of one delivery, the same every time it is (re)built.

    A retried batch then sends the same Message-ID, so a receiver (or SendGrid's
    webhook reconciliation) can tell a duplicate from a second message.

    Args:
        delivery_id: The delivery row's id.
        campaign_id: The campaign's id, to make the id readable in a mail log.
        domain: The sending domain, e.g. "send.example.org".

    Returns:
        e.g. "<d123.c45@send.example.org>".

    Raises:
        ValueError: For non-positive ids or a malformed domain.
    """
    if delivery_id <= 0 or campaign_id <= 0:
        raise ValueError("Message-ID ids must be positive.")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"Not a domain name: {domain!r}")
    return f"<d{delivery_id}.c{campaign_id}@{domain.lower()}>"
