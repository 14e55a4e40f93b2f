"""Saved campaigns render through skeleton_for: every layout x language, tracked and not."""

from __future__ import annotations

import re

import pytest

from app.emails.samples import SAMPLE_RECIPIENTS, SAMPLES
from app.services.campaigns import authoring as service
from tests.support.campaigns import sample_input, setup_org

BASE = "http://localhost:5000"  # PUBLIC_BASE_URL of the test environment


@pytest.fixture
def org(db_session):
    return setup_org(db_session)


def _campaign(db_session, layout: str):
    return service.create_campaign(
        db_session, sample_input(layout, languages=("en", "fr")), actor_id=None
    )


@pytest.mark.parametrize("key", sorted(SAMPLES), ids="{0[0]}.{0[1]}".format)
def test_tracked_email_for_each_layout_and_language(db_session, org, key):
    layout, language = key
    campaign = _campaign(db_session, layout)
    skeleton = service.skeleton_for(db_session, campaign, language, tracking=True)
    email = skeleton.personalize(SAMPLE_RECIPIENTS[language])

    assert email.subject == email.subject.strip()
    assert "-rp" not in email.subject
    assert "-rp" not in email.html + email.text, "every placeholder is filled"
    assert SAMPLE_RECIPIENTS[language].first_name in email.html
    # Every link of the campaign is tracked through its own Link row, and no other address
    # in the body escapes tracking.
    ids = {str(link.id) for link in campaign.links}
    tracked = set(re.findall(rf"{re.escape(BASE)}/t/c/(\d+)/click", email.html))
    assert tracked
    assert tracked <= ids
    body_links = re.findall(r'href="(https?://[^"]+)"', email.html)
    untracked = [
        url
        for url in body_links
        if not url.startswith(f"{BASE}/t/c/")
        and not url.startswith(f"{BASE}/archive/")
        and not url.startswith(f"{BASE}/calendar/")
        and "t.prairieworkers.example/" not in url  # the sample's own unsubscribe links
    ]
    assert untracked == []
    assert f"{BASE}/t/o/open" in email.html  # the open pixel
    assert SAMPLE_RECIPIENTS[language].unsubscribe_url in email.html
    archive = service.archive_url(campaign, language)
    assert archive in email.html.replace("&amp;", "&")
    assert ("?lang=fr" in archive) == (language == "fr")
    calendar = service.calendar_url(campaign, language)
    assert (calendar is not None) == (layout == "day_of_action")
    if calendar:
        assert calendar in email.html.replace("&amp;", "&")
        assert calendar in email.text
    assert f'lang="{language}"' in email.html


@pytest.mark.parametrize("key", sorted(SAMPLES), ids="{0[0]}.{0[1]}".format)
def test_untracked_email_has_plain_links_and_no_pixel(db_session, org, key):
    layout, language = key
    campaign = _campaign(db_session, layout)
    skeleton = service.skeleton_for(db_session, campaign, language, tracking=False)
    email = skeleton.personalize(SAMPLE_RECIPIENTS[language])
    assert "/t/c/" not in email.html
    assert "/t/o/" not in email.html
    assert f"{BASE}/mail/inert" in email.html
    for link in campaign.links:
        if link.url in SAMPLES[layout, language].body or link.url in str(
            SAMPLES[layout, language].fields
        ):
            assert link.url.replace("&", "&amp;") in email.html


def test_a_member_gets_their_language_else_the_default(db_session, org):
    english_only = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    skeleton = service.skeleton_for(db_session, english_only, "fr", tracking=True)
    assert 'lang="en"' in skeleton.html
