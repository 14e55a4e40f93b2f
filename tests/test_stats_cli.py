"""`flask stats verify-breakdown` and `rebuild-breakdown`: the repair path for the rollup."""

from __future__ import annotations

from app.services.stats import breakdown
from tests.support import stats_scenario


def test_verify_then_repair_a_damaged_breakdown(app, db_session):
    scenario = stats_scenario.build(db_session)
    cid = scenario.campaign.id
    runner = app.test_cli_runner()
    result = runner.invoke(args=["stats", "verify-breakdown", str(cid)])
    assert result.exit_code == 0, result.output
    assert "matches its events" in result.output

    breakdown.add_breakdown_counters(db_session, {(cid, "language", "fr"): {"opens_unique": 5}})
    result = runner.invoke(args=["stats", "verify-breakdown", str(cid)])
    assert result.exit_code == 1
    assert "language fr" in result.output

    result = runner.invoke(args=["stats", "rebuild-breakdown", str(cid)])
    assert result.exit_code == 0, result.output
    assert breakdown.stored_breakdown(db_session, cid) == breakdown.recompute_breakdown(
        db_session, cid
    )
