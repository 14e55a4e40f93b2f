"""Print the cost of personalizing N emails from one skeleton against N full renders.

Usage: PYTHONPATH=. python -m benchmarks.email_personalize [N]   (default 10,000)

"Full render" is what a mailer without skeletons does per recipient: the sandboxed
organizer text, Markdown, the layout and CSS inlining, then filling in the recipient.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from app.emails import Recipient, Skeleton, build_skeleton, extract_links
from app.emails.samples import IDENTITIES, SAMPLES

BASE = "https://t.prairieworkers.example"


def _recipients(count: int) -> list[Recipient]:
    return [
        Recipient(
            first_name=f"Member{number}",
            last_name="Tremblay",
            email=f"member{number}@example.org",
            local=f"Local {number % 40}",
            token=f"tok{number:08d}",
            unsubscribe_url=f"{BASE}/u/tok{number:08d}",
            preferences_url=f"{BASE}/p/tok{number:08d}",
        )
        for number in range(count)
    ]


CONTENT = SAMPLES["day_of_action", "en"]
# The link table is read once per campaign in both cases, so it stays out of the timing.
REFS = {url: f"L{number}" for number, url in enumerate(extract_links(CONTENT), 1)}


def _build() -> Skeleton:
    return build_skeleton(
        CONTENT,
        IDENTITIES["en"],
        links=REFS.get,
        tracking=True,
        base_url=BASE,
        calendar_url=f"{BASE}/calendar/45.ics",
    )


def _time(label: str, count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {elapsed:8.3f} s  {elapsed / count * 1e6:9.1f} µs each")
    return elapsed


def main() -> None:
    """Run the comparison and print the figures."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    recipients = _recipients(count)
    skeleton = _build()
    print(f"{count:,} recipients, day_of_action (en), HTML {len(skeleton.html):,} characters")
    _time("build_skeleton once", 1, _build)
    fast = _time(
        f"{count:,} x personalize()", count, lambda: [skeleton.personalize(r) for r in recipients]
    )
    _time(
        f"{count:,} x substitutions() (SendGrid path)",
        count,
        lambda: [skeleton.substitutions(r) for r in recipients],
    )
    slow = _time(
        f"{count:,} x full render (build + personalize)",
        count,
        lambda: [_build().personalize(r) for r in recipients],
    )
    print(f"personalize() is {slow / fast:,.0f}x cheaper than a full render")


if __name__ == "__main__":
    main()
