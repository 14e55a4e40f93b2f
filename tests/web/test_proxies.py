"""Client addresses behind reverse proxies: X-Forwarded-For is believed only as configured.

request.remote_addr feeds the rate limits, Apple Mail Privacy Protection detection and the
consent record of a sign-up. Behind a load balancer every request would come from the proxy's
address unless TRUSTED_PROXY_COUNT says how many proxies append to X-Forwarded-For; without
it, the header must change nothing, or anyone could dodge a rate limit or fake an Apple open.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Event
from config.settings import ConfigError, TestingConfig
from tests.support.forms import csrf_token
from tests.support.tracking import flush_all, reset_tracking, sent_campaign

APPLE = "172.224.224.5"  # in app/data/apple_mpp_egress.csv
CLIENT = "203.0.113.9"
PROXY = "10.0.0.7"


def _open_from(app, headers: dict[str, str], remote: str = PROXY) -> dict:
    reset_tracking(app)
    with app.app_context():
        data = sent_campaign(db.session, app, members=1)
        db.session.commit()
        token = data.token(0)
        campaign_id = data.campaign.id
        db.session.remove()
    client = app.test_client()
    response = client.get(
        f"/t/o/{token}.gif",
        headers={"User-Agent": "Mozilla/5.0 Thunderbird", **headers},
        environ_base={"REMOTE_ADDR": remote},
    )
    assert response.status_code == 200
    assert flush_all(app) == 1
    with app.app_context():
        event = db.session.scalars(sa.select(Event).where(Event.campaign_id == campaign_id)).one()
        seen = {"ip": event.detail["ip"], "machine": event.is_machine}
        db.session.remove()
    reset_tracking(app)
    return seen


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, committed_db):
    seen = _open_from(app, {"X-Forwarded-For": APPLE}, remote=CLIENT)
    assert seen == {"ip": CLIENT, "machine": False}  # a forged Apple address flags nothing


def test_behind_one_proxy_the_client_address_is_the_one_it_saw(other_app, committed_db):
    app = other_app(TRUSTED_PROXY_COUNT="1")
    assert _open_from(app, {"X-Forwarded-For": CLIENT}) == {"ip": CLIENT, "machine": False}
    # Apple's proxy fetched the image: the open is flagged as a machine open.
    assert _open_from(app, {"X-Forwarded-For": APPLE}) == {"ip": APPLE, "machine": True}


def test_behind_one_proxy_an_address_the_client_prepends_is_not_believed(other_app, committed_db):
    app = other_app(TRUSTED_PROXY_COUNT="1")
    # The client sent "X-Forwarded-For: <Apple>"; the proxy appended the address it saw.
    seen = _open_from(app, {"X-Forwarded-For": f"{APPLE}, {CLIENT}"})
    assert seen == {"ip": CLIENT, "machine": False}


def test_a_forged_x_forwarded_for_does_not_dodge_the_sign_up_rate_limit(client, db_session):
    from app.services.audience import lists

    public = lists.create_list(db_session, name="Solidarity news", is_public=True)
    db_session.commit()
    url = f"/subscribe/{public.slug}"
    statuses = []
    for n in range(6):
        # A new made-up address each time: with no trusted proxy it must change nothing.
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{n + 1}"
        token = csrf_token(client, url)
        response = client.post(
            url,
            data={"email": f"p{n}@example.org", "language": "en", "csrf_token": token},
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [302] * 5
    assert statuses[5] == 429


@pytest.mark.parametrize("value", ["-1", "6", "two"])
def test_a_nonsense_proxy_count_is_refused_at_start_up(test_environ, value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT"):
        TestingConfig(environ={**test_environ, "TRUSTED_PROXY_COUNT": value}).validate()
