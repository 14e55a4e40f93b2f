"""Hosted petitions over HTTP: organizer pages, the public page, signing and every abuse rule."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.infra.redis_client import get_redis
from app.infra.tokens import Scope
from app.models import Action, ActionResponse, ActionStatus, Link, Member, Role
from app.public.actions import action_cache, page_cache, ref_signer
from app.services import actions
from app.services.actions import counts, mail, public
from app.services.actions.petitions import FORM_SALT, PetitionData, embed_token, form_token
from app.services.tracking.runtime import runtime
from tests import factories
from tests.support.forms import csrf_token
from tests.support.tracking import reset_tracking

BASE = "http://localhost:5000"


@pytest.fixture
def petition(db_session, app):
    data = PetitionData(
        title="Free Amar Fayaz",
        goal=100,
        image_url="https://example.org/amar.jpg",
        fields={"postal_code": "optional", "comment": "optional"},
        versions={
            "en": {
                "headline": "Bring Amar home",
                "target": "His Excellency, the High Commissioner",
                "petition_text": "We call on you to release **Amar Fayaz**.",
                "description": "Why <script>alert(1)</script> it matters",
            },
            "fr": {"title": "Libérez Amar Fayaz", "petition_text": "Nous demandons sa libération."},
        },
    )
    action = actions.create_petition(db_session, data, owner_id=None)
    actions.transition(db_session, action, ActionStatus.OPEN)
    db_session.commit()
    with app.app_context():
        counts.forget_count(get_redis(), action.id)
    return action


_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def page_form_token(client, url):
    """The signed form token of the hosted page at `url` (the page needs no session)."""
    page = client.get(url)
    match = _FORM_TOKEN.search(page.get_data(as_text=True))
    assert match, f"no form token on {url} (status {page.status_code})"
    return match.group(1)


def _sign(client, slug, query="", headers=None, **fields):
    url = f"/a/{slug}{query}"
    data = {"first_name": "Pat", "email": "pat@example.org", **fields}
    data.setdefault("form_token", page_form_token(client, url))
    return client.post(f"/a/{slug}", data=data, headers=headers or {})


def _count(db_session, action):
    return db_session.scalar(
        sa.select(sa.func.count())
        .select_from(ActionResponse)
        .where(ActionResponse.action_id == action.id, ActionResponse.counted.is_(True))
    )


def test_public_page_is_phone_first_accessible_and_has_open_graph(client, petition):
    page = client.get(f"/a/{petition.slug}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="viewport"' in html
    assert '<meta property="og:title" content="Free Amar Fayaz">' in html
    assert 'property="og:image" content="https://example.org/amar.jpg"' in html
    assert '<label for="f-email">' in html
    assert "<strong>Amar Fayaz</strong>" in html
    assert "<script>alert" not in html
    assert 'role="progressbar"' in html
    assert "His Excellency" in html


def test_language_from_query_then_accept_language(client, petition):
    fr = client.get(f"/a/{petition.slug}?lang=fr").get_data(as_text=True)
    assert '<html lang="fr">' in fr
    assert "Libérez Amar Fayaz" in fr
    assert "Prénom" in fr
    browser = client.get(f"/a/{petition.slug}", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert "Libérez Amar Fayaz" in browser.get_data(as_text=True)
    en = client.get(f"/a/{petition.slug}", headers={"Accept-Language": "de"})
    assert '<html lang="en">' in en.get_data(as_text=True)


def test_drafts_and_unknown_slugs_are_not_public(client, db_session):
    draft = actions.create_petition(db_session, PetitionData(title="Secret plan"), owner_id=None)
    db_session.commit()
    assert client.get(f"/a/{draft.slug}").status_code == 404
    assert client.get("/a/nothing-here").status_code == 404
    assert client.get("/a/UPPER").status_code == 404


def test_signing_commits_then_thanks_with_share_links(client, petition, db_session):
    response = _sign(client, petition.slug, comment="Solidarity")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(f"/a/{petition.slug}/thanks")
    row = db_session.scalar(
        sa.select(ActionResponse).where(ActionResponse.email == "pat@example.org")
    )
    assert row.comment == "Solidarity"
    assert row.source == "direct"
    thanks = client.get(location).get_data(as_text=True)
    code = row.referral_code
    assert f"ref={code}" in thanks
    for host in ("wa.me", "facebook.com/sharer", "twitter.com/intent", "mailto:"):
        assert host in thanks


def test_hosted_form_needs_its_form_token_for_this_petition(
    client, petition, db_session, app, monkeypatch
):
    fields = {"first_name": "P", "email": "p@example.org"}
    missing = client.post(f"/a/{petition.slug}", data=fields)
    assert missing.status_code == 400
    assert "This form has expired" in missing.get_data(as_text=True)
    secret = app.config["SECRET_KEY"]
    for token in (
        form_token(secret, petition.id + 1),  # another petition's form
        embed_token(secret, petition.id),  # the embeddable snippet's token
        form_token("another-secret-key-of-another-server", petition.id),
        page_form_token(client, f"/a/{petition.slug}")[:-2] + "AA",  # forged
    ):
        answer = client.post(f"/a/{petition.slug}", data={**fields, "form_token": token})
        assert answer.status_code == 400, token
    # A page left open longer than WTF_CSRF_TIME_LIMIT (8 hours) has expired, as before.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 9 * 3600)
    stale = form_token(secret, petition.id)
    monkeypatch.undo()
    assert URLSafeTimedSerializer(secret, salt=FORM_SALT).loads(stale) == petition.id
    answer = client.post(f"/a/{petition.slug}", data={**fields, "form_token": stale})
    assert answer.status_code == 400
    assert _count(db_session, petition) == 0


def test_anonymous_page_and_signature_open_no_session(client, petition, db_session):
    page = client.get(f"/a/{petition.slug}")
    assert page.status_code == 200
    assert "Set-Cookie" not in page.headers
    assert "csrf_token" not in page.get_data(as_text=True)
    answer = _sign(client, petition.slug)
    assert answer.status_code == 303
    assert "Set-Cookie" not in answer.headers
    assert client.get_cookie("session") is None
    assert _count(db_session, petition) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.localhost"},
        {"Origin": "https://attacker.example"},  # a browser without fetch metadata
        {"Origin": "null"},  # a sandboxed frame or a data: page
    ],
    ids=["cross-site", "same-site", "foreign-origin", "null-origin"],
)
def test_cross_site_post_is_refused_with_a_clear_error(client, petition, db_session, headers):
    answer = _sign(client, petition.slug, headers=headers)  # with a good form token
    assert answer.status_code == 403
    html = answer.get_data(as_text=True)
    assert "This form was sent from another site" in html
    assert "Nothing was signed" in html
    assert _count(db_session, petition) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Origin": "http://localhost"},  # no fetch metadata: the Origin names this host
        {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},  # PUBLIC_BASE_URL is ours
        {},  # neither header: not a browser that can be made to post; the token decides
    ],
    ids=["same-origin", "own-host", "public-base-url", "no-headers"],
)
def test_same_origin_post_is_taken(client, petition, db_session, headers):
    assert _sign(client, petition.slug, headers=headers).status_code == 303
    assert _count(db_session, petition) == 1


def _fake_clock(app, monkeypatch):
    """Both per-process caches of the public page on one clock the test moves."""
    now = [1000.0]
    monkeypatch.setitem(
        app.extensions, "rallypoint.public_actions", public.PublicActionCache(lambda: now[0])
    )
    monkeypatch.setitem(
        app.extensions, "rallypoint.public_action_pages", public.PageCache(lambda: now[0])
    )
    return now


def _shown(client, slug):
    html = client.get(f"/a/{slug}").get_data(as_text=True)
    return int(re.search(r"data-count>([\d,]+)<", html).group(1).replace(",", ""))


def test_page_is_rendered_once_a_moment_and_its_count_is_at_most_that_old(
    client, petition, db_session, app, monkeypatch
):
    now = _fake_clock(app, monkeypatch)
    first = client.get(f"/a/{petition.slug}").get_data()
    assert _shown(client, petition.slug) == 0
    assert _sign(client, petition.slug).status_code == 303
    assert client.get(f"/a/{petition.slug}").get_data() == first  # the same bytes
    now[0] += public.PAGE_TTL + 0.01
    assert _shown(client, petition.slug) == 1
    # Each language has its own page.
    assert '<html lang="fr">' in client.get(f"/a/{petition.slug}?lang=fr").get_data(as_text=True)
    assert '<html lang="en">' in client.get(f"/a/{petition.slug}").get_data(as_text=True)


def test_a_share_links_page_is_its_own_and_never_the_kept_one(client, petition, db_session):
    plain = client.get(f"/a/{petition.slug}").get_data(as_text=True)  # kept for a moment
    shared = client.get(f"/a/{petition.slug}?ref=abc123&utm_source=share").get_data(as_text=True)
    assert 'name="ref" value="abc123"' in shared
    assert 'name="utm_source" value="share"' in shared
    again = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    assert again == plain
    assert 'name="ref"' not in again
    assert 'name="utm_source"' not in again


def test_closed_petition_shows_closed_within_the_snapshot_period(
    client, petition, db_session, app, monkeypatch
):
    now = _fake_clock(app, monkeypatch)
    assert "This petition is closed" not in client.get(f"/a/{petition.slug}").get_data(as_text=True)
    actions.transition(db_session, db_session.get(Action, petition.id), ActionStatus.CLOSED)
    db_session.commit()
    now[0] += public.TTL + 0.01
    page = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    assert "This petition is closed" in page
    assert 'name="form_token"' not in page


def test_honeypot_answers_as_usual_and_records_nothing(client, petition, db_session):
    answer = _sign(client, petition.slug, website="http://spam.example")
    assert answer.status_code == 302
    assert "/thanks" in answer.headers["Location"]
    assert _count(db_session, petition) == 0


def test_replayed_post_does_not_inflate_the_count(client, petition, db_session):
    url = f"/a/{petition.slug}"
    data = {
        "first_name": "Pat",
        "email": "pat@example.org",
        "form_token": page_form_token(client, url),
    }
    for _ in range(5):
        assert client.post(url, data=data).status_code == 303
    assert _count(db_session, petition) == 1


def test_bounded_fields_are_refused_with_a_clear_error_and_nothing_changes(
    client, petition, db_session
):
    answer = _sign(client, petition.slug, first_name="x" * 101)
    assert answer.status_code == 422
    assert "longer than 100" in answer.get_data(as_text=True)
    answer = _sign(client, petition.slug, email="not an address")
    assert answer.status_code == 422
    assert 'aria-invalid="true"' in answer.get_data(as_text=True)
    assert _count(db_session, petition) == 0


def test_many_signatures_from_one_address_are_flagged_not_refused(
    client, petition, db_session, app, monkeypatch
):
    monkeypatch.setitem(app.config, "ACTION_IP_FLAG_THRESHOLD", 2)
    get_redis().delete(*get_redis().keys(f"rp:actions:ip:{petition.id}:*") or ["none"])
    for n in range(4):
        assert _sign(client, petition.slug, email=f"hall{n}@example.org").status_code == 303
    rows = db_session.scalars(
        sa.select(ActionResponse)
        .where(ActionResponse.action_id == petition.id)
        .order_by(ActionResponse.id)
    ).all()
    assert [r.flagged for r in rows] == [False, False, True, True]
    assert _count(db_session, petition) == 4


def test_closed_petition_shows_a_note_and_takes_no_signature(client, petition, db_session):
    token = page_form_token(client, f"/a/{petition.slug}")
    # The request closed the session it shared: load the petition again before changing it.
    actions.transition(db_session, db_session.get(Action, petition.id), ActionStatus.CLOSED)
    db_session.commit()
    action_cache().clear()  # what another process sees within public.TTL
    page = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    assert "This petition is closed" in page
    answer = client.post(
        f"/a/{petition.slug}",
        data={"first_name": "P", "email": "p@example.org", "form_token": token},
    )
    assert answer.status_code == 302
    assert _count(db_session, petition) == 0


def test_embed_needs_its_signed_per_action_token(client, petition, db_session, app):
    fields = {"first_name": "Embed", "email": "embed@example.org"}
    assert client.post(f"/a/{petition.slug}/embed", data=fields).status_code == 400
    other = embed_token(app.config["SECRET_KEY"], petition.id + 1)
    assert (
        client.post(f"/a/{petition.slug}/embed", data={**fields, "form_token": other}).status_code
        == 400
    )
    good = embed_token(app.config["SECRET_KEY"], petition.id)
    answer = client.post(f"/a/{petition.slug}/embed", data={**fields, "form_token": good})
    assert answer.status_code == 303
    row = db_session.scalar(
        sa.select(ActionResponse).where(ActionResponse.email == "embed@example.org")
    )
    assert row.source == "embed"


def _alert(db_session, petition, app):
    member = factories.member(
        db_session, email="amelie@example.org", first_name="Amélie", last_name="Roy", language="fr"
    )
    campaign = factories.campaign(db_session)
    link = Link(campaign_id=campaign.id, url=f"{BASE}/a/{petition.slug}", is_petition=True)
    db_session.add(link)
    delivery = factories.delivery(db_session, campaign, member, local="Local 30", language="fr")
    db_session.commit()
    click = runtime(app).signer.sign(campaign.id, delivery.id, Scope.CLICK)
    return member, campaign, link, delivery, click


@pytest.fixture(autouse=True)
def _quiet_tracking(app):
    """Clicks buffer hits: drop them, so none is flushed after this test's database is gone.
    Each test's petitions are rolled back: forget the page snapshots of the last one."""
    reset_tracking(app)
    with app.app_context():
        action_cache().clear()
        page_cache().clear()
    yield
    reset_tracking(app)


