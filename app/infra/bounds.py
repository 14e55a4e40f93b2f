"""What the database can store: INTEGER ids and text without NUL characters.

PostgreSQL refuses a number beyond its column's range (NumericValueOutOfRange) and a NUL
in text or JSON; either would surface as a 500. Values are checked where they enter:
`IdConverter` makes `<int:...>` URL parts that no row can have a 404 (and documents the
range in the OpenAPI document), and `storage_problems` finds such values in parsed input
so the API can answer 422 naming the field (api/blueprint.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # INTEGER, the type of every id a URL or a request body names
MIN_INT = -(2**31)
NUL = "\x00"


class IdConverter(IntegerConverter):
    """`<int:...>` for ids: 0 to 2**31 - 1, so a larger number matches no route (404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def as_int(text: str, *, maximum: int = MAX_ID) -> int | None:
    """The number `text` spells in ASCII digits (at most `maximum`), else None.

    str.isdigit() also accepts "²" (which int() then refuses: a 500) and "١٧" (which int()
    reads as 17): only ASCII digits are a number here.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


def storage_problems(value: Any) -> dict[str, Any]:
    """Messages for the values in parsed input that the database cannot store.

    Returns:
        Marshmallow-style nested messages ({"list_ids": {"0": ["..."]}}), empty when fine.
    """
    found = _walk(value)
    if isinstance(found, list):
        return {"_schema": found}
    return found or {}


def _walk(value: Any) -> dict[str, Any] | list[str] | None:
    if isinstance(value, Mapping):
        found: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                found[key.replace(NUL, "\\0")] = ["Names cannot contain NUL characters."]
            elif (inner := _walk(item)) is not None:
                found[str(key)] = inner
        return found or None
    if isinstance(value, list | tuple):
        items = {str(i): inner for i, item in enumerate(value) if (inner := _walk(item))}
        return items or None
    message = _problem(value)
    return [message] if message else None


def _problem(value: Any) -> str | None:
    if isinstance(value, bool | datetime | date):
        return None
    if isinstance(value, int) and not MIN_INT <= value <= MAX_ID:
        return f"Must be between {MIN_INT} and {MAX_ID}."
    if isinstance(value, str) and NUL in value:
        return "Text cannot contain NUL characters."
    return None
