"""Organizer text that would take the server down is a 422 naming the field, at once.

Deep nesting (`{{ ((((…)))) }}`, a filter chain 20,000 long) raised RecursionError, a 500;
a 200,000-character body of merge fields took seconds of CPU to save, holding a web worker.
The sandbox bounds the text, its tags and each tag before parsing (app/emails/sandbox.py),
so the largest text allowed saves in well under a second.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app.emails.sandbox import MAX_MERGE_FIELDS, MAX_SOURCE_CHARS, MAX_TAG_TOKENS
from app.models import Campaign, Role
from app.services.organization import users
from tests.api.test_campaigns_api import _payload
from tests.support.campaigns import setup_org
from tests.support.forms import submit
from tests.web.test_campaign_pages import _form

DEEP_PARENS = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
LONG_CHAIN = "{{ member.first_name" + "|upper" * 20_000 + " }}"  # also over the length
SHORT_CHAIN = "{{ member.first_name" + "|upper" * 2_000 + " }}"  # within the length
# One merge field as long as a tag may be: 3 tokens, default("…") 5 more, then filters.
WIDEST_FIELD = (
    '{{ member.first_name|default("friend")' + "|upper" * ((MAX_TAG_TOKENS - 8) // 2) + " }}"
)
TAG_LIMIT = f"more than {MAX_TAG_TOKENS} parts"
LENGTH_LIMIT = f"the limit is {MAX_SOURCE_CHARS}"
NESTED = {
    "parens": (DEEP_PARENS, TAG_LIMIT),
    "filter-chain": (SHORT_CHAIN, TAG_LIMIT),
    "filter-chain-20000": (LONG_CHAIN, LENGTH_LIMIT),
}


def _worst_body(words: tuple[str, str, str]) -> str:
    """As many of the widest merge fields as allowed, then nested Markdown lists (the
    costliest Markdown per character measured) up to the length limit."""
    fields = "\n".join([WIDEST_FIELD] * MAX_MERGE_FIELDS) + "\n\n"
    pad = "- {}\n  - {}\n    - {}\n".format(*words)
    body = fields + pad * ((MAX_SOURCE_CHARS - len(fields)) // len(pad))
    assert len(body) <= MAX_SOURCE_CHARS
    return body


@pytest.fixture
def api(db_session, make_user):
    setup_org(db_session)
    issued = users.create_token(db_session, make_user(Role.ORGANIZER))
    db_session.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


def _campaigns(db_session) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(Campaign))


def _with_body(body: str, *, subject: str | None = None) -> dict:
    payload = _payload()
    for variant in payload["variants"]:
        variant["body"] = body
        if subject is not None:
            variant["subject"] = subject
    return payload


def _problems(response) -> list[dict]:
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    return response.get_json()["error"]["details"]["problems"]


@pytest.mark.parametrize("kind", NESTED)
@pytest.mark.parametrize("where", ["body", "headline"])
def test_deep_nesting_is_a_422_naming_the_field_by_api(client, api, db_session, kind, where):
    text, limit = NESTED[kind]
    payload = _payload()
    for variant in payload["variants"]:
        if where == "body":
            variant["body"] = text
        else:
            variant["fields"]["headline"] = text
    problems = _problems(client.post("/api/v1/campaigns", json=payload, headers=api))
    assert {p["field"] for p in problems} == {f"en.{where}", f"fr.{where}"}
    if where == "body":  # a headline over 1,000 characters is refused for its length first
        assert limit in problems[0]["message"]
    assert _campaigns(db_session) == 0


@pytest.mark.parametrize("kind", NESTED)
def test_deep_nesting_is_a_422_naming_the_field_in_the_form(client, login_as, db_session, kind):
    text, limit = NESTED[kind]
    login_as(Role.ORGANIZER)
    sender = setup_org(db_session)
    db_session.commit()
    form = _form("statement", sender_id=sender.id, **{"en-body": text})
    response = submit(client, "/campaigns/new", form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Body (English)" in page
    assert limit in page
    assert _campaigns(db_session) == 0


def test_the_worst_allowed_body_saves_in_bounded_time(client, api, db_session):
    payload = _payload()
    # Each language its own body, so nothing compiled or parsed for one serves the other.
    languages = (("one", "two", "six"), ("un", "deux", "six"))
    for variant, words in zip(payload["variants"], languages, strict=True):
        variant["body"] = _worst_body(words)
    client.post("/api/v1/campaigns", json=_payload(name="warm-up"), headers=api)  # imports
    started = time.process_time()
    response = client.post("/api/v1/campaigns", json=payload, headers=api)
    spent = time.process_time() - started
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    print(f"worst allowed campaign saved in {spent:.3f} s of CPU")
    # About 0.6 s of CPU on a quiet 2-core host, up to 1.1 s when other jobs share its caches;
    # what the bounds rule out is the unbounded growth of a body with more tags or characters.
    assert spent < 3.0, f"{spent:.2f} s of CPU to save the largest allowed campaign"


def test_one_merge_field_over_the_limit_is_a_422_with_the_limit(client, api, db_session):
    body = " ".join(["{{ member.first_name }}"] * (MAX_MERGE_FIELDS + 1))
    problems = _problems(client.post("/api/v1/campaigns", json=_with_body(body), headers=api))
    assert [p["field"] for p in problems] == ["en.body", "fr.body"]
    assert f"more than {MAX_MERGE_FIELDS} personal fields" in problems[0]["message"]
    assert _campaigns(db_session) == 0


def test_one_character_over_the_limit_is_a_422_with_the_limit(client, api, db_session):
    body = "x" * (MAX_SOURCE_CHARS + 1)
    problems = _problems(client.post("/api/v1/campaigns", json=_with_body(body), headers=api))
    assert f"the limit is {MAX_SOURCE_CHARS}" in problems[0]["message"]
    assert _campaigns(db_session) == 0


def test_the_old_attack_body_is_refused_in_milliseconds(client, api, db_session):
    body = "{{ member.first_name }} " * (200_000 // 24)
    started = time.process_time()
    problems = _problems(client.post("/api/v1/campaigns", json=_with_body(body), headers=api))
    assert time.process_time() - started < 0.5
    assert "limit" in problems[0]["message"]
