"""Every benchmark script imports: a refactor of the shared harness cannot break one unseen.

The benchmarks themselves are run by hand (`make bench-*`), not by the suite; this only
catches a name one of them imports from another that is gone.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.models import CampaignStats
from benchmarks import report

SCRIPTS = sorted(
    p.stem
    for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
    if p.stem != "__init__"
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_imports(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__, f"benchmarks/{name}.py says what it measures"


def test_the_report_benchmark_builds_its_counters(db_session):
    """`make bench-report` loads a campaign by SQL and rebuilds its counters as the stats
    recomputation says; when the recomputation learnt to count signatures (kept in
    action_tallies, not campaign_stats) the benchmark broke with a KeyError, unseen."""
    campaign_id = report._fill(db_session, "Bench", 200, 0)
    report._build_counters(db_session, campaign_id)
    db_session.flush()
    sent = db_session.scalar(
        sa.select(CampaignStats.sent).where(CampaignStats.campaign_id == campaign_id)
    )
    targeted = db_session.scalar(
        sa.select(sa.func.count())
        .select_from(sa.text("deliveries"))
        .where(sa.text("campaign_id = :c")),
        {"c": campaign_id},
    )
    assert targeted == 200
    assert sent is not None
    assert sent > 0
