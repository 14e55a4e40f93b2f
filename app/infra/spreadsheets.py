"""Cells safe to open in a spreadsheet: every CSV Rallypoint writes goes through `neutralise`.

Any cell that starts with =, +, -, @, tab, carriage return or line feed gets a leading
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of running it as
a formula (reference/celery-tracking-security.md §5.4: member names, custom fields and form
input are all attacker-controlled; OWASP added line feed in 2025). The apostrophe is the
prefix OWASP recommends; a tab would itself be one of the dangerous characters (Symfony
CVE-2021-41270).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(value: Any) -> str:
    """A cell's text, with a leading apostrophe if a spreadsheet would read it as a formula.

    None is an empty cell; a datetime is written in ISO 8601.
    """
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text