def test_tracked_click_appends_a_reference_and_the_page_greets_the_member(
    client, petition, db_session, app
):
    member, campaign, link, delivery, click = _alert(db_session, petition, app)
    redirect = client.get(f"/t/c/{link.id}/{click}")
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith(f"{BASE}/a/{petition.slug}?r=")
    assert member.email not in location
    path = location[len(BASE) :]
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert "Signer en tant que Amélie R." in html
    assert "no-store" in page.headers["Cache-Control"]
    assert "Set-Cookie" not in page.headers
    # The pre-filled page is this member's alone: the page everyone else gets never greets.
    anonymous = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    assert "Amélie" not in anonymous
    assert member.email not in anonymous
    ref = parse_qs(urlsplit(location).query)["r"][0]
    # One press: the pre-filled hidden fields (the form token among them) are all it needs.
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert "form_token" in fields
    answer = client.post(f"/a/{petition.slug}", data=fields)
    assert answer.status_code == 303
    row = db_session.scalar(sa.select(ActionResponse).where(ActionResponse.email == member.email))
    assert (row.campaign_id, row.delivery_id, row.member_id, row.local) == (
        campaign.id,
        delivery.id,
        member.id,
        "Local 30",
    )
    assert row.link_id == link.id
    assert fields["r"] == ref
    # The campaign report's funnel shows the signature.
    report = actions.reports.campaign_signed(db_session, campaign.id)
    assert report.signed == 1


