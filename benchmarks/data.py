"""Realistic member CSV files for the import benchmarks (Canadian names, locals, postal codes)."""

import argparse
import csv
import os
import random
import unicodedata
from datetime import date, timedelta
from pathlib import Path

from faker import Faker

__all__ = ["DATA_VERSION", "cached_members_csv", "write_members_csv"]

# Part of cached file names: bump it when the generator's output changes.
DATA_VERSION = 1
HEADER = [
    "Email",
    "First name",
    "Last name",
    "Language",
    "Postal code",
    "Local",
    "Workplace",
    "Member since",
]
_DOMAINS = [
    ("gmail.com", 30),
    ("hotmail.com", 15),
    ("outlook.com", 8),
    ("yahoo.ca", 7),
    ("videotron.ca", 6),
    ("icloud.com", 5),
    ("bell.net", 4),
    ("sympatico.ca", 4),
    ("live.ca", 4),
    ("shaw.ca", 3),
    ("telus.net", 3),
    ("rogers.com", 3),
    ("cgocable.ca", 2),
    ("globetrotter.net", 2),
    ("protonmail.com", 1),
    ("uni-montreal.ca", 1),
    ("ssss.gouv.qc.ca", 1),
    ("ontario.ca", 1),
]
_LANGUAGE_CELLS = {
    "en": [("en", 70), ("EN", 8), ("English", 8), ("en-CA", 2), ("", 12)],
    "fr": [("fr", 65), ("FR", 8), ("Français", 10), ("fr_CA", 5), ("", 12)],
}
# What people really get wrong, each becomes one skip reason.
_BAD_ADDRESSES = [
    "{local}@{domain_no_tld}",
    "{local}@@{domain}",
    "{local} @{domain}",
    "{local}.@{domain}",
    "{local}@{domain}.",
    "{local}{domain}",
    "{local}@{domain},{domain}",
    "{local}@gmail..com",
    "@{domain}",
    "{local}@mail.local",
]


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in ".-_")).lower()


def _pools(seed: int) -> dict[str, list[str]]:
    # Faker is about 50 µs a name; a million rows draw from pools instead.
    pools: dict[str, list[str]] = {}
    for locale in ("en_CA", "fr_CA"):
        fake = Faker(locale)
        fake.seed_instance(seed)
        pools[f"first_{locale}"] = sorted({fake.first_name() for _ in range(3000)})
        pools[f"last_{locale}"] = sorted({fake.last_name() for _ in range(3000)})
        pools[f"postcode_{locale}"] = [fake.postcode() for _ in range(5000)]
        pools[f"workplace_{locale}"] = sorted({fake.company() for _ in range(400)})
    return pools


