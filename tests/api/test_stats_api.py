"""/api/v1/stats: the figures recomputed from raw events, for viewers, in the OpenAPI document."""

from __future__ import annotations

import re

import pytest

from app.models import Role
from app.services.organization import users
from app.services.stats import breakdown
from app.services.stats import counters as stats
from tests.support import stats_scenario


@pytest.fixture
def token_for(db_session, make_user):
    def _token(role: Role) -> str:
        issued = users.create_token(db_session, make_user(role))
        db_session.commit()
        return issued.secret

    return _token


@pytest.fixture
def viewer(token_for):
    return {"Authorization": f"Bearer {token_for(Role.VIEWER)}"}


@pytest.fixture
def scenario(db_session):
    built = stats_scenario.build(db_session)
    db_session.commit()
    return built


def test_campaign_report_equals_the_recomputation(client, db_session, viewer, scenario):
    cid = scenario.campaign.id
    body = client.get(f"/api/v1/stats/campaigns/{cid}", headers=viewer).get_json()
    expected = stats.recompute_stats(db_session, cid).campaign
    assert body["counts"] == expected
    assert body["name"] == scenario.campaign.name
    assert body["denominator"] == "delivered"
    assert body["denominator_count"] == expected["delivered"]
    assert body["rates"]["opened"] == expected["opens_unique"] / expected["delivered"]
    assert body["rates"]["spam_reported"] == expected["spam_reports"] / expected["delivered"]


def test_timeline_links_and_breakdown_equal_the_recomputation(client, db_session, viewer, scenario):
    cid = scenario.campaign.id
    expected = stats.recompute_stats(db_session, cid)
    timeline = client.get(f"/api/v1/stats/campaigns/{cid}/timeline", headers=viewer).get_json()
    buckets = timeline["buckets"]
    assert buckets[0]["kind"] == "hour"
    assert buckets[-1]["kind"] == "day"
    for name in ("opens_total", "opens_human_unique", "clicks_unique", "petition_clicks_total"):
        assert sum(b["counts"][name] for b in buckets) == sum(
            h.get(name, 0) for h in expected.hourly.values()
        )
    links = client.get(f"/api/v1/stats/campaigns/{cid}/links", headers=viewer).get_json()
    assert [link["is_petition"] for link in links] == [False, True, False]
    for link in links:
        assert link["counts"] == expected.links[link["link_id"]]
    recomputed = breakdown.recompute_breakdown(db_session, cid, signatures=True)
    for dimension in ("local", "language"):
        rows = client.get(
            f"/api/v1/stats/campaigns/{cid}/breakdown/{dimension}", headers=viewer
        ).get_json()
        assert {(dimension, r["value"]): r["counts"] for r in rows} == {
            k: v for k, v in recomputed.items() if k[0] == dimension
        }


def test_problems_are_paginated(client, viewer, scenario):
    cid = scenario.campaign.id
    body = client.get(
        f"/api/v1/stats/campaigns/{cid}/problems?per_page=3", headers=viewer
    ).get_json()
    assert (body["total"], body["pages"], len(body["items"])) == (4, 2, 3)
    second = client.get(
        f"/api/v1/stats/campaigns/{cid}/problems?per_page=3&page=2", headers=viewer
    ).get_json()
    assert len(second["items"]) == 1
    assert {i["kind"] for i in body["items"] + second["items"]} == {"failed", "bounced", "dropped"}