@pytest.mark.parametrize("kind", ["forged", "expired", "foreign", "other_campaign"])
def test_bad_references_give_the_ordinary_blank_page(client, petition, db_session, app, kind):
    member, campaign, link, delivery, _click = _alert(db_session, petition, app)
    signer = ref_signer()
    good = signer.sign(petition.slug, campaign.id, delivery.id, link.id, time.time())
    if kind == "forged":
        ref = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    elif kind == "expired":
        ref = signer.sign(petition.slug, campaign.id, delivery.id, link.id, time.time() - 3 * 3600)
    elif kind == "foreign":
        ref = signer.sign("another-petition", campaign.id, delivery.id, link.id, time.time())
    else:
        other = factories.campaign(db_session)
        db_session.commit()
        ref = signer.sign(petition.slug, other.id, delivery.id, link.id, time.time())
    page = client.get(f"/a/{petition.slug}?r={ref}").get_data(as_text=True)
    assert "Amélie" not in page
    assert member.email not in page
    assert '<label for="f-email">' in page


def test_not_you_clears_the_prefill_but_keeps_the_alert(client, petition, db_session, app):
    _member, campaign, link, delivery, _click = _alert(db_session, petition, app)
    ref = ref_signer().sign(petition.slug, campaign.id, delivery.id, link.id, time.time())
    page = client.get(f"/a/{petition.slug}?r={ref}&notme=1").get_data(as_text=True)
    assert "Amélie" not in page
    assert f'name="r" value="{ref}"' in page
    answer = _sign(client, petition.slug, f"?r={ref}&notme=1", r=ref, email="friend@example.org")
    assert answer.status_code == 303
    row = db_session.scalar(
        sa.select(ActionResponse).where(ActionResponse.email == "friend@example.org")
    )
    assert row.campaign_id == campaign.id
    assert row.member_id is None


