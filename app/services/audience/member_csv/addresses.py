"""Email address normalisation: a strict regex fast path in front of email-validator."""

import re

import email_validator
from email_validator import EmailNotValidError, validate_email

__all__ = ["InvalidEmail", "normalise_email"]

# RFC 5322 atext, lower-case only because the candidate is lower-cased first.
_ATEXT = r"a-z0-9!#$%&'*+/=?^_`{|}~\-"
# Special-use names (".local", ".test", ".onion"...) are refused by
# email-validator even without DNS checks. The fast path reads the very list
# email-validator consults and refuses a domain that is, or ends with, one of
# them: the lookahead sits at the start of every label.
_NOT_RESERVED = (
    r"(?!(?:"
    + "|".join(re.escape(name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    + r")\Z)"
)
# A hostname label as email-validator takes it verbatim: letters, digits,
# inner hyphens, at most 63 octets. ("--" is ruled out separately.)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_EMAIL = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
    # At least one dot, and an alphabetic TLD of two letters or more.
    rf"@(?:{_NOT_RESERVED}{_LABEL}\.)+{_NOT_RESERVED}[a-z]{{2,63}}"
)
_MAX_LENGTH = 254  # RFC 3696 errata 1690; email-validator checks the same bound


class InvalidEmail(ValueError):
    """An address that email-validator refuses; the message says why, for people."""


def _fast_normalise(address: str) -> str | None:
    """Return the lower-cased address if it is plainly valid, else None.

    None means "undecided", never "invalid": the caller must then ask
    email-validator. Accepting is only allowed where email-validator accepts
    too and its normalised form, lower-cased, is the lower-cased input, which
    holds for plain ASCII dot-atom addresses at ordinary host names.
    """
    # isascii() first: lower() can turn non-ASCII into ASCII (KELVIN SIGN
    # becomes "k"), and email-validator normalises such input differently.
    if len(address) > _MAX_LENGTH or not address.isascii():
        return None
    lowered = address.lower()
    if (
        _FAST_EMAIL.fullmatch(lowered) is None
        # "--" in a label's third and fourth places is refused (R-LDH) or,
        # as "xn--", decoded from Punycode, which changes the normalised form.
        # Rare enough to leave every "--" to email-validator.
        or "--" in lowered
        # RFC 5321's 64-octet local part: email-validator enforces it only in
        # strict mode, so longer ones simply take the slow path.
        or lowered.find("@") > 64
    ):
        return None
    return lowered


def normalise_email(raw: str) -> str:
    """Validate an email address and return the form Rallypoint stores.

    The stored form is email-validator's normalised address (syntax only, no
    DNS lookup), lower-cased, after trimming surrounding whitespace. Most
    addresses are decided by a strict regular expression in about half a
    microsecond; anything it does not plainly accept goes to email-validator,
    which costs about 28 µs and has the last word.

    Addresses at special-use domains (``.local``, ``.test``, ``.invalid``,
    ``.onion``, ``.arpa``, ``localhost``) are refused, as email-validator
    does; ``example.com``/``.org``/``.net`` are accepted, so demo data and
    tests can use them.

    Args:
        raw: The address as typed or imported.

    Returns:
        The normalised, lower-cased address.

    Raises:
        InvalidEmail: The address is not valid; the message is
            email-validator's explanation, fit to show to an organizer.
    """
    address = raw.strip()
    fast = _fast_normalise(address)
    if fast is not None:
        return fast
    try:
        # Every option is spelled out so the result cannot drift when someone
        # flips one of email-validator's module-level defaults elsewhere in the
        # process: the fast path is proven equal to exactly this call.
        validated = validate_email(
            address,
            check_deliverability=False,  # syntax only; no DNS during an import
            test_environment=False,  # so "@x.test" is refused, as in production
            globally_deliverable=True,
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=False,
        )
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return validated.normalized.lower()
