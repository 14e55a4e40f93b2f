"""Only ASCII digits are a number: "²" (str.isdigit() says yes, int() says no) was a 500.

The webhook timestamp has its own test (tests/web/test_webhook_replays.py); these are the
web pages that read a number from the query string or a form.
"""

from __future__ import annotations

import pytest

from app.models import Role, Subscription
from tests import factories
from tests.support.forms import csrf_token
from tests.support.tracking import sent_campaign

ODD = ["²", "١٧", "１", "99999999999999999999", "0", "-1"]


@pytest.mark.parametrize("page", ODD)
def test_page_numbers_must_be_ascii_digits(client, login_as, db_session, app, page):
    login_as(Role.VIEWER)
    data = sent_campaign(db_session, app, members=1)
    db_session.commit()
    assert client.get(f"/stats?page={page}").status_code == 404
    problems = f"/campaigns/{data.campaign.id}/problems?kind=bounced&page={page}"
    assert client.get(problems).status_code == 404


@pytest.mark.parametrize("value", ["²", "١"])
def test_a_preselected_list_of_other_digits_is_ignored(client, login_as, value):
    login_as(Role.ORGANIZER)
    assert client.get(f"/members/new?list_id={value}").status_code == 200


@pytest.mark.parametrize("value", ["²", "١"])
def test_leaving_a_list_of_other_digits_is_a_404(client, login_as, db_session, value):
    login_as(Role.ORGANIZER)
    member = factories.member(db_session)
    lst = factories.mailing_list(db_session)
    factories.subscribe(db_session, member, lst)
    db_session.commit()
    url = f"/members/{member.id}"
    response = client.post(
        f"/members/{member.id}/unsubscribe",
        data={"csrf_token": csrf_token(client, url), "list_id": value},
    )
    assert response.status_code == 404
    db_session.expire_all()
    assert db_session.get(Subscription, (member.id, lst.id)).status == "subscribed"


def test_the_preference_centre_ignores_other_digits(client, db_session, app):
    data = sent_campaign(db_session, app, members=1)
    db_session.commit()
    response = client.post(
        f"/u/{data.unsubscribe_token(0)}",
        data={"action": "preferences", "keep": ["²", str(data.lists[0].id)]},
    )
    assert response.status_code == 200