def test_consent_box_is_unticked_and_names_the_organization(client, db_session, petition):
    lst = factories.mailing_list(db_session)
    action = db_session.get(Action, petition.id)
    data = actions.petitions.as_data(db_session, action)
    data.list_ids = [lst.id]
    actions.update_petition(db_session, action, data)
    db_session.commit()
    action_cache().clear()
    html = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    box = re.search(r'<input type="checkbox" id="f-consent"[^>]*>', html).group(0)
    assert "checked" not in box
    assert "unsubscribe at any time" in html
    _sign(client, petition.slug, consent="yes", email="joins@example.org")
    member = db_session.scalar(sa.select(Member).where(Member.email == "joins@example.org"))
    assert member.consent_basis == "express"


def test_organizer_writes_opens_and_reviews(client, login_as, db_session):
    login_as(Role.ORGANIZER)
    token = csrf_token(client, "/actions/new")
    bad = client.post("/actions/new", data={"csrf_token": token, "title": ""})
    assert bad.status_code == 422
    created = client.post(
        "/actions/new",
        data={
            "csrf_token": token,
            "title": "Stop the closure",
            "en_petition_text": "Keep the plant open.",
            "goal": "500",
            "field_postal_code": "required",
        },
    )
    assert created.status_code == 302
    action_url = created.headers["Location"]
    action_id = int(action_url.rsplit("/", 1)[1])
    assert "Draft" in client.get(action_url).get_data(as_text=True)
    opened = client.post(f"/actions/{action_id}/status", data={"csrf_token": token, "to": "open"})
    assert opened.status_code == 302
    assert client.get("/a/stop-the-closure").status_code == 200
    listing = client.get("/actions").get_data(as_text=True)
    assert "Stop the closure" in listing


