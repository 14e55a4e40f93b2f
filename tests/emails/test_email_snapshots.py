"""Email snapshots: every layout x language, so a change to an email shows up in review.

Run with UPDATE_SNAPSHOTS=1 to rewrite the stored renderings after an intended change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.emails import build_skeleton, extract_links
from app.emails.samples import IDENTITIES, SAMPLE_RECIPIENTS, SAMPLES

SNAPSHOTS = Path(__file__).parent / "snapshots"
BASE = "https://t.prairieworkers.example"


def _render(layout: str, language: str) -> dict[str, str]:
    content = SAMPLES[layout, language]
    refs = {url: f"L{number}" for number, url in enumerate(extract_links(content), 1)}
    skeleton = build_skeleton(
        content,
        IDENTITIES[language],
        links=refs.get,
        tracking=True,
        base_url=BASE,
        archive_url=f"https://prairieworkers.example/archive/45/{language}",
        calendar_url=f"{BASE}/calendar/45.ics" if layout == "day_of_action" else None,
    )
    email = skeleton.personalize(SAMPLE_RECIPIENTS[language])
    # The subject heads the text snapshot so that it is reviewed too.
    return {"html": email.html, "txt": f"Subject: {email.subject}\n\n{email.text}"}


@pytest.mark.parametrize("key", sorted(SAMPLES), ids="{0[0]}.{0[1]}".format)
def test_email_matches_snapshot(key: tuple[str, str]) -> None:
    layout, language = key
    update = os.environ.get("UPDATE_SNAPSHOTS") == "1"
    for suffix, rendered in _render(layout, language).items():
        path = SNAPSHOTS / f"{layout}.{language}.{suffix}"
        if update:
            path.parent.mkdir(exist_ok=True)
            path.write_text(rendered, encoding="utf-8")
            continue
        assert path.exists(), f"No snapshot {path.name}; run with UPDATE_SNAPSHOTS=1"
        assert rendered == path.read_text(encoding="utf-8"), (
            f"{path.name} changed; review the difference, then run with UPDATE_SNAPSHOTS=1"
        )
