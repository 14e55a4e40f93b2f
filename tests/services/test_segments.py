"""Segments compile every allowed field and operator to SQL, and refuse anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.models import ConsentBasis, Member
from app.services.audience import consent, segments
from tests import factories as f

NOW = datetime.now(UTC)


@pytest.fixture
def people(db_session):
    lst = f.mailing_list(db_session, name="Action network")
    other = f.mailing_list(db_session, name="Newsletter")
    ana = f.member(
        db_session,
        email="ana@example.org",
        first_name="Ana",
        last_name="Roy",
        language="fr",
        local="Local 1004",
        postal_code="H2X 1Y4",
        attributes={"Workplace": "Hôpital Notre-Dame", "Shift": "Night"},
    )
    ben = f.member(
        db_session,
        email="ben@example.org",
        first_name="Ben",
        last_name="Tremblay",
        local="Local 30",
        postal_code="T2P 1J9",
        attributes={"Workplace": "Depot 50%_off"},
    )
    cat = f.member(db_session, email="cat@example.org", first_name="Cat", local="")
    f.subscribe(db_session, ana, lst)
    f.subscribe(db_session, ben, lst, status="unsubscribed")
    f.subscribe(db_session, cat, other, status="pending")
    consent.record_consent(db_session, ana, ConsentBasis.EXPRESS, source="form")
    consent.record_consent(
        db_session, ben, ConsentBasis.IMPLIED_INQUIRY, source="call", at=NOW - timedelta(days=150)
    )
    ben.created_at = NOW - timedelta(days=400)
    db_session.flush()
    return {"lists": (lst, other), "ana": ana, "ben": ben, "cat": cat}


def emails(db_session, rules, match="all") -> set[str]:
    condition = segments.compile_segment(rules, match)
    return set(db_session.scalars(sa.select(Member.email).where(condition)))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "email", "op": "equals", "value": "ANA@example.org"}, {"ana@example.org"}),
        (
            {"field": "first_name", "op": "not_equals", "value": "ana"},
            {"ben@example.org", "cat@example.org"},
        ),
        ({"field": "last_name", "op": "contains", "value": "BLA"}, {"ben@example.org"}),
        (
            {"field": "last_name", "op": "not_contains", "value": "roy"},
            {"ben@example.org", "cat@example.org"},
        ),
        ({"field": "postal_code", "op": "starts_with", "value": "h2x"}, {"ana@example.org"}),
        (
            {"field": "local", "op": "in", "value": "Local 30, local 1004"},
            {"ana@example.org", "ben@example.org"},
        ),
        ({"field": "local", "op": "is_empty"}, {"cat@example.org"}),
        ({"field": "local", "op": "is_not_empty"}, {"ana@example.org", "ben@example.org"}),
        ({"field": "language", "op": "equals", "value": "fr"}, {"ana@example.org"}),
        (
            {"field": "language", "op": "not_equals", "value": "fr"},
            {"ben@example.org", "cat@example.org"},
        ),
        (
            {"field": "created_at", "op": "within_days", "value": 30},
            {"ana@example.org", "cat@example.org"},
        ),
        (
            {
                "field": "created_at",
                "op": "before",
                "value": (NOW - timedelta(days=200)).date().isoformat(),
            },
            {"ben@example.org"},
        ),
        (
            {
                "field": "created_at",
                "op": "after",
                "value": (NOW - timedelta(days=200)).date().isoformat(),
            },
            {"ana@example.org", "cat@example.org"},
        ),
        (
            {
                "field": "attribute",
                "key": "Workplace",
                "op": "equals",
                "value": "hôpital notre-dame",
            },
            {"ana@example.org"},
        ),
        (
            {"field": "attribute", "key": "Workplace", "op": "contains", "value": "50%_"},
            {"ben@example.org"},
        ),
        (
            {"field": "attribute", "key": "Workplace", "op": "starts_with", "value": "dep"},
            {"ben@example.org"},
        ),
        (
            {
                "field": "attribute",
                "key": "Workplace",
                "op": "not_equals",
                "value": "Depot 50%_off",
            },
            {"ana@example.org", "cat@example.org"},
        ),
        ({"field": "attribute", "key": "Shift", "op": "is_set"}, {"ana@example.org"}),
        (
            {"field": "attribute", "key": "Shift", "op": "is_not_set"},
            {"ben@example.org", "cat@example.org"},
        ),
        (
            {"field": "consent", "op": "is", "value": "valid"},
            {"ana@example.org", "ben@example.org"},
        ),
        ({"field": "consent", "op": "is", "value": "expiring"}, {"ben@example.org"}),
        ({"field": "consent", "op": "is", "value": "none"}, {"cat@example.org"}),
        ({"field": "consent", "op": "is", "value": "express"}, {"ana@example.org"}),
        ({"field": "consent", "op": "is", "value": "implied"}, {"ben@example.org"}),
        ({"field": "consent", "op": "is_not", "value": "valid"}, {"cat@example.org"}),
        ({"field": "consent", "op": "is", "value": "expired"}, set()),
    ],
)
def test_each_field_and_operator(db_session, people, rule, expected):
    assert emails(db_session, [rule]) == expected


def test_list_membership_operators(db_session, people):
    action, other = people["lists"]
    rule = {"field": "list", "value": action.id}
    assert emails(db_session, [{**rule, "op": "subscribed"}]) == {"ana@example.org"}
    assert emails(db_session, [{**rule, "op": "unsubscribed"}]) == {"ben@example.org"}
    assert emails(db_session, [{**rule, "op": "not_subscribed"}]) == {
        "ben@example.org",
        "cat@example.org",
    }
    assert emails(db_session, [{"field": "list", "op": "pending", "value": other.id}]) == {
        "cat@example.org"
    }


def test_all_and_any(db_session, people):
    rules = [
        {"field": "language", "op": "equals", "value": "fr"},
        {"field": "local", "op": "equals", "value": "Local 30"},
    ]
    assert emails(db_session, rules, "all") == set()
    assert emails(db_session, rules, "any") == {"ana@example.org", "ben@example.org"}
    assert emails(db_session, [], "all") == {
        "ana@example.org",
        "ben@example.org",
        "cat@example.org",
    }


@pytest.mark.parametrize(
    ("rules", "match", "message"),
    [
        ([{"field": "password_hash", "op": "equals", "value": "x"}], "all", "unknown field"),
        ([{"field": "email", "op": "regex", "value": ".*"}], "all", "cannot use the operator"),
        ([{"field": "email", "op": "equals", "value": "x", "sql": "1=1"}], "all", "unknown keys"),
        ([{"field": "language", "op": "equals", "value": "de"}], "all", "choose one of"),
        ([{"field": "created_at", "op": "before", "value": "yesterday"}], "all", "YYYY-MM-DD"),
        ([{"field": "attribute", "op": "equals", "value": "x"}], "all", "name the custom field"),
        (
            [{"field": "attribute", "key": 'a"); DROP', "op": "equals", "value": "x"}],
            "all",
            "quotes",
        ),
        ([{"field": "email", "op": "equals", "value": ""}], "all", "give a value"),
        ([{"field": "list", "op": "subscribed", "value": "abc"}], "all", "choose a list"),
        (["email = 'x'"], "all", "must be an object"),
        ([], "some", "Match must be"),
        ("email = 'x'", "all", "Rules must be a list"),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_message(db_session, rules, match, message):
    with pytest.raises(segments.SegmentError) as refused:
        segments.compile_segment(rules, match)
    assert message in str(refused.value)


def test_unknown_list_is_refused_when_saving(db_session):
    with pytest.raises(segments.SegmentError, match="that list does not exist"):
        segments.create_segment(
            db_session,
            name="Ghosts",
            rules=[{"field": "list", "op": "subscribed", "value": 999999}],
        )


def test_saved_segment_counts_and_narrows_an_audience(db_session, people):
    segment = segments.create_segment(
        db_session,
        name="Montreal",
        rules=[{"field": "postal_code", "op": "starts_with", "value": "H"}],
    )
    assert segments.count_members(db_session, segment.rules, segment.match) == 1
    ids = set(db_session.scalars(segments.segment_member_ids_clause(segment)))
    assert ids == {people["ana"].id}
    with pytest.raises(segments.SegmentError, match="already a segment"):
        segments.create_segment(db_session, name="Montreal", rules=[])
