"""The open pixel and the click redirect: what they answer, and what they refuse to record."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import CampaignStats, Delivery, Link
from app.public.tracking import PIXEL
from tests.support.tracking import (
    INFO_URL,
    PETITION_URL,
    event_count,
    flush_all,
    reset_tracking,
    sent_campaign,
)


@pytest.fixture
def sent(app, committed_db):
    reset_tracking(app)
    with app.app_context():
        data = sent_campaign(db.session, app, members=2)
        other = sent_campaign(db.session, app, members=1)
        db.session.commit()
        ids = {
            "campaign": data.campaign.id,
            "other_campaign": other.campaign.id,
            "petition": data.petition.id,
            "info": data.info.id,
            "other_link": other.petition.id,
            "token": data.token(0),
            "token2": data.token(1),
            "other_token": other.token(0),
            "click": data.click_token(0),
            "click2": data.click_token(1),
            "other_click": other.click_token(0),
            "unsubscribe": data.unsubscribe_token(0),
            "delivery": data.deliveries[0].id,
        }
        db.session.remove()
    yield ids
    reset_tracking(app)


def _stats(app, campaign_id):
    with app.app_context():
        row = db.session.get(CampaignStats, campaign_id)
        values = (
            {c: getattr(row, c) for c in ("opens_total", "clicks_total", "petition_clicks_unique")}
            if row
            else {}
        )
        db.session.remove()
        return values


def test_pixel_is_a_43_byte_gif_that_is_never_cached(client, sent):
    response = client.get(f"/t/o/{sent['token']}.gif")
    assert response.status_code == 200
    assert response.data == PIXEL
    assert len(PIXEL) == 43
    assert PIXEL.startswith(b"GIF89a")
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, private"
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert "Set-Cookie" not in response.headers


def test_open_is_recorded_once_through_the_stream(app, client, sent):
    client.get(f"/t/o/{sent['token']}.gif", headers={"User-Agent": "Mozilla/5.0 Thunderbird"})
    assert flush_all(app) == 1
    assert event_count(app, "open") == 1
    assert _stats(app, sent["campaign"])["opens_total"] == 1
    assert flush_all(app) == 0  # nothing left, nothing counted twice


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # forged MAC
        lambda t: "zz." + t.split(".", 1)[1],  # another campaign, same MAC
        lambda t: t.split(".")[0] + ".zz." + t.split(".")[2],  # another delivery
        lambda t: "",
        lambda t: "x" * 500,
        lambda t: t + ".extra",
    ],
    ids=["truncated", "forged", "other-campaign", "other-delivery", "empty", "huge", "extra"],
)
def test_bad_tokens_record_nothing(app, client, sent, mangle):
    bad = mangle(sent["token"])
    pixel = client.get(f"/t/o/{bad}.gif")
    if bad:  # "/t/o/.gif" is no route at all
        assert pixel.status_code == 200
        assert pixel.data == PIXEL
    click = client.get(f"/t/c/{sent['petition']}/{mangle(sent['click'])}")
    assert click.status_code == 404
    assert "Location" not in click.headers
    flush_all(app)
    assert event_count(app) == 0
    assert _stats(app, sent["campaign"]) == {}


def test_click_redirects_to_the_stored_url_and_counts_a_petition_click(app, client, sent):
    response = client.get(
        f"/t/c/{sent['petition']}/{sent['click']}", headers={"User-Agent": "Mozilla/5.0 Firefox"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == PETITION_URL
    assert "no-store" in response.headers["Cache-Control"]
    assert client.get(f"/t/c/{sent['info']}/{sent['click2']}").headers["Location"] == INFO_URL
    flush_all(app)
    assert event_count(app, "click") == 2
    stats = _stats(app, sent["campaign"])
    assert stats["clicks_total"] == 2
    assert stats["petition_clicks_unique"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/t/c/{other_link}/{click}",  # a link of another campaign
        "/t/c/{petition}/{other_click}",  # our link with another campaign's token
        "/t/c/999999/{click}",  # unknown link
        "/t/c/0/{click}",
        "/t/c/-1/{click}",
        "/t/c/{click}?url=https://evil.example/phish",  # no link id: the URL is in the query
        "/t/c?url=https://evil.example/phish",
        "/t/c/https%3A%2F%2Fevil.example/{click}",
        "/t/c/99999999999999999999/{click}",
    ],
)
def test_open_redirect_attempts_get_404_and_record_nothing(app, client, sent, path):
    response = client.get(path.format(**sent))
    assert response.status_code == 404
    assert "evil" not in response.headers.get("Location", "")
    flush_all(app)
    assert event_count(app) == 0


def test_a_url_in_the_query_string_never_changes_the_target(app, client, sent):
    response = client.get(
        f"/t/c/{sent['petition']}/{sent['click']}?url=https://evil.example&next=//evil.example"
    )
    assert response.status_code == 302
    assert response.headers["Location"] == PETITION_URL


def test_a_stored_non_web_url_is_never_a_redirect(app, client, sent):
    with app.app_context():
        link = Link(campaign_id=sent["campaign"], url="javascript:alert(1)", position=5)
        db.session.add(link)
        db.session.commit()
        link_id = link.id
        db.session.remove()
    assert client.get(f"/t/c/{link_id}/{sent['click']}").status_code == 404
    flush_all(app)
    assert event_count(app) == 0


def test_the_click_needs_no_query_once_the_link_is_cached(app, client, sent):
    url = f"/t/c/{sent['petition']}/{sent['click']}"
    assert client.get(url).status_code == 302
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 302
        assert client.get(f"/t/o/{sent['token']}.gif").status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert statements == []


def test_pixel_and_click_also_answer_head_without_a_human_count(app, client, sent):
    assert client.head(f"/t/o/{sent['token']}.gif").status_code == 200
    flush_all(app)
    with app.app_context():
        delivery = db.session.get(Delivery, sent["delivery"])
        assert delivery.opened_at is not None
        assert delivery.human_opened_at is None
        db.session.remove()


def test_bench_route_is_off_unless_asked_for(client):
    assert client.get("/bench/hello").status_code == 404


def test_bench_route_with_the_flag(other_app):
    app = other_app(RALLYPOINT_BENCH="1")
    assert app.test_client().get("/bench/hello").data == b"hello"


def test_a_broken_click_link_shows_members_a_plain_page(client, sent):
    response = client.get(f"/t/c/{sent['petition']}/not-a-token")
    assert response.status_code == 404
    assert "This link doesn" in response.get_data(as_text=True)
    assert "dashboard" not in response.get_data(as_text=True)
    assert "noindex" in response.headers["X-Robots-Tag"]


def test_verify_stats_command(app, client, sent):
    client.get(f"/t/o/{sent['token']}.gif")
    client.get(f"/t/c/{sent['petition']}/{sent['click']}")
    flush_all(app)
    result = app.test_cli_runner().invoke(args=["tracking", "verify-stats", str(sent["campaign"])])
    assert result.exit_code == 0, result.output
    assert "every counter matches" in result.output
    with app.app_context():
        db.session.execute(
            sa.update(CampaignStats)
            .where(CampaignStats.campaign_id == sent["campaign"])
            .values(opens_total=CampaignStats.opens_total + 5)
        )
        db.session.commit()
        db.session.remove()
    bad = app.test_cli_runner().invoke(args=["tracking", "verify-stats", str(sent["campaign"])])
    assert bad.exit_code != 0
    assert "opens_total: stored 6, events say 1" in bad.output


def test_tokens_of_other_uses_record_nothing(app, client, sent):
    # The unsubscribe token at the pixel, the pixel's or the unsubscribe token at a link.
    assert client.get(f"/t/o/{sent['unsubscribe']}.gif").data == PIXEL
    assert client.get(f"/t/o/{sent['click']}.gif").data == PIXEL
    for token in (sent["token"], sent["unsubscribe"]):
        response = client.get(f"/t/c/{sent['petition']}/{token}")
        assert response.status_code == 404
        assert "Location" not in response.headers
    flush_all(app)
    assert event_count(app) == 0


def test_legacy_tokens_in_emails_already_sent_still_count(app, client, sent):
    from tests.services.test_tokens import legacy_token

    legacy = legacy_token(app.config["SECRET_KEY"], sent["campaign"], sent["delivery"])
    assert client.get(f"/t/o/{legacy}.gif").status_code == 200
    assert client.get(f"/t/c/{sent['petition']}/{legacy}").headers["Location"] == PETITION_URL
    flush_all(app)
    assert event_count(app, "open") == 1
    assert event_count(app, "click") == 1