@pytest.mark.parametrize(
    "query", ["per_page=0", "per_page=501", "page=0", "kind=exploded", "page=x"]
)
def test_bad_paging_is_a_422_with_the_error_shape(client, viewer, scenario, query):
    response = client.get(
        f"/api/v1/stats/campaigns/{scenario.campaign.id}/problems?{query}", headers=viewer
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_dashboard_growth_and_deliverability(client, viewer, scenario):
    dashboard = client.get("/api/v1/stats/dashboard", headers=viewer).get_json()
    assert dashboard["recent_campaigns"][0]["id"] == scenario.campaign.id
    assert len(dashboard["list_growth"]) == 12
    assert dashboard["deliverability"]["thresholds"]["spam_alarm"] == 0.003
    growth = client.get("/api/v1/stats/list-growth?weeks=4", headers=viewer).get_json()
    assert len(growth) == 4
    health = client.get("/api/v1/stats/deliverability?days=365", headers=viewer).get_json()
    assert health["spam_level"] in {"none", "healthy", "warning", "alarm"}
    assert client.get("/api/v1/stats/list-growth?weeks=0", headers=viewer).status_code == 422
    assert client.get("/api/v1/stats/deliverability?days=9999", headers=viewer).status_code == 422


def test_campaign_list(client, viewer, scenario):
    body = client.get("/api/v1/stats/campaigns", headers=viewer).get_json()
    assert body["total"] == 1
    assert body["items"][0]["counts"]["targeted"] == len(scenario.deliveries)


def test_csv_export(client, viewer, scenario):
    response = client.get(
        f"/api/v1/stats/campaigns/{scenario.campaign.id}/outcomes.csv", headers=viewer
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith("email,first_name")


def test_unknown_campaign_or_dimension_is_404(client, viewer, scenario):
    for path in (
        "/api/v1/stats/campaigns/999999",
        "/api/v1/stats/campaigns/999999/timeline",
        "/api/v1/stats/campaigns/999999/links",
        "/api/v1/stats/campaigns/999999/problems",
        "/api/v1/stats/campaigns/999999/outcomes.csv",
        f"/api/v1/stats/campaigns/{scenario.campaign.id}/breakdown/postcode",
    ):
        response = client.get(path, headers=viewer)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


READ_ENDPOINTS = [
    "/api/v1/stats/campaigns",
    "/api/v1/stats/campaigns/{cid}",
    "/api/v1/stats/campaigns/{cid}/timeline",
    "/api/v1/stats/campaigns/{cid}/links",
    "/api/v1/stats/campaigns/{cid}/breakdown/local",
    "/api/v1/stats/campaigns/{cid}/breakdown/language",
    "/api/v1/stats/campaigns/{cid}/problems",
    "/api/v1/stats/campaigns/{cid}/outcomes.csv",
    "/api/v1/stats/dashboard",
    "/api/v1/stats/list-growth",
    "/api/v1/stats/deliverability",
]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_viewers_read_every_endpoint_and_strangers_none(client, viewer, scenario, path):
    url = path.format(cid=scenario.campaign.id)
    assert client.get(url, headers=viewer).status_code == 200
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer rp_forged"}).status_code == 401


def test_member_activity_is_for_organizers(client, token_for, scenario):
    member_id = scenario.deliveries[0].member_id
    url = f"/api/v1/stats/members/{member_id}"
    organizer = {"Authorization": f"Bearer {token_for(Role.ORGANIZER)}"}
    body = client.get(url, headers=organizer).get_json()
    assert body["deliveries"][0]["campaign_id"] == scenario.campaign.id
    assert any(e["kind"] == "click" for e in body["events"])
    viewer = {"Authorization": f"Bearer {token_for(Role.VIEWER)}"}
    assert client.get(url, headers=viewer).status_code == 403
    assert client.get("/api/v1/stats/members/999999", headers=organizer).status_code == 404


def test_every_stats_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = set(spec["paths"])
    for path in [*READ_ENDPOINTS, "/api/v1/stats/members/{member_id}"]:
        templated = re.sub(r"\{cid\}", "{campaign_id}", path)
        templated = templated.replace("breakdown/local", "breakdown/{dimension}").replace(
            "breakdown/language", "breakdown/{dimension}"
        )
        assert templated in paths, templated
    report = spec["paths"]["/api/v1/stats/campaigns/{campaign_id}"]["get"]
    assert "200" in report["responses"]


def test_a_viewer_token_reaches_no_api_write_route(app, client, viewer):
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            routes.append((method, re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "1", rule.rule)))
    assert ("POST", "/api/v1/users") in routes
    for method, path in routes:
        response = client.open(path, method=method, headers=viewer, json={})
        assert response.status_code == 403, (method, path, response.status_code)
