"""`make run` uses SQLite: the rollup upkeep, the report, the dashboard and the API work there."""

from __future__ import annotations

from flask_migrate import upgrade

from app.extensions import db
from app.services.organization import users
from app.services.stats import breakdown, reports
from app.services.stats import counters as stats
from tests.support import stats_scenario
from tests.support.forms import login
from tests.support.tracking import MIGRATIONS


def test_reports_on_sqlite(other_app, tmp_path):
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'rp.db'}")
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        session = db.session
        scenario = stats_scenario.build(session)
        cid = scenario.campaign.id
        issued = users.create_token(
            session,
            users.create_user(session, email="v@example.org", password="x" * 12, role="viewer"),
        )
        session.commit()
        assert breakdown.stored_breakdown(session, cid) == breakdown.recompute_breakdown(
            session, cid
        )
        assert (
            reports.campaign_funnel(session, cid).counts
            == stats.recompute_stats(session, cid).campaign
        )
        assert reports.campaign_problems(session, cid).total == 4
        assert len(reports.list_growth(session)) == 12
        assert reports.deliverability(session, days=365).campaigns == 1
        assert "".join(reports.outcome_csv(session, cid)).count("\n") == 25
        secret = issued.secret
        session.remove()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    for path in ("", "/timeline", "/links", "/breakdown/local", "/problems"):
        assert (
            client.get(f"/api/v1/stats/campaigns/{cid}{path}", headers=headers).status_code == 200
        )
    assert client.get("/api/v1/stats/dashboard", headers=headers).status_code == 200
    assert login(client, "v@example.org", "x" * 12).status_code == 302
    for page in (f"/stats/campaigns/{cid}", f"/stats/campaigns/{cid}/live", "/dashboard", "/stats"):
        assert client.get(page).status_code == 200, page