def test_viewers_read_reports_but_cannot_change_or_download(client, login_as, petition):
    login_as(Role.VIEWER)
    assert client.get(f"/actions/{petition.id}").status_code == 200
    assert client.get("/actions/new").status_code == 403
    assert client.get(f"/actions/{petition.id}/signatures.csv").status_code == 403


def test_report_review_csv_and_print(client, login_as, petition, db_session, app, monkeypatch):
    monkeypatch.setitem(app.config, "ACTION_IP_FLAG_THRESHOLD", 1)
    get_redis().delete(*get_redis().keys(f"rp:actions:ip:{petition.id}:*") or ["none"])
    _sign(client, petition.slug, email="one@example.org", first_name="=cmd|' /C calc'!A0")
    _sign(client, petition.slug, email="two@example.org", first_name="Two")
    login_as(Role.ORGANIZER)
    report = client.get(f"/actions/{petition.id}").get_data(as_text=True)
    assert "Flagged for review" in report
    assert "two@example.org" in report
    flagged = db_session.scalar(
        sa.select(ActionResponse).where(ActionResponse.email == "two@example.org")
    )
    token = csrf_token(client, f"/actions/{petition.id}")
    removed = client.post(
        f"/actions/{petition.id}/responses/{flagged.id}/remove", data={"csrf_token": token}
    )
    assert removed.status_code == 302
    assert _count(db_session, petition) == 1
    csv_text = client.get(f"/actions/{petition.id}/signatures.csv").get_data(as_text=True)
    assert "'=cmd|" in csv_text
    assert "two@example.org" not in csv_text
    printed = client.get(f"/actions/{petition.id}/print").get_data(as_text=True)
    css = client.get("/static/actions.css")
    assert "@media print" in css.get_data(as_text=True)
    css.close()
    assert "His Excellency" in printed


