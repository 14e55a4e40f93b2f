"""Campaign pages: roles, forms with CSRF, save-time problems, previews, test sends, archive."""

from __future__ import annotations

import html
import json
import re

import pytest
import redis
import sqlalchemy as sa

from app.emails.samples import SAMPLES
from app.models import Campaign, CampaignStatus, Delivery, Event, Role
from app.services.campaigns import authoring as service
from tests import factories
from tests.support.campaigns import sample_input, setup_org
from tests.support.forms import csrf_token, submit


@pytest.fixture
def org(db_session):
    sender = setup_org(db_session)
    db_session.commit()
    return sender


@pytest.fixture
def campaign(db_session, org):
    row = service.create_campaign(
        db_session, sample_input("day_of_action", languages=("en", "fr")), actor_id=None
    )
    db_session.commit()
    return row


def _form(layout: str = "action_alert", sender_id: int | None = None, **changes: str) -> dict:
    """The edit form as a browser posts it, filled from the samples."""
    data: dict[str, object] = {
        "name": f"A {layout}",
        "layout": layout,
        "sender_id": str(sender_id or ""),
        "reply_to": "",
        "default_language": "en",
        "preview_language": "en",
    }
    for language in ("en", "fr"):
        sample = SAMPLES[layout, language]
        data[f"{language}-subject"] = sample.subject
        data[f"{language}-preheader"] = sample.preheader
        data[f"{language}-body"] = sample.body
        data[f"{language}-body_format"] = "markdown"
        for name, value in sample.fields.items():
            data[f"{language}-{name}"] = value
    data.update(changes)
    return data


def _campaign_count(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Campaign))


GET_PAGES = [
    "/campaigns",
    "/campaigns/new",
    "/campaigns/{id}",
    "/campaigns/{id}/edit",
    "/campaigns/{id}/preview",
    "/campaigns/{id}/preview/frame",
]
POST_PAGES = [
    "/campaigns/new",
    "/campaigns/preview-draft",
    "/campaigns/{id}/edit",
    "/campaigns/{id}/delete",
    "/campaigns/{id}/duplicate",
    "/campaigns/{id}/links",
    "/campaigns/{id}/test-send",
]


@pytest.mark.parametrize("path", GET_PAGES)
def test_viewers_cannot_open_campaign_pages(client, login_as, campaign, path):
    login_as(Role.VIEWER)
    assert client.get(path.format(id=campaign.id)).status_code == 403


@pytest.mark.parametrize("path", POST_PAGES)
def test_viewers_cannot_change_campaigns(client, login_as, db_session, campaign, path):
    login_as(Role.VIEWER)
    token = csrf_token(client, "/settings/tokens")  # a page a viewer may open
    response = client.post(
        path.format(id=campaign.id),
        data={**_form(name="Hijacked"), "csrf_token": token, "emails": "x@example.org"},
    )
    assert response.status_code == 403
    assert _campaign_count(db_session) == 1
    db_session.refresh(campaign)
    assert campaign.name != "Hijacked"


@pytest.mark.parametrize("path", GET_PAGES)
def test_anonymous_visitors_go_to_login(client, campaign, path):
    response = client.get(path.format(id=campaign.id))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("role", [Role.ORGANIZER, Role.ADMIN])
def test_organizers_and_admins_see_the_list(client, login_as, campaign, role):
    login_as(role)
    page = client.get("/campaigns").get_data(as_text=True)
    assert campaign.name in page
    assert "Day of action" in page
    assert "Draft" in page


def test_empty_list_invites_to_write(client, login_as):
    login_as(Role.ORGANIZER)
    page = client.get("/campaigns").get_data(as_text=True)
    assert "No campaigns yet" in page
    assert "/campaigns/new" in page