def write_members_csv(
    path: str | os.PathLike[str],
    rows: int,
    seed: int = 2024,
    invalid: float = 0.01,
    duplicates: float = 0.005,
) -> dict[str, int]:
    """Write a member CSV file of ``rows`` data rows (plus a header line).

    About 30% of members are French-speaking (fr_CA names); addresses are
    built from the names on common Canadian providers, some in mixed case;
    cells vary as real spreadsheets do (language written "FR", "Français",
    "en-CA" or left empty; postal codes with and without the space). A
    fraction ``invalid`` of the rows is bad in one way (mostly bad addresses,
    some missing addresses, unknown languages, extra fields, a byte that is
    not UTF-8), and a fraction ``duplicates`` repeats an earlier address in
    another case. Output is deterministic for a given seed.

    Args:
        path: Where to write; the file is replaced.
        rows: Number of data rows.
        seed: Random seed.
        invalid: Fraction of rows that must be skipped by the import.
        duplicates: Fraction of rows repeating an earlier member's address.

    Returns:
        Counts: rows, invalid, duplicates, multiline (rows with a quoted
        newline).
    """
    rng = random.Random(seed)
    pools = _pools(seed)
    domains = [name for name, _ in _DOMAINS]
    domain_weights = [weight for _, weight in _DOMAINS]
    language_cells = {
        language: ([cell for cell, _ in cells], [weight for _, weight in cells])
        for language, cells in _LANGUAGE_CELLS.items()
    }
    locals_ = [f"Local {rng.randint(100, 9999)}" for _ in range(60)]
    seen: set[str] = set()
    recent: list[str] = []
    counts = {"rows": rows, "invalid": 0, "duplicates": 0, "multiline": 0}
    start = date(1985, 1, 1)

    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for _ in range(rows):
            locale = "fr_CA" if rng.random() < 0.3 else "en_CA"
            language = "fr" if locale == "fr_CA" else "en"
            first = rng.choice(pools[f"first_{locale}"])
            last = rng.choice(pools[f"last_{locale}"])
            domain = rng.choices(domains, domain_weights)[0]
            roll = rng.random()
            if roll < duplicates and recent:
                email = rng.choice(recent).upper()
                counts["duplicates"] += 1
            else:
                email = _unique_address(rng, first, last, domain, seen)
                if len(recent) < 10_000:
                    recent.append(email)
                elif rng.random() < 0.01:
                    recent[rng.randrange(len(recent))] = email
                if rng.random() < 0.05:
                    email = email.title()
            row = [
                email,
                first,
                last,
                rng.choices(*language_cells[language])[0],
                rng.choice(pools[f"postcode_{locale}"]),
                rng.choice(locals_),
                rng.choice(pools[f"workplace_{locale}"]),
                (start + timedelta(days=rng.randrange(14_000))).isoformat(),
            ]
            if rng.random() < 0.001:
                row[6] += "\nPavillon B"  # a quoted newline: rows span lines
                counts["multiline"] += 1
            if duplicates <= roll < duplicates + invalid:
                _spoil(rng, row, domain)
                counts["invalid"] += 1
            writer.writerow(row)
    return counts


def _unique_address(rng: random.Random, first: str, last: str, domain: str, seen: set[str]) -> str:
    first_ascii, last_ascii = _ascii(first), _ascii(last)
    local = rng.choice(
        [
            f"{first_ascii}.{last_ascii}",
            f"{first_ascii}{last_ascii}",
            f"{first_ascii[:1]}{last_ascii}",
            f"{first_ascii}_{last_ascii}",
            f"{last_ascii}.{first_ascii}",
        ]
    )
    email = f"{local}@{domain}"
    while email in seen:
        email = f"{local}{rng.randint(1, 9999)}@{domain}"
    seen.add(email)
    return email


def _spoil(rng: random.Random, row: list[str], domain: str) -> None:
    kind = rng.random()
    local = row[0].partition("@")[0]
    if kind < 0.70:
        row[0] = rng.choice(_BAD_ADDRESSES).format(
            local=local, domain=domain, domain_no_tld=domain.partition(".")[0]
        )
    elif kind < 0.85:
        row[0] = ""
    elif kind < 0.93:
        row[3] = rng.choice(["es", "Español", "de", "zh-CN"])
    elif kind < 0.97:
        row.extend(["", "unexpected", "cells"])
    else:
        # A Latin-1 "é" in a UTF-8 file: the one byte surrogateescape writes back.
        row[2] = row[2] + "\udce9"


def cached_members_csv(
    rows: int, seed: int = 2024, directory: str | os.PathLike[str] | None = None
) -> Path:
    """Return the path of a generated member CSV, generating it only once.

    Files live under ``var/benchmarks/`` at the repository root, keyed by
    row count, seed and DATA_VERSION, and are written under a temporary name
    then renamed, so an interrupted run never leaves a truncated cache.

    Args:
        rows: Number of data rows.
        seed: Random seed.
        directory: Cache directory, instead of ``var/benchmarks``.

    Returns:
        The path of the CSV file.
    """
    base = Path(directory) if directory else Path(__file__).resolve().parents[1] / "var/benchmarks"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"members-v{DATA_VERSION}-{rows}-{seed}.csv"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        write_members_csv(partial, rows, seed)
        partial.replace(path)
    return path


def main() -> None:
    """Generate (or find) the cached CSV and print its path."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    print(cached_members_csv(args.rows, args.seed))


if __name__ == "__main__":
    main()