def test_count_json_is_cached_briefly(client, petition):
    assert client.get(f"/a/{petition.slug}/count.json").get_json() == {"count": 0, "goal": 100}


def test_confirm_link_counts_only_on_the_button_press(client, db_session, petition, app):
    action = db_session.get(Action, petition.id)
    data = actions.petitions.as_data(db_session, action)
    data.require_confirmation = True
    actions.update_petition(db_session, action, data)
    db_session.commit()
    action_cache().clear()
    answer = _sign(client, petition.slug, email="confirm@example.org")
    assert "pending=1" in answer.headers["Location"]
    assert "Check your email" in client.get(answer.headers["Location"]).get_data(as_text=True)
    row = db_session.scalar(
        sa.select(ActionResponse).where(ActionResponse.email == "confirm@example.org")
    )
    assert _count(db_session, petition) == 0
    token = mail.confirm_token(app.config["SECRET_KEY"], row.id, row.email)
    url = f"/a/{petition.slug}/confirm/{token}"
    page = client.get(url)  # a link scanner fetching it confirms nothing
    assert page.status_code == 200
    assert _count(db_session, petition) == 0
    forged = client.get(f"/a/{petition.slug}/confirm/{token[:-3]}abc")
    assert forged.status_code == 404
    done = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert done.status_code == 303
    assert _count(db_session, petition) == 1
    again = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert again.status_code == 303
    assert _count(db_session, petition) == 1


def test_recent_signers_show_first_name_and_city_only_when_opted_in(client, db_session, petition):
    _sign(client, petition.slug, email="bea@example.org", first_name="Bea", last_name="Lam")
    assert "Recently signed" not in client.get(f"/a/{petition.slug}").get_data(as_text=True)
    action = db_session.get(Action, petition.id)
    data = actions.petitions.as_data(db_session, action)
    data.show_recent_signers = True
    data.fields = {**data.fields, "city": "optional"}
    actions.update_petition(db_session, action, data)
    db_session.commit()
    action_cache().clear()
    _sign(
        client,
        petition.slug,
        email="cy@example.org",
        first_name="Cy",
        last_name="Roe",
        city="Edmonton",
    )
    page_cache().clear()  # the page a moment later (public.PAGE_TTL): Cy has signed since
    page = client.get(f"/a/{petition.slug}").get_data(as_text=True)
    assert "Recently signed" in page
    assert "<li>Cy, Edmonton</li>" in page
    assert "<li>Bea</li>" in page
    assert "Lam" not in page
    assert "Roe" not in page


def test_organizer_edits_a_petition_and_bad_input_changes_nothing(
    client, login_as, db_session, petition
):
    login_as(Role.ORGANIZER)
    url = f"/actions/{petition.id}/edit"
    form = client.get(url).get_data(as_text=True)
    assert 'value="Free Amar Fayaz"' in form
    token = csrf_token(client, url)
    bad = client.post(url, data={"csrf_token": token, "title": "Free Amar", "slug": "Not A Slug"})
    assert bad.status_code == 422
    assert "a-z, 0-9 and dashes" in bad.get_data(as_text=True)
    assert db_session.get(Action, petition.id).title == "Free Amar Fayaz"
    good = client.post(
        url,
        data={
            "csrf_token": token,
            "title": "Free Amar Fayaz now",
            "slug": petition.slug,
            "goal": "1,000",
            "en_petition_text": "Release him.",
            "fr_petition_text": "Libérez-le.",
        },
    )
    assert good.status_code == 302
    db_session.expire_all()
    changed = db_session.get(Action, petition.id)
    assert (changed.title, changed.goal) == ("Free Amar Fayaz now", 1000)
    assert changed.version("fr").petition_text == "Libérez-le."
    # This process shows the change at once (other processes within public.TTL).
    assert "Release him." in client.get(f"/a/{petition.slug}").get_data(as_text=True)
