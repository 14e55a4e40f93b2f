"""Delivery tokens: compact, signed, scoped to one use, rotation-friendly, nothing forged."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.infra.tokens import DeliveryRef, Mac, Scope, TokenSigner, _base36

SECRET = "current-secret-0123456789"
SIGNER = TokenSigner([SECRET])


def legacy_token(secret: str, campaign_id: int, delivery_id: int) -> str:
    """A token as minted before scopes (one token for pixel, links and unsubscribe).

    Written out independently of app/infra/tokens.py, from the old code, so the test
    pins what emails already sent carry.
    """

    def b36(n: int) -> str:
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        out = ""
        while n:
            n, rest = divmod(n, 36)
            out = digits[rest] + out
        return out or "0"

    key = hmac.new(secret.encode(), b"rallypoint.delivery-token.v1", hashlib.sha256).digest()
    body = f"{b36(campaign_id)}.{b36(delivery_id)}"
    mac = hmac.digest(key, body.encode(), "sha256")[:12]
    return f"{body}.{base64.urlsafe_b64encode(mac).decode()}"


@given(st.integers(1, 2**31), st.integers(1, 2**62), st.sampled_from(Scope))
def test_round_trip(campaign_id, delivery_id, scope):
    token = SIGNER.sign(campaign_id, delivery_id, scope)
    assert SIGNER.verify(token, scope) == DeliveryRef(campaign_id, delivery_id)
    assert len(token) <= 2 * 13 + 2 + 1 + 16
    assert all(c.isalnum() or c in "._-" for c in token)  # URL-safe as is


@given(st.integers(1, 2**31), st.integers(1, 2**62))
def test_a_token_is_good_for_its_own_scope_only(campaign_id, delivery_id):
    tokens = SIGNER.sign_all(campaign_id, delivery_id)
    assert len(set(tokens.values())) == 3
    for minted, token in tokens.items():
        assert token == SIGNER.sign(campaign_id, delivery_id, minted)
        for scope in Scope:
            ref = SIGNER.verify(token, scope)
            assert (ref is not None) == (scope is minted)


def test_changing_the_scope_letter_does_not_change_the_use():
    token = SIGNER.sign(1, 12345, Scope.OPEN)
    body, _, tail = token.rpartition(".")
    assert tail[0] == "o"
    for letter, scope in (("u", Scope.UNSUBSCRIBE), ("c", Scope.CLICK)):
        assert SIGNER.verify(f"{body}.{letter}{tail[1:]}", scope) is None
    assert SIGNER.verify(f"{body}.{tail[1:]}", Scope.UNSUBSCRIBE) is None  # nor dropping it


def test_mac_is_at_least_64_bits():
    mac = SIGNER.sign(1, 1, Scope.OPEN).split(".")[2][1:]
    assert len(mac) * 6 >= 64


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
        lambda t: "2" + t[1:],  # another campaign
        lambda t: t.split(".")[0] + ".zz." + t.split(".")[2],  # another delivery
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "..",
        lambda t: "1.1.u" + "A" * 16,
        lambda t: "1.1." + "A" * 16,
        lambda t: "-1.5." + t.split(".")[2],
        lambda t: t.upper(),
        lambda t: "1" * 500,
    ],
)
def test_forged_or_truncated_tokens_are_refused(mutate):
    token = SIGNER.sign(1, 12345, Scope.UNSUBSCRIBE)
    assert SIGNER.verify(mutate(token), Scope.UNSUBSCRIBE) is None


def test_other_secret_is_refused():
    other = TokenSigner(["another-secret-xyz"])
    assert other.verify(SIGNER.sign(3, 4, Scope.CLICK), Scope.CLICK) is None
    assert other.verify(legacy_token(SECRET, 3, 4), Scope.CLICK) is None


def test_rotation_keeps_old_links_working():
    old = TokenSigner(["old-secret"]).sign(7, 99, Scope.CLICK)
    rotated = TokenSigner(["new-secret", "old-secret"])
    assert rotated.verify(old, Scope.CLICK) == DeliveryRef(7, 99)
    assert rotated.sign(7, 99, Scope.CLICK) != old  # new links use the new key
    assert TokenSigner(["new-secret"]).verify(old, Scope.CLICK) is None  # once dropped, no more
    legacy = legacy_token("old-secret", 7, 99)
    assert rotated.verify(legacy, Scope.OPEN) == DeliveryRef(7, 99, is_legacy=True)


@pytest.mark.parametrize("scope", list(Scope))
def test_legacy_tokens_verify_for_every_scope_and_say_so(scope):
    """Emails already sent carry one unscoped token for all three uses (see tokens.py):
    the signer accepts it for each and marks it legacy, so /u/ can apply its cut-off."""
    ref = SIGNER.verify(legacy_token(SECRET, 5, 77), scope)
    assert ref == DeliveryRef(5, 77, is_legacy=True)
    assert SIGNER.verify(legacy_token("wrong-secret", 5, 77), scope) is None


@given(key=st.binary(min_size=0, max_size=200), body=st.text(max_size=80))
def test_the_precomputed_mac_is_hmac_sha256(key, body):
    """`Mac` keeps the padded key's hash states and finishes copies of them (RFC 2104); it
    must be HMAC-SHA256 itself, for keys shorter and longer than the block, or every link
    already sent would stop verifying."""
    expected = hmac.digest(key, body.encode(), "sha256")[:12]
    assert Mac(key)(body) == base64.urlsafe_b64encode(expected).decode()


@given(st.integers(min_value=0, max_value=2**63))
def test_ids_in_base_36_round_trip_without_leading_zeros(number):
    text = _base36(number)
    assert int(text, 36) == number
    assert text == "0" or not text.startswith("0")
