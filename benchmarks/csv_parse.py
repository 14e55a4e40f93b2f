"""Time the database-free part of the member import: parse and validate a 1M-row CSV.

Run from the repository root::

    python -m benchmarks.csv_parse [--rows N] [--seed S]

The file is generated once (in a child process, so the generator's memory
does not count) and cached under var/benchmarks/. The last line printed is
one JSON object: rows, seconds, rows_per_s, peak_rss_mb, parsed, skipped.
"""

import argparse
import collections
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from app.services.audience.member_csv import ParsedRow, open_member_csv

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data_file(rows: int, seed: int) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.data", "--rows", str(rows), "--seed", str(seed)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse the generated file once, print a summary and the JSON figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    started = time.perf_counter()
    path = _data_file(args.rows, args.seed)
    print(
        f"data: {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)"
    )

    rss_before = _peak_rss_mb()
    parsed = 0
    reasons: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    with path.open("rb") as stream:
        for row in open_member_csv(stream):
            if isinstance(row, ParsedRow):
                parsed += 1
            else:
                # Group "invalid email address: <details>", "unknown language 'xx'"...
                reasons[row.reason.split(":")[0].split(" (")[0].split(" '")[0]] += 1
    seconds = time.perf_counter() - started
    skipped = sum(reasons.values())

    print(f"parsed {parsed}, skipped {skipped}: {dict(reasons.most_common())}")
    print(f"rss before parsing {rss_before:.1f} MB, peak {_peak_rss_mb():.1f} MB")
    figure = {
        "rows": parsed + skipped,
        "seconds": round(seconds, 3),
        "rows_per_s": round((parsed + skipped) / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "parsed": parsed,
        "skipped": skipped,
    }
    print(json.dumps(figure))


if __name__ == "__main__":
    main()
