"""`/u/<token>`: GET never unsubscribes; one-click POST does at once; the page's choices apply."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from app.models import (
    CampaignStats,
    Delivery,
    DeliveryStatus,
    Event,
    Subscription,
    SubscriptionStatus,
)
from app.services.tracking import hits as tracking
from tests import factories
from tests.support.tracking import sent_campaign


@pytest.fixture
def setup(db_session, app):
    data = sent_campaign(db_session, app, members=2)
    member = data.members[0]
    other_list = factories.mailing_list(db_session, name="Chapter 12 news")
    factories.subscribe(db_session, member, other_list)
    # A second campaign to the same list, still queued for this member.
    later = factories.campaign(db_session, lists=data.lists, status="sending")
    queued = factories.delivery(db_session, later, member)
    db_session.commit()
    return data, other_list, queued


def _status(db_session, member_id, list_id):
    db_session.expire_all()
    return db_session.get(Subscription, (member_id, list_id)).status


def _unsubscribes(db_session, campaign_id):
    row = db_session.get(CampaignStats, campaign_id)
    return row.unsubscribes if row else 0


def test_get_shows_the_page_and_changes_nothing(client, db_session, setup):
    data, _other_list, queued = setup
    response = client.get(f"/u/{data.unsubscribe_token(0)}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Unsubscribe" in page
    assert data.lists[0].name in page
    assert "Chapter 12 news" in page
    assert 'name="csrf_token"' not in page  # no session: the token is the capability
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert "Set-Cookie" not in response.headers
    assert client.head(f"/u/{data.unsubscribe_token(0)}").status_code == 200
    assert _status(db_session, data.members[0].id, data.lists[0].id) == "subscribed"
    assert db_session.get(Delivery, queued.id).status == DeliveryStatus.QUEUED.value
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0


def test_page_speaks_french_to_french_members(client, db_session, setup):
    data, _, _ = setup
    data.members[1].language = "fr"
    db_session.commit()
    page = client.get(f"/u/{data.unsubscribe_token(1)}").get_data(as_text=True)
    assert 'lang="fr"' in page
    assert "Me désabonner" in page


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_at_once_without_redirect(client, db_session, setup, encoding):
    data, other_list, queued = setup
    url = f"/u/{data.unsubscribe_token(0)}"
    if encoding == "urlencoded":
        response = client.post(
            url,
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = client.post(
            url, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        )
    assert response.status_code == 200
    assert "Location" not in response.headers
    member_id = data.members[0].id
    assert _status(db_session, member_id, data.lists[0].id) == "unsubscribed"
    assert (
        _status(db_session, member_id, other_list.id) == "subscribed"
    )  # only the campaign's lists
    sub = db_session.get(Subscription, (member_id, data.lists[0].id))
    assert sub.unsubscribe_source == "one_click"
    assert db_session.get(Delivery, queued.id).status == DeliveryStatus.SKIPPED.value
    assert _unsubscribes(db_session, data.campaign.id) == 1

    again = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert _unsubscribes(db_session, data.campaign.id) == 1  # once per delivery
    events = db_session.scalars(sa.select(Event).where(Event.kind == "unsubscribe")).all()
    assert len(events) == 2
    assert events[0].detail["source"] == "one_click"


def test_one_click_needs_no_cookie_or_csrf_even_with_a_stray_cookie(client, db_session, setup):
    data, _, _ = setup
    client.set_cookie("session", "garbage")
    response = client.post(
        f"/u/{data.unsubscribe_token(0)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200


def test_page_button_leaves_the_campaign_lists(client, db_session, setup):
    data, other_list, _ = setup
    response = client.post(f"/u/{data.unsubscribe_token(0)}", data={"action": "unsubscribe"})
    assert response.status_code == 200
    assert "You're unsubscribed" in html.unescape(response.get_data(as_text=True))
    member_id = data.members[0].id
    assert _status(db_session, member_id, data.lists[0].id) == "unsubscribed"
    assert _status(db_session, member_id, other_list.id) == "subscribed"
    assert db_session.get(Subscription, (member_id, data.lists[0].id)).unsubscribe_source == "link"


def test_preference_centre_leaves_only_the_unticked_lists(client, db_session, setup):
    data, other_list, _ = setup
    member_id = data.members[0].id
    response = client.post(
        f"/u/{data.unsubscribe_token(0)}",
        data={"action": "preferences", "keep": [str(data.lists[0].id)]},
    )
    assert response.status_code == 200
    assert _status(db_session, member_id, data.lists[0].id) == "subscribed"
    assert _status(db_session, member_id, other_list.id) == "unsubscribed"


def test_preference_centre_everything(client, db_session, setup):
    data, _other_list, _ = setup
    client.post(f"/u/{data.unsubscribe_token(0)}", data={"action": "all"})
    member_id = data.members[0].id
    statuses = db_session.scalars(
        sa.select(Subscription.status).where(Subscription.member_id == member_id)
    )
    assert set(statuses) == {SubscriptionStatus.UNSUBSCRIBED.value}


def test_unknown_form_and_forged_tokens_change_nothing(client, db_session, setup):
    data, _, _ = setup
    assert (
        client.post(f"/u/{data.unsubscribe_token(0)}", data={"action": "nope"}).status_code == 400
    )
    assert client.post(f"/u/{data.unsubscribe_token(0)}", data={}).status_code == 400
    forged = data.unsubscribe_token(0)[:-2] + "AA"
    assert client.get(f"/u/{forged}").status_code == 404
    assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert (
        client.post(
            f"/u/{data.unsubscribe_token(0)[:-1]}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 404
    )
    assert _status(db_session, data.members[0].id, data.lists[0].id) == "subscribed"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Event)) == 0


def test_record_unsubscribe_counts_a_delivery_once(db_session, setup):
    data, _, _ = setup
    from app.models import UnsubscribeSource

    for _ in range(3):
        tracking.record_unsubscribe(
            db_session, data.deliveries[1].id, list_ids=None, source=UnsubscribeSource.LINK
        )
    assert _unsubscribes(db_session, data.campaign.id) == 1
    assert db_session.get(Delivery, data.deliveries[1].id).unsubscribed_at is not None


def test_leaving_lists_already_left_touches_no_other_list(client, db_session, setup):
    data, other_list, _ = setup
    member_id = data.members[0].id
    client.post(f"/u/{data.unsubscribe_token(0)}", data={"action": "unsubscribe"})
    page = client.get(f"/u/{data.unsubscribe_token(0)}").get_data(as_text=True)
    assert 'data-test="unsubscribe"' not in page  # nothing left to leave for this campaign
    client.post(f"/u/{data.unsubscribe_token(0)}", data={"action": "unsubscribe"})
    assert _status(db_session, member_id, other_list.id) == "subscribed"


def test_a_campaign_without_lists_unsubscribes_from_everything(client, db_session, app):
    from app.models import campaign_lists

    data = sent_campaign(db_session, app, members=1)
    db_session.execute(
        sa.delete(campaign_lists).where(campaign_lists.c.campaign_id == data.campaign.id)
    )  # sent to a segment, not to lists
    db_session.commit()
    response = client.post(
        f"/u/{data.unsubscribe_token(0)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert _status(db_session, data.members[0].id, data.lists[0].id) == "unsubscribed"
