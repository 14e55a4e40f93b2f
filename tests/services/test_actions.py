"""Hosted petitions: writing, opening, signing once per address, attribution, consent, tallies."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner

from app import jobs
from app.infra.redis_client import get_redis
from app.infra.tokens import ActionRefSigner
from app.models import (
    ActionResponse,
    ActionStatus,
    ActionTally,
    Link,
    Member,
    OrgSettings,
    ResponseSource,
    Sender,
    Subscription,
    Suppression,
)
from app.services import actions
from app.services.actions import abuse, counts, mail, petitions, public, reports, signing
from app.services.actions import retention as action_retention
from app.services.actions.petitions import ActionError, PetitionData, SlugTaken
from app.services.sending import transactional
from app.services.stats import breakdown
from app.services.stats import counters as stats
from app.services.stats import reports as stats_reports
from app.services.transports.outbox import OutboxTransport
from tests import factories


def _petition(session, **changes):
    data = PetitionData(
        title="Free Amar Fayaz",
        versions={
            "en": {
                "headline": "Bring Amar home",
                "description": "Amar is a **trade unionist** <script>x</script>",
                "target": "His Excellency, the High Commissioner",
                "petition_text": "We call on you to release Amar Fayaz.",
            },
            "fr": {"title": "Libérez Amar Fayaz", "petition_text": "Nous demandons..."},
        },
    )
    for key, value in changes.items():
        setattr(data, key, value)
    action = actions.create_petition(session, data, owner_id=None)
    actions.transition(session, action, ActionStatus.OPEN)
    return action


def test_create_petition_makes_a_slug_and_versions(db_session):
    action = _petition(db_session)
    assert action.slug == "free-amar-fayaz"
    assert action.version("fr").title == "Libérez Amar Fayaz"
    assert action.version("en").title == "Free Amar Fayaz"
    assert action.status == "open"
    again = actions.create_petition(
        db_session, PetitionData(title="Free Amar Fayaz"), owner_id=None
    )
    assert again.slug == "free-amar-fayaz-2"


def test_bad_petition_input_is_refused_and_changes_nothing(db_session):
    with pytest.raises(ActionError) as exc:
        actions.create_petition(db_session, PetitionData(title=""), owner_id=None)
    assert exc.value.field == "title"
    with pytest.raises(ActionError):
        actions.create_petition(db_session, PetitionData(title="x", goal=0), owner_id=None)
    with pytest.raises(ActionError):
        actions.create_petition(
            db_session, PetitionData(title="x", image_url="javascript:alert(1)"), owner_id=None
        )
    _petition(db_session)
    with pytest.raises(SlugTaken):
        actions.create_petition(
            db_session, PetitionData(title="y", slug="free-amar-fayaz"), owner_id=None
        )


def test_a_draft_without_text_cannot_open_and_transitions_follow_the_table(db_session):
    draft = actions.create_petition(db_session, PetitionData(title="Empty"), owner_id=None)
    with pytest.raises(ActionError):
        actions.transition(db_session, draft, ActionStatus.OPEN)
    action = _petition(db_session)
    with pytest.raises(ActionError):
        actions.transition(db_session, action, ActionStatus.DRAFT)
    actions.transition(db_session, action, ActionStatus.CLOSED)
    with pytest.raises(signing.SignError):
        actions.sign(
            db_session, action, signing.Signature("a@example.org", "A"), signing.Attribution()
        )


def test_description_markdown_is_sanitised():
    html = actions.petitions.render_markdown("**hi** <script>alert(1)</script> [x](javascript:y)")
    assert "<strong>hi</strong>" in html
    assert "<script" not in html
    assert "javascript:" not in html


def test_signing_twice_updates_and_never_counts_twice(db_session):
    action = _petition(db_session)
    first = actions.sign(
        db_session, action, signing.Signature(" Ana@Example.org ", "Ana"), signing.Attribution()
    )
    again = actions.sign(
        db_session,
        action,
        signing.Signature("ana@example.org", "Ana", "Roy"),
        signing.Attribution(),
    )
    assert first.created
    assert first.counted
    assert not again.created
    assert not again.counted
    assert again.response.id == first.response.id
    assert again.response.last_name == "Roy"
    assert counts.count_responses(db_session, action.id) == 1


def test_required_fields_and_bounds(db_session):
    action = _petition(db_session, fields={"postal_code": "required", "comment": "optional"})
    with pytest.raises(signing.SignError) as exc:
        actions.sign(
            db_session, action, signing.Signature("b@example.org", "B"), signing.Attribution()
        )
    assert exc.value.field == "postal_code"
    with pytest.raises(signing.SignError) as exc:
        actions.sign(
            db_session,
            action,
            signing.Signature("b@example.org", "B", postal_code="T5J", comment="x" * 1001),
            signing.Attribution(),
        )
    assert exc.value.field == "comment"
    with pytest.raises(signing.SignError) as exc:
        actions.sign(
            db_session, action, signing.Signature("not-an-email", "B"), signing.Attribution()
        )
    assert exc.value.field == "email"
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ActionResponse)) == 0


def test_alert_attribution_records_campaign_delivery_local_and_tallies(db_session):
    action = _petition(db_session)
    member = factories.member(
        db_session, email="amelie@example.org", first_name="Amélie", last_name="Roy"
    )
    campaign = factories.campaign(db_session)
    delivery = factories.delivery(db_session, campaign, member, local="Local 30", language="fr")
    attribution = signing.attribution_for(
        db_session, action, delivery=(campaign.id, delivery.id, 0)
    )
    assert attribution.source is ResponseSource.ALERT
    outcome = actions.sign(
        db_session, action, signing.Signature("amelie@example.org", "Amélie"), attribution
    )
    response = outcome.response
    assert (response.campaign_id, response.delivery_id, response.member_id) == (
        campaign.id,
        delivery.id,
        member.id,
    )
    assert response.local == "Local 30"
    signed = reports.campaign_signed(db_session, campaign.id)
    assert signed.signed == 1
    assert signed.by_local == {"Local 30": 1}
    assert signed.by_language == {"fr": 1}
    # Signing again through the alert counts nothing more.
    actions.sign(db_session, action, signing.Signature("amelie@example.org", "Amélie"), attribution)
    assert reports.campaign_signed(db_session, campaign.id).signed == 1


def test_not_you_signs_for_the_alert_but_not_as_the_member(db_session):
    action = _petition(db_session)
    member = factories.member(db_session, email="amelie@example.org", first_name="Amélie")
    campaign = factories.campaign(db_session)
    delivery = factories.delivery(db_session, campaign, member)
    attribution = signing.attribution_for(
        db_session, action, delivery=(campaign.id, delivery.id, 0)
    )
    outcome = actions.sign(
        db_session, action, signing.Signature("friend@example.org", "Friend"), attribution
    )
    assert outcome.response.member_id is None
    assert outcome.response.campaign_id == campaign.id


def test_a_reference_of_another_campaign_is_ignored(db_session):
    action = _petition(db_session)
    member = factories.member(db_session)
    campaign, other = factories.campaign(db_session), factories.campaign(db_session)
    delivery = factories.delivery(db_session, campaign, member)
    attribution = signing.attribution_for(db_session, action, delivery=(other.id, delivery.id, 0))
    assert attribution.source is ResponseSource.DIRECT
    assert signing.delivery_prefill(db_session, other.id, delivery.id) is None
    assert signing.delivery_prefill(db_session, campaign.id, delivery.id).email == member.email


def test_share_credits_the_referrer_and_the_alert_second_order(db_session):
    action = _petition(db_session)
    member = factories.member(db_session, email="amelie@example.org")
    campaign = factories.campaign(db_session)
    delivery = factories.delivery(db_session, campaign, member, local="Local 30")
    first = actions.sign(
        db_session,
        action,
        signing.Signature("amelie@example.org", "Amélie"),
        signing.attribution_for(db_session, action, delivery=(campaign.id, delivery.id, 0)),
    ).response
    via = signing.attribution_for(db_session, action, referral_code=first.referral_code)
    second = actions.sign(
        db_session, action, signing.Signature("bo@example.org", "Bo"), via
    ).response
    assert second.source == "share"
    assert second.referrer_id == first.id
    assert reports.referral_count(db_session, first.id) == 1
    signed = reports.campaign_signed(db_session, campaign.id)
    assert (signed.signed, signed.shared) == (1, 1)
    unknown = signing.attribution_for(db_session, action, referral_code="nope")
    assert unknown.source is ResponseSource.DIRECT


def test_consent_subscribes_with_express_consent_but_never_a_suppressed_or_unsubscribed_address(
    db_session,
):
    lst = factories.mailing_list(db_session)
    action = _petition(db_session, list_ids=[lst.id])
    outcome = actions.sign(
        db_session,
        action,
        signing.Signature("new@example.org", "New", consent=True),
        signing.Attribution(),
        ip="203.0.113.5",
    )
    member = db_session.scalar(sa.select(Member).where(Member.email == "new@example.org"))
    assert outcome.subscriptions == {lst.id: "subscribed"}
    assert member.consent_basis == "express"
    assert member.consent_detail["ip"] == "203.0.113.5"
    assert "unsubscribe" in member.consent_detail["wording"]
    assert outcome.response.consent_given
    assert outcome.response.consent_wording

    gone = factories.member(db_session, email="gone@example.org")
    factories.subscribe(db_session, gone, lst, status="unsubscribed")
    actions.sign(
        db_session,
        action,
        signing.Signature("gone@example.org", "G", consent=True),
        signing.Attribution(),
    )
    assert db_session.get(Subscription, (gone.id, lst.id)).status == "unsubscribed"

    db_session.add(Suppression(email="blocked@example.org", reason="spam_report"))
    db_session.flush()
    blocked = actions.sign(
        db_session,
        action,
        signing.Signature("blocked@example.org", "B", consent=True),
        signing.Attribution(),
    )
    assert blocked.counted
    assert blocked.subscriptions == {}
    assert db_session.scalar(sa.select(Member).where(Member.email == "blocked@example.org")) is None


def test_unticked_consent_subscribes_nobody(db_session):
    lst = factories.mailing_list(db_session)
    action = _petition(db_session, list_ids=[lst.id])
    actions.sign(
        db_session, action, signing.Signature("quiet@example.org", "Q"), signing.Attribution()
    )
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


def test_remove_takes_a_signature_out_of_the_count_and_the_tallies(db_session):
    action = _petition(db_session)
    member = factories.member(db_session)
    campaign = factories.campaign(db_session)
    delivery = factories.delivery(db_session, campaign, member)
    response = actions.sign(
        db_session,
        action,
        signing.Signature(member.email, "M"),
        signing.attribution_for(db_session, action, delivery=(campaign.id, delivery.id, 0)),
        flag_reason="many",
    ).response
    assert response.flagged
    actions.remove_response(db_session, response)
    actions.remove_response(db_session, response)
    assert counts.count_responses(db_session, action.id) == 0
    assert reports.campaign_signed(db_session, campaign.id).signed == 0
    rows = db_session.scalars(sa.select(ActionTally).where(ActionTally.campaign_id == campaign.id))
    assert all(row.signed == 0 for row in rows)


def test_confirm_by_email_counts_only_once_confirmed(db_session):
    action = _petition(db_session, require_confirmation=True)
    outcome = actions.sign(
        db_session, action, signing.Signature("c@example.org", "C"), signing.Attribution()
    )
    assert not outcome.counted
    assert counts.count_responses(db_session, action.id) == 0
    assert signing.confirm_response(db_session, outcome.response)
    assert not signing.confirm_response(db_session, outcome.response)
    assert counts.count_responses(db_session, action.id) == 1


def test_live_count_is_cached_briefly_then_exact(db_session, app_ctx):
    action = _petition(db_session)
    client = get_redis()
    counts.forget_count(client, action.id)
    assert counts.live_count(db_session, client, action.id) == 0
    actions.sign(db_session, action, signing.Signature("d@example.org", "D"), signing.Attribution())
    assert counts.live_count(db_session, client, action.id) == 0  # cached
    counts.note_signature(client, action.id)  # the signer's own page counts them at once
    assert counts.live_count(db_session, client, action.id) == 1
    assert 0 < client.pttl(f"rp:actions:count:{action.id}") <= counts.COUNT_TTL_MS
    counts.forget_count(client, action.id)
    counts.note_signature(client, action.id)  # nothing cached: nothing made up
    assert client.get(f"rp:actions:count:{action.id}") is None
    assert counts.live_count(db_session, client, action.id) == 1


def test_ip_limit_flags_above_the_threshold_never_refuses(app_ctx):
    client = get_redis()
    reasons = [
        abuse.ip_flag_reason(client, 999_001, "198.51.100.7", threshold=3, now=1_000_000.0)
        for _ in range(5)
    ]
    assert reasons[:3] == ["", "", ""]
    assert all(reasons[3:])
    assert abuse.ip_flag_reason(None, 1, "x", threshold=1) == ""


def test_action_references_are_bound_to_action_and_expire():
    signer = ActionRefSigner(["secret"])
    token = signer.sign("free-amar", 3, 40, 7, now=1000.0)
    ref = signer.verify(token, "free-amar", now=1001.0)
    assert (ref.campaign_id, ref.delivery_id, ref.link_id) == (3, 40, 7)
    assert signer.verify(token, "other-petition", now=1001.0) is None
    assert signer.verify(token, "free-amar", now=1000.0 + 3 * 3600) is None
    assert (
        signer.verify(token[:-1] + ("A" if token[-1] != "A" else "B"), "free-amar", 1001.0) is None
    )
    assert ActionRefSigner(["other"]).verify(token, "free-amar", now=1001.0) is None
    assert signer.verify("garbage", "free-amar", now=0) is None
    rotated = ActionRefSigner(["new", "secret"])
    assert rotated.verify(token, "free-amar", now=1001.0) is not None


def test_petition_report_and_csv_neutralise_formulas(db_session):
    action = _petition(db_session, goal=10)
    actions.sign(
        db_session,
        action,
        signing.Signature("e@example.org", "=HYPERLINK(1)", city="Edmonton"),
        signing.Attribution(),
    )

    report = reports.petition_report(db_session, action, now=datetime.now(UTC))
    assert report.total == 1
    assert report.goal_ratio == 0.1
    assert [r.source for r in report.by_source] == ["direct"]
    text = "".join(reports.responses_csv(db_session, action))
    assert "'=HYPERLINK(1)" in text


def test_campaign_tallies_equal_the_recount_from_responses(db_session):
    action = _petition(db_session)
    campaign = factories.campaign(db_session)
    link = Link(campaign_id=campaign.id, url="http://localhost:5000/a/free-amar-fayaz")
    db_session.add(link)
    db_session.flush()
    firsts = []
    for n, local in enumerate(["Local 30", "Local 30", "Local 7"]):
        member = factories.member(db_session)
        delivery = factories.delivery(db_session, campaign, member, local=local)
        attribution = signing.attribution_for(
            db_session, action, delivery=(campaign.id, delivery.id, link.id)
        )
        firsts.append(
            actions.sign(
                db_session, action, signing.Signature(member.email, f"M{n}"), attribution
            ).response
        )
    via = signing.attribution_for(db_session, action, referral_code=firsts[0].referral_code)
    actions.sign(db_session, action, signing.Signature("friend@example.org", "F"), via)
    actions.remove_response(db_session, firsts[2])
    stored = stats.stored_stats(db_session, campaign.id)
    computed = stats.recompute_stats(db_session, campaign.id)
    assert (stored.campaign["signed"], stored.campaign["shared"]) == (2, 1)
    for name in ("signed", "shared"):
        assert stored.campaign[name] == computed.campaign[name]
    assert stored.links == computed.links
    assert stored.hourly == computed.hourly
    assert stored.links[link.id]["signed"] == 2
    by_local = breakdown.recompute_breakdown(db_session, campaign.id, signatures=True)
    assert by_local[("local", "Local 30")]["signed"] == 2
    assert by_local[("local", "Local 7")]["signed"] == 0
    rows = stats_reports.campaign_breakdown(db_session, campaign.id, "local")
    assert rows == [] or all(
        r.counts["signed"] == by_local[("local", r.value)]["signed"] for r in rows
    )
    funnel = stats_reports.campaign_funnel(db_session, campaign.id)
    assert (funnel.counts["signed"], funnel.counts["shared"]) == (2, 1)


def test_public_snapshot_is_kept_a_moment_then_read_again(db_session):
    action = _petition(db_session)
    now = [100.0]
    cache = public.PublicActionCache(clock=lambda: now[0])
    first = cache.get(db_session, action.slug)
    assert first.id == action.id
    assert "<strong>trade unionist</strong>" in first.version("en").description_html
    assert "<script" not in first.version("en").description_html
    assert first.version("fr").title == "Libérez Amar Fayaz"
    actions.transition(db_session, action, ActionStatus.CLOSED)
    assert cache.get(db_session, action.slug).status == "open"  # within the TTL
    now[0] += public.TTL + 0.1
    assert cache.get(db_session, action.slug).status == "closed"
    assert cache.get(db_session, "no-such-petition") is None


def test_rendered_page_is_kept_a_moment_and_only_for_its_snapshot(db_session):
    action = _petition(db_session)
    now = [100.0]
    snapshots = public.PublicActionCache(clock=lambda: now[0])
    pages = public.PageCache(clock=lambda: now[0])
    renders = []

    def render(text):
        def _render():
            renders.append(text)
            return text.encode()

        return _render

    snap = snapshots.get(db_session, action.slug)
    assert pages.get(snap, "en", render("one")) == b"one"
    assert pages.get(snap, "en", render("two")) == b"one"  # within PAGE_TTL
    assert pages.get(snap, "fr", render("un")) == b"un"  # each language its own
    now[0] += public.PAGE_TTL + 0.01
    assert pages.get(snap, "en", render("three")) == b"three"
    snapshots.clear()  # a new snapshot (an edit, the petition closed) renders again at once
    assert pages.get(snapshots.get(db_session, action.slug), "en", render("four")) == b"four"
    assert renders == ["one", "un", "three", "four"]


def test_form_token_is_bound_to_the_action_and_expires(monkeypatch):
    secret = "s" * 40
    token = petitions.form_token(secret, 7)
    assert petitions.check_form_token(secret, token, 7, max_age=3600)
    assert not petitions.check_form_token(secret, token, 8, max_age=3600)
    assert not petitions.check_form_token("t" * 40, token, 7, max_age=3600)
    assert not petitions.check_form_token(secret, token[:-2] + "xx", 7, max_age=3600)
    assert not petitions.check_form_token(secret, petitions.embed_token(secret, 7), 7, None)
    assert not petitions.check_form_token(secret, "", 7, max_age=None)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 7200)
    old = petitions.form_token(secret, 7)
    monkeypatch.undo()
    assert not petitions.check_form_token(secret, old, 7, max_age=3600)
    assert petitions.check_form_token(secret, old, 7, max_age=None)


def test_signers_ip_and_user_agent_go_after_the_tracking_period(db_session):
    action = _petition(db_session)
    old = actions.sign(
        db_session,
        action,
        signing.Signature("old@example.org", "O", consent=True),
        signing.Attribution(),
        ip="198.51.100.1",
        user_agent="Firefox",
        now=datetime.now(UTC) - timedelta(days=100),
    ).response
    new = actions.sign(
        db_session,
        action,
        signing.Signature("new@example.org", "N"),
        signing.Attribution(),
        ip="198.51.100.2",
        user_agent="Chrome",
    ).response
    changed = action_retention.forget_signer_details(
        db_session, tracking_days=90, commit=db_session.flush
    )
    assert changed == 1
    db_session.expire_all()
    assert (old.ip, old.user_agent) == ("", "")
    assert (new.ip, new.user_agent) == ("198.51.100.2", "Chrome")
    assert (
        action_retention.forget_signer_details(
            db_session, tracking_days=90, commit=db_session.flush
        )
        == 0
    )


def _identity(session):
    session.add(
        OrgSettings(organization="Prairie Workers", mailing_address="1 Main St", contact="a@b.ca")
    )
    session.add(Sender(email="news@example.org", name="Prairie Workers", is_default=True))
    session.flush()


def _signer_jobs(session):
    return [j.args for j in jobs.pending_jobs(session) if j.name == jobs.SEND_TRANSACTIONAL]


def test_confirm_by_email_sends_one_link_that_counts_the_signature(db_session, tmp_path, app):
    _identity(db_session)
    action = _petition(db_session, require_confirmation=True)
    outcome = actions.sign(
        db_session, action, signing.Signature("c@example.org", "C"), signing.Attribution()
    )
    [(kind, payload)] = _signer_jobs(db_session)
    assert kind == mail.CONFIRM_KIND
    transport = OutboxTransport(str(tmp_path))
    assert transactional.deliver(db_session, transport, kind, payload) == 1
    assert transactional.deliver(db_session, transport, kind, payload) == 0  # a redelivery
    [message] = list(tmp_path.glob("*.eml"))
    parsed = email.message_from_bytes(message.read_bytes(), policy=email.policy.default)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    token = re.search(r"/a/free-amar-fayaz/confirm/([A-Za-z0-9_.=-]+)", text).group(1)
    assert mail.read_confirm_token(app.config["SECRET_KEY"], token) == (
        outcome.response_id,
        "c@example.org",
    )
    assert mail.read_confirm_token(app.config["SECRET_KEY"], token + "x") is None
    assert mail.read_confirm_token("another secret", token) is None


def test_thank_you_email_only_when_asked_and_never_to_a_suppressed_address(db_session, tmp_path):
    _identity(db_session)
    quiet = _petition(db_session)
    actions.sign(db_session, quiet, signing.Signature("q@example.org", "Q"), signing.Attribution())
    assert _signer_jobs(db_session) == []
    thanks = actions.create_petition(
        db_session,
        PetitionData(title="Thanks", send_thank_you=True, versions={"en": {"petition_text": "x"}}),
        owner_id=None,
    )
    actions.transition(db_session, thanks, ActionStatus.OPEN)
    db_session.add(Suppression(email="s@example.org", reason="spam_report"))
    actions.sign(db_session, thanks, signing.Signature("t@example.org", "T"), signing.Attribution())
    actions.sign(db_session, thanks, signing.Signature("s@example.org", "S"), signing.Attribution())
    sent = [
        transactional.deliver(db_session, OutboxTransport(str(tmp_path)), kind, payload)
        for kind, payload in _signer_jobs(db_session)
    ]
    assert sent == [1, 0]
    [message] = list(tmp_path.glob("*.eml"))
    parsed = email.message_from_bytes(message.read_bytes(), policy=email.policy.default)
    assert "ref=" in parsed.get_body(preferencelist=("plain",)).get_content()
