"""Previews and test sends: the real pipeline, untracked, and nothing recorded."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from app import jobs
from app.models import Delivery, Event, OrgSettings
from app.services.campaigns import authoring as service
from app.services.campaigns import previews
from app.services.campaigns.authoring import CampaignInvalid
from app.services.sending import transactional
from app.services.transports import get_transport
from tests import factories
from tests.support.campaigns import sample_input, setup_org, variant


@pytest.fixture
def org(db_session):
    return setup_org(db_session)


def _nothing_recorded(session) -> bool:
    deliveries = session.scalar(sa.select(sa.func.count()).select_from(Delivery))
    events = session.scalar(sa.select(sa.func.count()).select_from(Event))
    return deliveries == 0 and events == 0


def test_preview_as_a_french_member_shows_the_french_variant(db_session, org):
    campaign = service.create_campaign(
        db_session, sample_input("day_of_action", languages=("en", "fr")), actor_id=None
    )
    member = factories.member(db_session, first_name="Josée", language="fr", local="Section 12")
    shown = previews.preview_campaign(db_session, campaign, member=member)
    assert shown.language == "fr"
    assert "Josée" in shown.html
    assert "Josée" in shown.text
    assert "Journée d'action" in shown.html
    assert "/t/c/" not in shown.html
    assert "/t/o/" not in shown.html
    assert member.email in shown.recipient_label
    assert _nothing_recorded(db_session)


def test_preview_as_a_sample_member_and_the_default_fallback(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    shown = previews.preview_campaign(db_session, campaign, language="fr")
    assert shown.language == "en"  # no French version: the default
    assert shown.recipient_label == "a sample French-speaking member"
    member = factories.member(db_session, first_name="", language="en")
    anonymous = previews.preview_campaign(db_session, campaign, member=member)
    assert "Friend," in anonymous.text  # the merge default


def test_preview_without_identity_shows_placeholders_and_says_so(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    db_session.get(OrgSettings, 1).contact = ""
    db_session.flush()
    shown = previews.preview_campaign(db_session, campaign)
    assert "Settings → Organization" in shown.notes[0]
    assert "Your organization" in shown.html


def test_live_preview_renders_unsaved_input_and_saves_nothing(db_session, org):
    data = sample_input(
        "action_alert",
        languages=("en", "fr"),
        variants={
            "en": variant("action_alert", "en"),
            "fr": variant("action_alert", "fr", subject="Nouveau sujet {{ member.first_name }}"),
        },
    )
    result = previews.preview_input(db_session, data, language="fr")
    assert result.problems == []
    assert result.preview is not None
    assert result.preview.subject == "Nouveau sujet Mathieu"
    assert result.links[0] == variant("action_alert", "en").fields["cta_url"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(service.Campaign)) == 0


def test_live_preview_reports_problems_with_lines(db_session, org):
    broken = variant("statement", "en", body="Line one\n\n{{ member.password }}")
    result = previews.preview_input(
        db_session, sample_input("statement", variants={"en": broken}), language="en"
    )
    assert result.preview is None
    assert [(p.field, p.line) for p in result.problems] == [("en.body", 3)]


def test_member_search_is_a_prefix_match_and_escapes_wildcards(db_session):
    factories.member(db_session, email="marie.tremblay@example.org")
    factories.member(db_session, email="marc@example.org")
    found = previews.find_members(db_session, "MAR")
    assert [m.email for m in found] == ["marc@example.org", "marie.tremblay@example.org"]
    assert previews.find_members(db_session, "%") == []
    assert previews.find_members(db_session, "m_r") == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "at least one"),
        ("a@example.org, not-an-address", "not a valid email"),
        ("a@x.org b@x.org c@x.org d@x.org e@x.org f@x.org", "5 addresses at most"),
    ],
)
def test_test_send_addresses_are_checked(db_session, org, raw, message):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    with pytest.raises(CampaignInvalid, match=message):
        previews.request_test_send(db_session, campaign, raw)
    assert jobs.pending_jobs(db_session) == []


def test_test_send_is_queued_on_the_transactional_queue(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    sent_to = previews.request_test_send(
        db_session, campaign, "Ana@Example.org; bo@example.org\nana@example.org"
    )
    assert sent_to == ["ana@example.org", "bo@example.org"]
    [job] = jobs.pending_jobs(db_session)
    assert job.name == jobs.SEND_TRANSACTIONAL
    assert job.args == (
        previews.TEST_SEND_KIND,
        {"campaign_id": campaign.id, "emails": sent_to, "language": None, "member_id": None},
    )
    assert job.name.startswith("transactional.")  # routed to the transactional queue


def test_test_send_needs_a_complete_identity(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    db_session.get(OrgSettings, 1).organization = ""
    db_session.flush()
    with pytest.raises(CampaignInvalid, match="Organization"):
        previews.request_test_send(db_session, campaign, "a@example.org")


def test_test_send_writes_test_messages_without_tracking(db_session, org, tmp_path):
    campaign = service.create_campaign(
        db_session, sample_input("day_of_action", languages=("en", "fr")), actor_id=None
    )
    factories.member(db_session, email="mathieu@example.org", first_name="Mathieu", language="fr")
    transport = get_transport({"MAIL_TRANSPORT": "outbox", "OUTBOX_DIR": str(tmp_path)})
    sent = transactional.deliver(
        db_session,
        transport,
        previews.TEST_SEND_KIND,
        {"campaign_id": campaign.id, "emails": ["mathieu@example.org", "new@example.org"]},
    )
    assert sent == 2
    messages = {
        m["To"]: m
        for m in (
            message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in tmp_path.glob("*.eml")
        )
    }
    assert set(messages) == {"mathieu@example.org", "new@example.org"}
    french, english = messages["mathieu@example.org"], messages["new@example.org"]
    assert french["Subject"].startswith("[TEST] 17 décembre")
    assert english["Subject"].startswith("[TEST] Dec. 17")
    for message in (french, english):
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert "/t/c/" not in html + text
        assert "/t/o/" not in html
        assert "-rp" not in html + text
        assert message["From"] == "Prairie Workers <alerts@prairieworkers.example>"
    assert "Bonjour Mathieu" in french.get_body(("plain",)).get_content()
    assert "Friend, on November 8" in english.get_body(("plain",)).get_content()
    assert _nothing_recorded(db_session)


def test_test_send_of_a_deleted_campaign_sends_nothing(db_session, org, tmp_path):
    transport = get_transport({"MAIL_TRANSPORT": "outbox", "OUTBOX_DIR": str(tmp_path)})
    assert previews.send_test(db_session, transport, campaign_id=987654, emails=["a@x.org"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_unknown_transactional_kinds_are_refused(db_session, tmp_path):
    transport = get_transport({"MAIL_TRANSPORT": "outbox", "OUTBOX_DIR": str(tmp_path)})
    with pytest.raises(transactional.UnknownKind):
        transactional.deliver(db_session, transport, "nope", {})