@pytest.mark.parametrize("layout", ["action_alert", "day_of_action", "statement"])
def test_organizer_writes_each_kind_with_the_form(client, login_as, db_session, org, layout):
    login_as(Role.ORGANIZER)
    response = submit(client, "/campaigns/new", _form(layout, sender_id=org.id))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    campaign = db_session.scalar(sa.select(Campaign).where(Campaign.name == f"A {layout}"))
    assert campaign is not None
    assert campaign.layout == layout
    assert {v.language for v in campaign.variants} == {"en", "fr"}
    assert response.headers["Location"].endswith(f"/campaigns/{campaign.id}")
    detail = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Send a test" in detail


def test_form_refuses_broken_templates_with_their_line_and_saves_nothing(
    client, login_as, db_session, org
):
    login_as(Role.ORGANIZER)
    body = "Hello,\n\n{{ member.first_name.__class__ }}\n"
    response = submit(
        client,
        "/campaigns/new",
        _form("statement", sender_id=org.id, **{"en-body": body, "fr-subject": "{% if x %}"}),
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page
    assert "Body (English), line 3" in page
    assert "Line 3:" in page
    assert "Subject (French), line 1" in page
    assert body.strip() in page.replace("&#34;", '"').replace("&#39;", "'")  # kept in the form
    assert _campaign_count(db_session) == 0


def test_form_without_csrf_token_is_refused(client, login_as, db_session, org):
    login_as(Role.ORGANIZER)
    response = client.post("/campaigns/new", data=_form(sender_id=org.id))
    assert response.status_code == 400
    assert _campaign_count(db_session) == 0


def test_edit_form_shows_the_saved_campaign_and_saves_changes(client, login_as, campaign, org):
    login_as(Role.ORGANIZER)
    page = client.get(f"/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert "Dec. 17: rally to bring Nadia Rahimi home" in page
    assert 'value="2025-12-17"' in page
    response = submit(
        client,
        f"/campaigns/{campaign.id}/edit",
        _form("day_of_action", sender_id=org.id, name="Renamed day"),
    )
    assert response.status_code == 302
    assert client.get(f"/campaigns/{campaign.id}").get_data(as_text=True).count("Renamed day")


def test_a_sent_campaign_cannot_be_edited(client, login_as, db_session, campaign, org):
    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    login_as(Role.ORGANIZER)
    response = client.get(f"/campaigns/{campaign.id}/edit")
    assert response.status_code == 302
    response = submit(
        client,
        f"/campaigns/{campaign.id}",
        _form("day_of_action", sender_id=org.id, name="Changed"),
        post_url=f"/campaigns/{campaign.id}/edit",
    )
    assert response.status_code == 302
    db_session.refresh(campaign)
    assert campaign.name != "Changed"


def test_live_preview_renders_the_unsaved_form(client, login_as, db_session, org):
    login_as(Role.ORGANIZER)
    data = _form("action_alert", sender_id=org.id, preview_language="fr")
    data["fr-subject"] = "Tout neuf, {{ member.first_name }}"
    response = submit(client, "/campaigns/new", data, post_url="/campaigns/preview-draft")
    assert response.status_code == 200
    body = response.get_json()
    assert body["problems"] == []
    assert body["language"] == "fr"
    assert body["subject"] == "Tout neuf, Mathieu"
    assert "<html" in body["html"]
    assert body["links"][0]["petition_default"] is True
    assert _campaign_count(db_session) == 0

    data["fr-body"] = "Un\n{{ member.pasword }}"
    body = submit(client, "/campaigns/new", data, post_url="/campaigns/preview-draft").get_json()
    assert [(p["field"], p["line"]) for p in body["problems"]] == [("fr.body", 2)]
    assert body["problems"][0]["label"] == "Body (French), line 2"
    assert "html" not in body


def test_preview_page_uses_a_sandboxed_frame_with_a_strict_policy(
    client, login_as, db_session, campaign
):
    member = factories.member(db_session, email="josee@example.org", first_name="Josée")
    member.language = "fr"
    db_session.commit()
    login_as(Role.ORGANIZER)
    page = client.get(f"/campaigns/{campaign.id}/preview?q=JOSEE").get_data(as_text=True)
    assert "josee@example.org" in page
    page = client.get(f"/campaigns/{campaign.id}/preview?member={member.id}&width=375")
    html = page.get_data(as_text=True)
    iframe = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe
    assert "allow-scripts" not in iframe
    assert "allow-same-origin" not in iframe
    assert "w-375" in iframe
    assert "French" in html
    assert "Josée" in html

    frame = client.get(f"/campaigns/{campaign.id}/preview/frame?member={member.id}")
    policy = frame.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "sandbox" in policy
    assert "script-src" not in policy  # falls back to default-src 'none': no script at all
    assert "Bonjour Josée" in frame.get_data(as_text=True)

    text = client.get(f"/campaigns/{campaign.id}/preview?member={member.id}&view=text")
    assert "Bonjour Josée" in text.get_data(as_text=True)
    assert "<iframe" not in text.get_data(as_text=True)


def test_previews_record_nothing(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    for path in ("/preview", "/preview/frame", "/preview?lang=fr&view=text"):
        assert client.get(f"/campaigns/{campaign.id}{path}").status_code == 200
    frame = client.get(f"/campaigns/{campaign.id}/preview/frame").get_data(as_text=True)
    assert "/t/o/" not in frame
    assert "/t/c/" not in frame
    for model in (Delivery, Event):
        assert db_session.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def _queued(url: str, queue: str) -> list[tuple[str, list]]:
    client = redis.Redis.from_url(url)
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        import base64

        body = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], body[0]))
    return found


