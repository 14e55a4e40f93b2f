"""One-click unsubscribe can be tried on http://localhost in development, never in production."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.emails.headers import list_unsubscribe_headers
from app.models import Role, Subscription
from app.services import sending
from app.services.sending import SendContext
from config.settings import DevelopmentConfig, ProductionConfig, TestingConfig
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)

PROD_ENV = {"SECRET_KEY": "x" * 40, "DATABASE_URL": "postgresql://db/rp"}


def test_the_header_takes_http_only_when_asked():
    with pytest.raises(ValueError, match="https"):
        list_unsubscribe_headers("http://localhost:5000/u/abc")
    headers = list_unsubscribe_headers("http://localhost:5000/u/abc", allow_http=True)
    assert headers["List-Unsubscribe"] == "<http://localhost:5000/u/abc>"
    with pytest.raises(ValueError, match="https URL"):
        list_unsubscribe_headers("ftp://localhost/u/abc", allow_http=True)


def test_only_development_and_tests_send_one_click_headers_over_http():
    http = {"PUBLIC_BASE_URL": "http://localhost:5000"}
    assert DevelopmentConfig(environ=http).to_dict()["ONE_CLICK_OVER_HTTP"] is True
    assert TestingConfig(environ=http).to_dict()["ONE_CLICK_OVER_HTTP"] is True
    production = ProductionConfig(environ={**PROD_ENV, **http, "ONE_CLICK_OVER_HTTP": "1"})
    assert production.to_dict()["ONE_CLICK_OVER_HTTP"] is False


@pytest.fixture
def outbox(test_environ) -> Iterator[Path]:
    """The session's outbox, emptied before and after (other tests count the files in it)."""
    directory = Path(test_environ["OUTBOX_DIR"])
    for old in directory.glob("*.eml"):
        old.unlink()
    yield directory
    for written in directory.glob("*.eml"):
        written.unlink()


def test_a_member_unsubscribes_in_one_click_from_the_development_inbox(
    app, db_session, client, login_as, outbox, test_environ
):
    clear_sending_keys(test_environ["REDIS_URL"])
    setup_org(db_session)
    members = make_list(db_session)
    [email] = add_members(db_session, 1, members.id, french_every=1000)
    campaign = make_campaign(db_session, [members], languages=("en",))
    sending.send_now(db_session, campaign)
    frozen = sending.freeze_audience(db_session, campaign.id)
    db_session.commit()
    context = SendContext.from_app()  # the app's settings: http://localhost:5000, outbox
    for batch in frozen.batches:
        sending.send_batch(db_session, campaign.id, batch, context=context)

    [eml] = outbox.glob("*.eml")
    mail = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert re.fullmatch(r"<http://localhost:5000/u/[^<>\s]+>", str(mail["List-Unsubscribe"]))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    login_as(Role.ORGANIZER)
    assert "one-click unsubscribe headers" in client.get("/dev/outbox").get_data(as_text=True)
    page = client.get(f"/dev/outbox/{eml.name}").get_data(as_text=True)
    url = str(mail["List-Unsubscribe"]).strip("<>")
    assert f'action="{url}"' in page
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page

    mail_client = app.test_client()  # a mail client: no session cookie, no CSRF token
    answer = mail_client.post(
        url.removeprefix("http://localhost:5000"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "Unsubscribed.\n")
    status = db_session.scalar(
        sa.select(Subscription.status).where(Subscription.list_id == members.id)
    )
    assert status == "unsubscribed", email
