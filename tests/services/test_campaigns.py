"""Campaign service: save-time checks with lines, transitions, links, delete and duplicate."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.models import (
    TRANSITIONS,
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Link,
    OrgSettings,
    campaign_lists,
)
from app.models.base import utcnow
from app.services.campaigns import authoring as service
from app.services.campaigns.authoring import (
    CampaignConflict,
    CampaignInvalid,
    TransitionRefused,
)
from app.services.stats import counters as stats
from app.services.tracking.hits import CLICK, Hit, record_hits
from tests import factories
from tests.support.campaigns import SENDER, sample_input, setup_org, variant


@pytest.fixture
def org(db_session):
    return setup_org(db_session)


def _count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def _body(*lines: str) -> str:
    return "\n".join(lines)


def _refused(session, body: str, **variant_changes: object) -> list:
    before = _count(session, Campaign)
    changed = variant("statement", "en", body=body, **variant_changes)
    data = sample_input("statement", variants={"en": changed})
    with pytest.raises(CampaignInvalid) as caught:
        service.create_campaign(session, data, actor_id=None)
    assert _count(session, Campaign) == before, "a refused save must create nothing"
    return caught.value.problems


# --- creating ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["action_alert", "day_of_action", "statement"])
def test_each_layout_saves_in_both_languages(db_session, org, layout):
    campaign = service.create_campaign(
        db_session, sample_input(layout, languages=("en", "fr")), actor_id=None
    )
    assert campaign.status == CampaignStatus.DRAFT
    assert {v.language for v in campaign.variants} == {"en", "fr"}
    assert campaign.from_name == "Prairie Workers"
    assert [link.position for link in campaign.links] == list(range(len(campaign.links)))
    assert campaign.links, "the samples all have links"


def test_action_alert_button_is_a_petition_by_default(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("action_alert"), actor_id=None)
    cta = variant("action_alert", "en").fields["cta_url"]
    flags = {link.url: link.is_petition for link in campaign.links}
    assert flags[cta] is True
    assert not any(flag for url, flag in flags.items() if url != cta)
    assert campaign.links[0].url == cta  # the button comes first


def test_day_of_action_button_is_the_action_link_unless_the_organizer_unticks_it(db_session, org):
    """Whatever the layout, the main button's link counts as the petition (action) link from
    the first save: a click on it is a petition click, with no box to tick afterwards."""
    cta = variant("day_of_action", "en").fields["cta_url"]
    plain = service.create_campaign(db_session, sample_input("day_of_action"), actor_id=None)
    assert [link.url for link in plain.links if link.is_petition] == [cta]
    unticked = service.create_campaign(
        db_session, sample_input("day_of_action", petition_flags={cta: False}), actor_id=None
    )
    assert not any(link.is_petition for link in unticked.links)

    plain.status = "sent"
    member = factories.member(db_session)
    delivery = factories.delivery(db_session, plain, member, status="sent", sent_at=utcnow())
    button = next(link for link in plain.links if link.url == cta)
    hit = Hit("h.button", CLICK, plain.id, delivery.id, button.id, time.time(), "", "", False)
    record_hits(db_session, [hit])
    assert stats.stored_stats(db_session, plain.id).campaign["petition_clicks_unique"] == 1


def test_blank_translation_is_dropped_and_shared_fields_are_inherited(db_session, org):
    fr = variant("day_of_action", "fr")
    fr_fields = {k: v for k, v in fr.fields.items() if k not in service.SHARED_FIELDS}
    data = sample_input(
        "day_of_action",
        variants={
            "en": variant("day_of_action", "en"),
            "fr": variant("day_of_action", "fr", fields=fr_fields),
        },
    )
    campaign = service.create_campaign(db_session, data, actor_id=None)
    by_lang = {v.language: v for v in campaign.variants}
    assert by_lang["fr"].fields["event_date"] == "2025-12-17"
    assert by_lang["fr"].fields["timezone"] == "America/Edmonton"

    blank = sample_input(
        "statement",
        variants={"en": variant("statement", "en"), "fr": service.VariantInput(fields={})},
    )
    only_en = service.create_campaign(db_session, blank, actor_id=None)
    assert [v.language for v in only_en.variants] == ["en"]


# --- save-time refusals ---------------------------------------------------------------------


def test_syntax_error_is_refused_with_its_line(db_session, org):
    problems = _refused(db_session, _body("Hello,", "", "Dear {{ member.first_name | }},", "Bye"))
    assert [(p.field, p.line) for p in problems] == [("en.body", 3)]


def test_unclosed_block_is_refused_with_a_line(db_session, org):
    problems = _refused(db_session, _body("Hi", "{% if member.first_name %}", "x"))
    assert problems[0].field == "en.body"
    assert problems[0].line is not None


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ member.__class__ }}",
        "{{ member.first_name.__class__.__base__ }}",
        "{{ member|attr('__class__') }}",
        "{{ '{0.__class__}'.format(member) }}",
        "{{ 'a'.format_map }}",
        "{{ member.first_name.format }}",
        "{% for i in range(100000) %}x{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ 2 ** 1000000 }}",
        "{% include '/etc/passwd' %}",
        "{% set x = lipsum %}{{ x }}",
        "{{ self._TemplateReference__context }}",
        "{{ config }}",
        "{{ request.environ }}",
        "{{ member.first_name | xmlattr }}",
    ],
)
def test_sandbox_escapes_are_refused_at_save_with_their_line(db_session, org, escape):
    problems = _refused(db_session, _body("Friends,", "", escape, "", "Thanks"))
    assert problems, escape
    assert all(p.field == "en.body" for p in problems)
    assert problems[0].line == 3


def test_escape_in_a_subject_or_headline_is_refused_per_field(db_session, org):
    problems = _refused(
        db_session,
        "Plain body",
        subject="{{ ''.__class__ }}",
        fields={"headline": "Hi {{ member.__dict__ }}"},
    )
    fields = {p.field for p in problems}
    assert fields == {"en.subject", "en.headline"}
    assert all(p.line == 1 for p in problems)


def test_unknown_merge_field_is_refused(db_session, org):
    problems = _refused(db_session, _body("Hi", "{{ member.shoe_size }}"))
    assert problems[0].line == 2
    assert "member.shoe_size" in problems[0].message


def test_custom_attributes_must_be_ones_members_have(db_session, org):
    problems = _refused(db_session, "Your shop: {{ member.attributes.zz_never_seen_key }}")
    assert "Unknown custom attribute 'zz_never_seen_key'" in problems[0].message
    # A member gets the attribute (an import, say): the next save accepts it at once,
    # though the attribute keys were cached a moment ago.
    factories.member(db_session, attributes={"zz_never_seen_key": "Bay 4"})
    data = sample_input(
        "statement",
        variants={
            "en": variant("statement", "en", body="Shop: {{ member.attributes.zz_never_seen_key }}")
        },
    )
    campaign = service.create_campaign(db_session, data, actor_id=None)
    assert campaign.id


def test_sender_must_be_allowed_and_reply_to_valid(db_session, org):
    data = sample_input(from_email="someone@elsewhere.example", reply_to="not an address")
    with pytest.raises(CampaignInvalid) as caught:
        service.create_campaign(db_session, data, actor_id=None)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"from_email", "reply_to"}
    assert _count(db_session, Campaign) == 0


def test_no_sender_configured_says_what_to_do(db_session):
    with pytest.raises(CampaignInvalid) as caught:
        service.create_campaign(db_session, sample_input(), actor_id=None)
    assert "Settings" in caught.value.problems[0].message


def test_missing_fields_and_unknown_lists_are_reported_together(db_session, org):
    data = sample_input(
        name="",
        list_ids=(999_999,),
        variants={"en": variant("action_alert", "en", subject="", fields={"headline": "H"})},
    )
    with pytest.raises(CampaignInvalid) as caught:
        service.create_campaign(db_session, data, actor_id=None)
    fields = {p.field for p in caught.value.problems}
    assert {"name", "list_ids", "en.subject", "en.cta_label", "en.cta_url"} <= fields


# --- updating, deleting, duplicating -------------------------------------------------------


def test_invalid_update_changes_nothing(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    db_session.commit()
    before = (campaign.updated_at, campaign.variants[0].body)
    broken = sample_input(
        "statement", variants={"en": variant("statement", "en", body="{{ member.first_name")}
    )
    with pytest.raises(CampaignInvalid):
        service.update_campaign(db_session, campaign, broken)
    db_session.rollback()
    db_session.refresh(campaign)
    assert (campaign.updated_at, campaign.variants[0].body) == before


@pytest.mark.parametrize("status", ["sending", "paused", "sent", "cancelled", "failed"])
def test_only_drafts_and_scheduled_campaigns_can_be_edited(db_session, org, status):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    campaign.status = status
    db_session.flush()
    with pytest.raises(CampaignConflict):
        service.update_campaign(db_session, campaign, sample_input(name="New name"))


def test_a_scheduled_campaign_must_stay_sendable(db_session, org):
    lst = factories.mailing_list(db_session)
    campaign = service.create_campaign(db_session, sample_input(list_ids=(lst.id,)), actor_id=None)
    service.transition(db_session, campaign, CampaignStatus.SCHEDULED)
    with pytest.raises(CampaignInvalid) as caught:
        service.update_campaign(db_session, campaign, sample_input(list_ids=()))
    assert [p.field for p in caught.value.problems] == ["list_ids"]
    service.update_campaign(db_session, campaign, sample_input(name="Renamed", list_ids=(lst.id,)))
    assert campaign.name == "Renamed"


@pytest.mark.parametrize("status", ["scheduled", "sending", "paused", "sent", "cancelled"])
def test_only_drafts_can_be_deleted(db_session, org, status):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    campaign.status = status
    db_session.flush()
    with pytest.raises(CampaignConflict, match="only drafts"):
        service.delete_campaign(db_session, campaign)
    assert db_session.get(Campaign, campaign.id) is not None


def test_deleting_a_draft_removes_its_variants_links_and_lists(db_session, org):
    lst = factories.mailing_list(db_session)
    campaign = service.create_campaign(db_session, sample_input(list_ids=(lst.id,)), actor_id=None)
    campaign_id = campaign.id
    service.delete_campaign(db_session, campaign)
    assert db_session.get(Campaign, campaign_id) is None
    for model in (CampaignVariant, Link):
        assert not db_session.scalars(
            sa.select(model).where(model.campaign_id == campaign_id)
        ).all()
    rows = db_session.execute(
        sa.select(campaign_lists).where(campaign_lists.c.campaign_id == campaign_id)
    ).all()
    assert rows == []


def test_duplicate_copies_content_audience_and_petition_flags(db_session, org):
    lst = factories.mailing_list(db_session)
    source = service.create_campaign(
        db_session,
        sample_input("action_alert", languages=("en", "fr"), list_ids=(lst.id,)),
        actor_id=None,
    )
    first_url = source.links[1].url
    service.set_petition_flags(db_session, source, {source.links[1].id: True})
    source.status = CampaignStatus.SENT.value
    db_session.flush()
    copy = service.duplicate_campaign(db_session, source, actor_id=None)
    assert copy.status == CampaignStatus.DRAFT
    assert copy.name == f"Copy of {source.name}"
    assert {v.language: v.body for v in copy.variants} == {
        v.language: v.body for v in source.variants
    }
    assert service.list_ids_of(db_session, copy) == [lst.id]
    petitions = {link.url for link in copy.links if link.is_petition}
    assert petitions == {first_url, source.links[0].url}  # the button, and the one ticked
    assert {link.id for link in copy.links}.isdisjoint({link.id for link in source.links})


# --- transitions ---------------------------------------------------------------------------


def _all_pairs():
    for current in CampaignStatus:
        for wanted in CampaignStatus:
            if current != wanted:
                yield current, wanted


@pytest.mark.parametrize(("current", "wanted"), list(_all_pairs()))
def test_transition_follows_the_table(db_session, org, current, wanted):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    campaign.status = current.value
    db_session.flush()
    if wanted in TRANSITIONS[current]:
        service.transition(db_session, campaign, wanted, reason="because")
        assert campaign.status == wanted
        assert campaign.status_reason == "because"
    else:
        with pytest.raises(TransitionRefused, match=f"cannot become {wanted.value}"):
            service.transition(db_session, campaign, wanted)
        db_session.refresh(campaign)
        assert campaign.status == current


def test_transition_stamps_times(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    service.transition(db_session, campaign, "sending")
    started = campaign.started_at
    assert started is not None
    assert campaign.finished_at is None
    service.transition(db_session, campaign, "paused", reason="Paused by Ana")
    service.transition(db_session, campaign, "sending")
    assert campaign.started_at == started  # the first start stays
    service.transition(db_session, campaign, "sent")
    assert campaign.finished_at is not None


def test_a_transition_that_lost_a_race_is_refused(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    service.transition(db_session, campaign, "sending")
    # Another worker paused it meanwhile; this process still holds "sending" in memory.
    db_session.execute(
        sa.update(Campaign).where(Campaign.id == campaign.id).values(status="paused")
    )
    set_committed_value(campaign, "status", "sending")
    with pytest.raises(TransitionRefused, match="meanwhile"):
        service.transition(db_session, campaign, "sent")
    assert campaign.status == "paused"


# --- sendability ---------------------------------------------------------------------------


def test_assert_sendable_needs_lists_and_an_identity(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    with pytest.raises(CampaignInvalid) as caught:
        service.assert_sendable(db_session, campaign)
    assert [p.field for p in caught.value.problems] == ["list_ids"]

    lst = factories.mailing_list(db_session)
    service.update_campaign(db_session, campaign, sample_input(list_ids=(lst.id,)))
    service.assert_sendable(db_session, campaign)

    db_session.get(OrgSettings, 1).mailing_address = ""
    db_session.flush()
    with pytest.raises(CampaignInvalid) as caught:
        service.assert_sendable(db_session, campaign)
    assert [p.field for p in caught.value.problems] == ["identity"]


def test_assert_sendable_catches_a_sender_removed_since(db_session, org):
    lst = factories.mailing_list(db_session)
    campaign = service.create_campaign(db_session, sample_input(list_ids=(lst.id,)), actor_id=None)
    db_session.delete(org)
    db_session.flush()
    with pytest.raises(CampaignInvalid) as caught:
        service.assert_sendable(db_session, campaign)
    assert [p.field for p in caught.value.problems] == ["from_email"]


def test_assert_sendable_catches_content_broken_behind_the_service(db_session, org):
    lst = factories.mailing_list(db_session)
    campaign = service.create_campaign(db_session, sample_input(list_ids=(lst.id,)), actor_id=None)
    campaign.variants[0].body = "{{ member.first_name.__class__ }}"
    db_session.flush()
    with pytest.raises(CampaignInvalid) as caught:
        service.assert_sendable(db_session, campaign)
    assert [(p.field, p.line) for p in caught.value.problems] == [("en.body", 1)]


# --- links ---------------------------------------------------------------------------------


def test_sync_links_keeps_ids_of_unchanged_addresses(db_session, org):
    body = "[a](https://a.example/1) [b](https://b.example/2) [c](https://c.example/3)"
    data = sample_input("statement", variants={"en": variant("statement", "en", body=body)})
    campaign = service.create_campaign(db_session, data, actor_id=None)
    ids = {link.url: link.id for link in campaign.links}
    assert list(ids) == ["https://a.example/1", "https://b.example/2", "https://c.example/3"]

    changed = "[c](https://c.example/3) [new](https://d.example/4) [a](https://a.example/1)"
    service.update_campaign(
        db_session,
        campaign,
        sample_input("statement", variants={"en": variant("statement", "en", body=changed)}),
    )
    after = [(link.url, link.id, link.position) for link in campaign.links]
    assert [url for url, _, _ in after] == [
        "https://c.example/3",
        "https://d.example/4",
        "https://a.example/1",
    ]
    assert after[0][1] == ids["https://c.example/3"]
    assert after[2][1] == ids["https://a.example/1"]
    assert [position for _, _, position in after] == [0, 1, 2]
    assert db_session.scalar(sa.select(Link).where(Link.url == "https://b.example/2")) is None


def test_links_of_every_language_are_synced_once(db_session, org):
    campaign = service.create_campaign(
        db_session, sample_input("statement", languages=("en", "fr")), actor_id=None
    )
    urls = [link.url for link in campaign.links]
    assert len(urls) == len(set(urls))
    assert any("/fr/" in url for url in urls)
    assert any("/fr/" not in url for url in urls)


def test_petition_flags_survive_a_save_and_can_be_changed(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("action_alert"), actor_id=None)
    cta, other = campaign.links[0], campaign.links[1]
    service.set_petition_flags(db_session, campaign, {cta.id: False, other.id: True})
    service.update_campaign(db_session, campaign, sample_input("action_alert", name="Again"))
    flags = {link.id: link.is_petition for link in campaign.links}
    assert flags[cta.id] is False
    assert flags[other.id] is True


def test_petition_flags_refuse_links_of_other_campaigns(db_session, org):
    one = service.create_campaign(db_session, sample_input(), actor_id=None)
    two = service.create_campaign(db_session, sample_input(), actor_id=None)
    with pytest.raises(service.CampaignError, match="no link"):
        service.set_petition_flags(db_session, one, {two.links[0].id: True})


# --- content and skeletons -----------------------------------------------------------------


def test_content_for_falls_back_to_the_default_language(db_session, org):
    campaign = service.create_campaign(db_session, sample_input("statement"), actor_id=None)
    assert service.content_for(campaign, "fr").language == "en"
    both = service.create_campaign(
        db_session, sample_input("statement", languages=("fr", "en")), actor_id=None
    )
    assert service.content_for(both, "en").language == "en"
    assert service.content_for(both, "xx").language == "fr"


def test_identity_comes_from_the_settings(db_session, org):
    identity = service.identity_for(db_session)
    assert identity.organization == "Prairie Public Workers' Union"
    assert service.identity_complete(identity)


def test_skeleton_is_cached_until_the_campaign_changes(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    first = service.skeleton_for(db_session, campaign, "en", tracking=True)
    assert service.skeleton_for(db_session, campaign, "en", tracking=True) is first
    assert service.skeleton_for(db_session, campaign, "fr", tracking=True) is first  # fallback
    service.update_campaign(
        db_session,
        campaign,
        sample_input(variants={"en": variant("action_alert", "en", subject="A new subject")}),
    )
    second = service.skeleton_for(db_session, campaign, "en", tracking=True)
    assert second is not first
    assert second.subject == "A new subject"


def test_tracked_skeleton_uses_the_link_table_ids(db_session, org):
    campaign = service.create_campaign(db_session, sample_input(), actor_id=None)
    skeleton = service.skeleton_for(db_session, campaign, "en", tracking=True)
    for link in campaign.links:
        assert f"/t/c/{link.id}/" in skeleton.html
    assert "/t/o/" in skeleton.html


def test_campaign_refs_are_signed_per_campaign(app_ctx):
    ref = service.campaign_ref(12)
    assert service.check_campaign_ref(12, ref)
    assert not service.check_campaign_ref(13, ref)
    assert not service.check_campaign_ref(12, ref[:-1] + ("a" if ref[-1] != "a" else "b"))


def test_sender_lookup_ignores_case(db_session, org):
    assert service.sender_for(db_session, SENDER.upper()) is not None
