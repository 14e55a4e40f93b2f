"""Compact signed tokens that identify a delivery in tracking and unsubscribe links.

A token is ``<campaign id>.<delivery id>.<mac>``: both ids in base 36 and an HMAC-SHA256 over
them truncated to 96 bits (base64url, 16 characters). The campaign id lets the click endpoint
check that a link belongs to the token's campaign without a database round trip. The key is
derived from SECRET_KEY; keys derived from SECRET_KEY_FALLBACKS still verify, so rotating the
secret does not break links already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

_PURPOSE = b"rallypoint.delivery-token.v1"
_MAC_BYTES = 12  # 96 bits: well above the 64-bit floor, short enough for a URL
_MAC_CHARS = 16
_MAX_ID_CHARS = 13  # base 36 of 2**63 fits in 13 characters
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# The whole shape in one C call (the open pixel verifies a token per request).
_SHAPE = re.compile(
    rf"([0-9a-z]{{1,{_MAX_ID_CHARS}}})\.([0-9a-z]{{1,{_MAX_ID_CHARS}}})\.([A-Za-z0-9_-]{{{_MAC_CHARS}}})"
)


@dataclass(frozen=True)
class DeliveryRef:
    campaign_id: int
    delivery_id: int


def derive_key(secret: str) -> bytes:
    """A key for delivery tokens only, so the session secret is never used directly."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("ids are positive")
    if number == 0:
        return "0"
    digits = []
    while number:
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def _mac(key: bytes, body: str) -> str:
    # hmac.digest is OpenSSL's one-shot HMAC: a send signs a token per recipient.
    digest = hmac.digest(key, body.encode(), "sha256")[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode()


class TokenSigner:
    """Signs with the first key, verifies with any of them (current, then fallbacks)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self.keys = [derive_key(s) for s in secrets]

    def sign(self, campaign_id: int, delivery_id: int) -> str:
        body = f"{_base36(campaign_id)}.{_base36(delivery_id)}"
        return f"{body}.{_mac(self.keys[0], body)}"

    def verify(self, token: str) -> DeliveryRef | None:
        """The delivery a token names, or None for anything forged, truncated or malformed."""
        shape = _SHAPE.fullmatch(token)
        if shape is None:
            return None
        campaign, delivery, mac = shape.groups()
        body = f"{campaign}.{delivery}"
        if not any(hmac.compare_digest(_mac(key, body), mac) for key in self.keys):
            return None
        return DeliveryRef(int(campaign, 36), int(delivery, 36))


def signer_from_config(config: object) -> TokenSigner:
    """The signer for an app's settings (SECRET_KEY first, then SECRET_KEY_FALLBACKS)."""
    secret = getattr(config, "SECRET_KEY", None) or ""
    fallbacks = list(getattr(config, "SECRET_KEY_FALLBACKS", []) or [])
    return TokenSigner([secret, *fallbacks])