def test_test_send_from_the_page_is_queued_for_the_transactional_worker(
    client, login_as, db_session, campaign, test_environ
):
    url = test_environ["REDIS_URL"]
    redis.Redis.from_url(url).delete("transactional")
    login_as(Role.ORGANIZER)
    response = submit(
        client,
        f"/campaigns/{campaign.id}",
        {"emails": "me@example.org, you@example.org", "language": "fr"},
        post_url=f"/campaigns/{campaign.id}/test-send",
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "A test is on its way to me@example.org, you@example.org" in page
    [(task, args)] = _queued(url, "transactional")
    assert task == "transactional.send"
    assert args[1]["emails"] == ["me@example.org", "you@example.org"]
    assert args[1]["language"] == "fr"
    redis.Redis.from_url(url).delete("transactional")


def test_test_send_to_too_many_addresses_is_refused(
    client, login_as, db_session, campaign, test_environ
):
    url = test_environ["REDIS_URL"]
    redis.Redis.from_url(url).delete("transactional")
    login_as(Role.ORGANIZER)
    emails = ", ".join(f"p{n}@example.org" for n in range(6))
    response = submit(
        client,
        f"/campaigns/{campaign.id}",
        {"emails": emails},
        post_url=f"/campaigns/{campaign.id}/test-send",
    )
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Test not sent" in page
    assert "5 addresses at most" in page
    assert _queued(url, "transactional") == []


def test_petition_flags_from_the_campaign_page(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    [link] = campaign.links
    assert link.is_petition is True  # the day of action's button
    page = f"/campaigns/{campaign.id}"
    submit(client, page, {}, post_url=f"/campaigns/{campaign.id}/links")
    db_session.refresh(link)
    assert link.is_petition is False
    submit(client, page, {"petition": str(link.id)}, post_url=f"/campaigns/{campaign.id}/links")
    db_session.refresh(link)
    assert link.is_petition is True


@pytest.mark.parametrize("layout", ["day_of_action", "action_alert"])
def test_the_main_button_is_ticked_before_the_first_save_and_saved_as_the_action_link(
    client, login_as, db_session, org, layout
):
    login_as(Role.ORGANIZER)
    data = _form(layout, sender_id=org.id)
    cta = SAMPLES[layout, "en"].fields["cta_url"]
    data["en-body"] += "\n\nMore: https://union.example.org/news"
    data["en-body"] += " and [the news](https://union.example.org/news)."
    live = submit(client, "/campaigns/new", data, post_url="/campaigns/preview-draft").get_json()
    ticks = {link["url"]: link["petition_default"] for link in live["links"]}
    assert [url for url, ticked in ticks.items() if ticked] == [cta]
    assert ticks["https://union.example.org/news"] is False
    # The form as the editor posts it: every link listed, the boxes it showed ticked.
    posted = {**data, "link_url": list(ticks), "petition_url": [cta]}
    assert submit(client, "/campaigns/new", posted).status_code == 302
    # Unticked by the organizer: not an action link.
    unticked = {**data, "name": "Unticked", "link_url": list(ticks)}
    assert submit(client, "/campaigns/new", unticked).status_code == 302
    flags = {
        campaign.name: {link.url: link.is_petition for link in campaign.links}
        for campaign in db_session.scalars(sa.select(Campaign))
    }
    assert flags[data["name"]] == ticks
    assert not any(flags["Unticked"].values())
    saved = db_session.scalar(sa.select(Campaign).where(Campaign.name == data["name"]))
    edit = client.get(f"/campaigns/{saved.id}/edit").get_data(as_text=True)
    shown = {
        html.unescape(url): (default, bool(checked))
        for default, url, checked in re.findall(
            r'<li data-default="(\w+)"><label class="check"><input type="hidden" '
            r'name="link_url" value="([^"]+)"><input type="checkbox" name="petition_url" '
            r'value="[^"]+" ?(checked)?>',
            edit,
        )
    }
    assert shown[cta] == ("true", True)
    assert shown["https://union.example.org/news"] == ("false", False)


def test_delete_only_drafts_and_duplicate(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    copy = submit(
        client, f"/campaigns/{campaign.id}", {}, post_url=f"/campaigns/{campaign.id}/duplicate"
    )
    assert copy.status_code == 302
    assert _campaign_count(db_session) == 2
    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    refused = submit(
        client, f"/campaigns/{campaign.id}", {}, post_url=f"/campaigns/{campaign.id}/delete"
    )
    assert "only drafts can be deleted" in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    assert _campaign_count(db_session) == 2
    draft_id = int(copy.headers["Location"].split("/")[2])
    submit(client, f"/campaigns/{draft_id}", {}, post_url=f"/campaigns/{draft_id}/delete")
    assert _campaign_count(db_session) == 1


# --- public pages --------------------------------------------------------------------------


def _archive_path(app, campaign, suffix: str = "") -> str:
    with app.test_request_context():
        url = service.archive_url(campaign)
    return url.removeprefix("http://localhost:5000") + suffix


def test_archive_is_404_until_the_campaign_goes_out(app, client, db_session, campaign):
    path = _archive_path(app, campaign)
    assert client.get(path).status_code == 404
    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Friend, on November 8" in html  # merge fields show their defaults
    assert "/t/o/" not in html
    assert "/t/c/" not in html
    assert "http://localhost:5000/mail/inert" in html  # no personal unsubscribe link
    assert "View in browser" not in html
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    french = client.get(path + "?lang=fr").get_data(as_text=True)
    assert "Bonjour à toutes et à tous" in french


def test_view_in_browser_of_a_draft_preview_leads_to_the_preview_until_it_is_sent(
    app, client, login_as, db_session, campaign
):
    """The archive is a 404 until the campaign goes out: a draft's preview links to the
    preview page instead, in the HTML and the text; once sent, to the archive."""
    login_as(Role.ORGANIZER)
    frame = client.get(f"/campaigns/{campaign.id}/preview/frame?lang=fr").get_data(as_text=True)
    preview = f"http://localhost:5000/campaigns/{campaign.id}/preview?lang=fr"
    assert f'<a href="{preview}"' in frame
    assert "/archive/" not in frame
    assert client.get(preview.removeprefix("http://localhost:5000")).status_code == 200
    page = client.get(f"/campaigns/{campaign.id}/preview?view=text").get_data(as_text=True)
    assert f"http://localhost:5000/campaigns/{campaign.id}/preview" in page
    assert "/archive/" not in page

    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    frame = client.get(f"/campaigns/{campaign.id}/preview/frame").get_data(as_text=True)
    archive = _archive_path(app, campaign)
    assert f'<a href="http://localhost:5000{archive}"' in frame
    assert client.get(archive).status_code == 200


def test_archive_refuses_forged_or_other_campaign_refs(app, client, db_session, campaign, org):
    other = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    for row in (campaign, other):
        row.status = CampaignStatus.SENT.value
    db_session.commit()
    path = _archive_path(app, campaign)
    ref = path.rsplit("-", 1)[1]
    assert client.get(f"/archive/{other.id}-{ref}").status_code == 404
    assert client.get(f"/archive/{campaign.id}").status_code == 404
    assert client.get(f"/archive/{campaign.id}-aaaaaaaaaaaa").status_code == 404
    assert client.get(f"/archive/{campaign.id}-{ref}x").status_code == 404


@pytest.mark.parametrize("status", ["draft", "scheduled"])
def test_archive_hides_campaigns_that_have_not_gone_out(app, client, db_session, campaign, status):
    campaign.status = status
    db_session.commit()
    assert client.get(_archive_path(app, campaign)).status_code == 404


def test_calendar_file_needs_the_signed_key(app, client, db_session, campaign, org):
    with app.test_request_context():
        url = service.calendar_url(campaign, "fr")
    path = url.removeprefix("http://localhost:5000")
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    body = response.get_data(as_text=True)
    assert "DTSTART:20251217T190000Z" in body  # noon in Edmonton
    assert "Journée d'action" in body
    assert client.get(f"/calendar/{campaign.id}.ics").status_code == 404
    statement = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    db_session.commit()
    with app.test_request_context():
        ref = service.campaign_ref(statement.id)
    assert client.get(f"/calendar/{statement.id}.ics?k={ref}").status_code == 404


def test_the_inert_page_is_public(client):
    response = client.get("/mail/inert")
    assert response.status_code == 200
    assert "This link works in the real email" in response.get_data(as_text=True)


def test_html_bodies_cannot_script_the_preview(client, login_as, db_session, org):
    attack = (
        '<p>Hi</p><script>alert(1)</script><img src="x" onerror="alert(2)">'
        '<a href="javascript:alert(3)">x</a><iframe src="https://evil.example"></iframe>'
    )
    login_as(Role.ORGANIZER)
    data = _form("statement", sender_id=org.id, **{"en-body": attack, "en-body_format": "html"})
    preview = submit(client, "/campaigns/new", data, post_url="/campaigns/preview-draft")
    body = preview.get_json()
    if body["problems"]:  # a refused javascript: link is reported, which is fine too
        assert body["problems"][0]["field"] == "en.body"
        data["en-body"] = attack.replace("javascript:alert(3)", "https://ok.example")
        body = submit(client, "/campaigns/new", data, post_url="/campaigns/preview-draft")
        body = body.get_json()
    html = body["html"].lower()
    for needle in ("<script", "onerror", "javascript:", "<iframe", "evil.example"):
        assert needle not in html, needle


def test_test_sends_are_rate_limited(client, login_as, db_session, campaign, test_environ):
    login_as(Role.ORGANIZER)
    token = csrf_token(client, f"/campaigns/{campaign.id}")
    statuses = [
        client.post(
            f"/campaigns/{campaign.id}/test-send",
            data={"csrf_token": token, "emails": "not an address"},
        ).status_code
        for _ in range(31)
    ]
    assert statuses[:30] == [302] * 30
    assert statuses[30] == 429


def test_a_sent_campaign_links_to_its_report_and_back(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    report = f'href="/stats/campaigns/{campaign.id}"'
    assert report not in client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)  # draft
    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    assert report in client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    page = client.get(f"/stats/campaigns/{campaign.id}").get_data(as_text=True)
    assert f'href="/campaigns/{campaign.id}"' in page


def test_a_viewer_reading_a_report_gets_no_link_to_pages_they_cannot_open(
    client, login_as, db_session, campaign
):
    campaign.status = CampaignStatus.SENT.value
    db_session.commit()
    login_as(Role.VIEWER)
    page = client.get(f"/stats/campaigns/{campaign.id}")
    assert page.status_code == 200
    assert f'href="/campaigns/{campaign.id}"' not in page.get_data(as_text=True)
