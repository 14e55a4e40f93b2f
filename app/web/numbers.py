"""How the pages write numbers: one format for counts and one for rates, everywhere."""

from __future__ import annotations

RATE_DECIMALS = 1


def pct(rate: float | None) -> str:
    """A rate as a percentage with one decimal: 0.1234 -> "12.3%", 0.0004 -> "<0.1%" (never
    a misleading "0.0%" for a few people), None (nothing to divide by, or not reported) -> "—".
    """
    if rate is None:
        return "—"
    value = rate * 100
    smallest = 10**-RATE_DECIMALS
    if 0 < value < smallest:
        return f"<{smallest:.{RATE_DECIMALS}f}%"
    return f"{value:.{RATE_DECIMALS}f}%"


def num(value: int | float | None) -> str:
    """A count with thousands separators: 12345 -> "12,345"; None -> "—"."""
    return "—" if value is None else f"{value:,.0f}"
