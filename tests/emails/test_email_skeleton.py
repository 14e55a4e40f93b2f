"""Tests for skeletons: built once per variant, personalized by substitution only."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.environment import Template
from markdown_it import MarkdownIt
from markupsafe import escape

from app.emails import (
    ContentError,
    EmailContent,
    Identity,
    Recipient,
    Skeleton,
    build_skeleton,
    check_content,
    extract_links,
)
from app.emails import render as render_module
from app.emails.render import KEY_PATTERN, MAX_VALUE_CHARS, WORD_JOINER
from app.emails.samples import IDENTITIES, PETITION_URL, SAMPLES

BASE = "https://t.example.org"
BACKGROUND = "https://prairieworkers.example/campaigns/nadia"

CONTENT = EmailContent(
    layout="action_alert",
    language="en",
    subject='{{ member.first_name | default("Friend") }}, sign for Nadia',
    preheader="Hi {{ member.first_name }} from {{ member.local | default('your local') }}",
    body=(
        'Dear {{ member.first_name | default("member") }} {{ member.last_name }},\n\n'
        "Your steward is {{ member.attributes.steward | default('on the way') | upper }}.\n"
        "We write to {{ member.email }} in {{ member.language }} ({{ member.postal_code }}).\n\n"
        f"[Read the background]({BACKGROUND}) and [sign]({PETITION_URL}).\n"
        "Questions? [Write to us](mailto:office@example.org).\n"
    ),
    body_format="markdown",
    fields={
        "headline": "{{ member.first_name | default('Friend') | upper }}, act now",
        "cta_label": "Sign the petition",
        "cta_url": PETITION_URL,
    },
)
IDENTITY = Identity("Prairie Public Workers' Union", "PO Box 1245\nEdmonton AB", "info@ex.org")
LINKS = {PETITION_URL: "p1", BACKGROUND: "b2"}


def _recipient(**values: Any) -> Recipient:
    defaults: dict[str, Any] = {
        "first_name": "Amélie",
        "last_name": "Tremblay",
        "email": "amelie@example.org",
        "local": "Local 118",
        "language": "en",
        "postal_code": "T5J 0N3",
        "attributes": {"steward": "Rosa"},
        "open_token": "OPEN42",
        "click_token": "CLICK42",
        "unsubscribe_url": f"{BASE}/u/UNSUB42",
        "preferences_url": f"{BASE}/p/UNSUB42?a=1&b=2",
    }
    return Recipient(**(defaults | values))


def _tracked(content: EmailContent = CONTENT, **kwargs: Any) -> Skeleton:
    options: dict[str, Any] = {"links": LINKS.get, "tracking": True, "base_url": BASE}
    return build_skeleton(content, IDENTITY, **(options | kwargs))


def _untracked(content: EmailContent = CONTENT) -> Skeleton:
    return build_skeleton(
        content, IDENTITY, tracking=False, base_url=BASE, inert_url="https://ex.org/preview-only"
    )


def sendgrid_substitute(text: str, substitutions: Mapping[str, str]) -> str:
    """Do what SendGrid does with `substitutions`: replace every occurrence of each key."""
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def _sendgrid(skeleton: Skeleton, recipient: Recipient, *, reverse: bool = False) -> list[str]:
    subs = skeleton.substitutions(recipient)
    if reverse:
        subs = dict(reversed(subs.items()))
    return [sendgrid_substitute(p, subs) for p in (skeleton.subject, skeleton.html, skeleton.text)]


def test_skeleton_holds_keys_not_values() -> None:
    skeleton = _tracked()
    for part in (skeleton.subject, skeleton.html, skeleton.text):
        assert "Amélie" not in part
        assert KEY_PATTERN.search(part)
    assert skeleton.subject == "-rp1t-, sign for Nadia"
    keys = {p.key for p in skeleton.placeholders}
    assert keys == {
        k
        for part in (skeleton.subject, skeleton.html, skeleton.text)
        for k in KEY_PATTERN.findall(part)
    }


def test_placeholders_record_field_default_and_context() -> None:
    placeholders = {p.key: p for p in _tracked().placeholders}
    subject = placeholders["-rp1t-"]
    assert (subject.field, subject.default, subject.context) == (
        "member.first_name",
        "Friend",
        "text",
    )
    html = placeholders["-rp1h-"]
    assert (html.field, html.default, html.context) == ("member.first_name", "Friend", "html")
    steward = next(p for p in placeholders.values() if p.field == "member.attributes.steward")
    assert steward.ops == (("default", "on the way"), ("upper", ""))
    assert {p.field for p in placeholders.values()} >= {
        "open_token",
        "click_token",
        "unsubscribe_url",
        "preferences_url",
        "member.email",
        "member.postal_code",
    }


def test_personalize_fills_every_field() -> None:
    email = _tracked().personalize(_recipient())
    assert email.subject == "Amélie, sign for Nadia"
    assert "AMÉLIE, act now" in email.html
    assert "Dear Amélie Tremblay," in email.text
    assert "Your steward is ROSA." in email.text
    assert "We write to amelie@example.org in en (T5J 0N3)." in email.text
    for part in (email.subject, email.html, email.text):
        assert not KEY_PATTERN.search(part)


@pytest.mark.parametrize(
    ("name", "html", "text"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", None),
        ("O'Brien & Co", "O&#39;Brien &amp; Co", None),
        ('"><img src=x onerror=alert(1)>', "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;", None),
    ],
)
def test_values_escaped_in_html_and_as_is_in_text(name: str, html: str, text: str | None) -> None:
    email = _tracked().personalize(_recipient(first_name=name))
    assert f"Dear {html} Tremblay," in email.html
    assert name not in email.html
    assert f"Dear {text or name} Tremblay," in email.text
    assert email.subject == f"{name}, sign for Nadia"


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_defaults_apply_to_empty_values(empty: str | None) -> None:
    email = _tracked().personalize(_recipient(first_name=empty, attributes={}))
    assert email.subject == "Friend, sign for Nadia"
    assert "FRIEND, act now" in email.html
    assert "Dear member Tremblay," in email.text
    assert "Your steward is ON THE WAY." in email.text
    assert "Hi  from Local 118" in email.html  # no default given: empty stays empty


def test_values_cannot_break_lines_or_grow_without_bound() -> None:
    email = _tracked().personalize(_recipient(first_name="Ann\r\nBcc: all@example.org"))
    assert email.subject == "Ann Bcc: all@example.org, sign for Nadia"
    long_name = "x" * 10_000
    email = _tracked().personalize(_recipient(first_name=long_name))
    assert email.subject == "x" * MAX_VALUE_CHARS + ", sign for Nadia"


def test_anonymous_recipient_for_the_web_archive() -> None:
    email = _untracked().personalize(Recipient())
    assert email.subject == "Friend, sign for Nadia"
    assert "Dear member ," in email.text


_NASTY = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "O'Brien & Co",
        "-rp0h-",
        "-rp1t-",
        "x-rp12h-y",
        "-rp3",
        "\r\nBcc: x@example.org",
        "{{ member.email }}",
        "\ue0000\ue001",
        "&amp;",
        '"quoted"',
        "",
        " ",
        "Zoë",
        "王秀英",
        "\u2060",
        "-",
    ]
)
_VALUE = st.one_of(_NASTY, st.text(max_size=40))


@settings(max_examples=150, deadline=None)
@given(
    first=_VALUE,
    last=_VALUE,
    email=_VALUE,
    local=_VALUE,
    steward=_VALUE,
    click_token=_VALUE,
    open_token=_VALUE,
    reverse=st.booleans(),
)
def test_sendgrid_substitution_equals_personalize(
    first: str,
    last: str,
    email: str,
    local: str,
    steward: str,
    click_token: str,
    open_token: str,
    reverse: bool,
) -> None:
    skeleton = _SKELETON
    recipient = _recipient(
        first_name=first,
        last_name=last,
        email=email,
        local=local,
        attributes={"steward": steward},
        click_token=click_token,
        open_token=open_token,
    )
    rendered = skeleton.personalize(recipient)
    assert _sendgrid(skeleton, recipient, reverse=reverse) == [
        rendered.subject,
        rendered.html,
        rendered.text,
    ]


_SKELETON = _tracked()


def test_sendgrid_equivalence_for_every_sample() -> None:
    for (_, language), content in SAMPLES.items():
        skeleton = build_skeleton(
            content, IDENTITIES[language], links=lambda url: "L1", tracking=True, base_url=BASE
        )
        recipient = _recipient(first_name="<b>O'Brien & -rp0h-</b>")
        rendered = skeleton.personalize(recipient)
        assert _sendgrid(skeleton, recipient) == [rendered.subject, rendered.html, rendered.text]


def test_key_shaped_text_from_organizers_is_defused() -> None:
    content = replace(CONTENT, subject="Code -rp1t- stays", body="Literal -rp0h- and -rp2t- here.")
    skeleton = _tracked(content)
    email = skeleton.personalize(_recipient())
    assert email.subject == f"Code -{WORD_JOINER}rp1t- stays"
    assert "Literal &#45;rp0h- and &#45;rp2t- here." in email.html
    assert f"Literal -{WORD_JOINER}rp0h- and -{WORD_JOINER}rp2t- here." in email.text
    assert _sendgrid(skeleton, _recipient()) == [email.subject, email.html, email.text]


def test_tracking_on() -> None:
    email = _tracked().personalize(_recipient())
    assert f'src="{BASE}/t/o/OPEN42.gif"' in email.html
    assert f'href="{BASE}/t/c/p1/CLICK42"' in email.html  # the button and the body link
    assert email.html.count(f"{BASE}/t/c/p1/CLICK42") == 2
    assert f'href="{BASE}/t/c/b2/CLICK42"' in email.html
    assert PETITION_URL not in email.html
    assert f'href="{BASE}/u/UNSUB42"' in email.html
    assert f'href="{BASE}/p/UNSUB42?a=1&amp;b=2"' in email.html
    assert f"sign ({BASE}/t/c/p1/CLICK42)" in email.text
    assert f"Unsubscribe: {BASE}/u/UNSUB42" in email.text
    assert f"Manage preferences: {BASE}/p/UNSUB42?a=1&b=2" in email.text
    assert 'href="mailto:office@example.org"' in email.html  # never tracked


def test_tracking_off_for_preview_test_send_and_archive() -> None:
    skeleton = _untracked()
    assert {p.field for p in skeleton.placeholders}.isdisjoint(
        {"open_token", "click_token", "unsubscribe_url", "preferences_url"}
    )
    email = skeleton.personalize(_recipient())
    assert "/t/o/" not in email.html
    assert "/t/c/" not in email.html + email.text
    assert not any(t in email.html + email.text for t in ("OPEN42", "CLICK42", "UNSUB42"))
    assert email.html.count('href="https://ex.org/preview-only"') == 2
    assert f'href="{PETITION_URL.replace("&", "&amp;")}"' in email.html
    assert f"sign ({PETITION_URL})" in email.text


def test_untracked_build_needs_an_inert_url() -> None:
    with pytest.raises(ValueError, match="inert_url"):
        build_skeleton(CONTENT, IDENTITY, tracking=False, base_url=BASE)


def test_link_rewriting_maps_only_known_urls() -> None:
    asked: list[str] = []

    def links(url: str) -> str | None:
        asked.append(url)
        return {PETITION_URL: "p1"}.get(url)

    email = _tracked(links=links, archive_url="https://ex.org/archive/1").personalize(_recipient())
    assert set(asked) == set(extract_links(CONTENT)) == {PETITION_URL, BACKGROUND}
    assert f'href="{BASE}/t/c/p1/CLICK42"' in email.html
    assert f'href="{BACKGROUND}"' in email.html  # unknown to the link table: as written
    assert 'href="https://ex.org/archive/1"' in email.html  # layout links are never rewritten


def test_link_refs_are_quoted() -> None:
    email = _tracked(links=lambda url: "a/b c").personalize(_recipient())
    assert f"{BASE}/t/c/a%2Fb%20c/CLICK42" in email.html


def test_extract_links_puts_the_button_first() -> None:
    assert extract_links(CONTENT) == [PETITION_URL, BACKGROUND]
    assert extract_links(SAMPLES["day_of_action", "en"]) == [PETITION_URL]
    assert extract_links(SAMPLES["statement", "en"]) == [
        "https://prairieworkers.example/statements/jailed-unionists"
    ]


def test_personal_field_in_a_link_is_refused_at_save_time() -> None:
    content = replace(CONTENT, body="[Sign](https://ex.org/sign?name={{ member.first_name }})")
    (problem,) = check_content(content)
    assert problem.field == "body"
    assert "not inside a link address" in problem.message
    with pytest.raises(ContentError):
        _tracked(content)


def test_check_content_collects_problems_from_every_field() -> None:
    content = replace(
        CONTENT,
        subject="{{ member.nickname }}",
        body="line one\n{% if member.first_name %}x{% endif %}",
        fields={**CONTENT.fields, "headline": "{{ member.first_name"},
    )
    problems = check_content(content, known_attributes={"steward"})
    assert {(p.field, p.line) for p in problems} == {("subject", 1), ("body", 2), ("headline", 1)}


def test_build_refuses_broken_content_with_problems() -> None:
    with pytest.raises(ContentError) as caught:
        _tracked(replace(CONTENT, body="{{ cycler.__init__.__globals__ }}"))
    assert caught.value.problems[0].field == "body"


def test_skeleton_pickles_and_round_trips_json() -> None:
    skeleton = _tracked()
    for copy in (
        pickle.loads(pickle.dumps(skeleton)),  # noqa: S301 - our own object
        Skeleton.from_json(json.loads(json.dumps(skeleton.to_json()))),
    ):
        assert copy == skeleton
        assert copy.personalize(_recipient()) == skeleton.personalize(_recipient())


class _CountingInliner:
    def __init__(self, inliner: Any, calls: Counter[str]) -> None:
        self.inliner = inliner
        self.calls = calls

    def inline(self, html: str) -> str:
        self.calls["css_inline"] += 1
        return str(self.inliner.inline(html))


def test_personalize_never_renders_a_template(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    for name in ("render", "generate"):
        monkeypatch.setattr(Template, name, counting(name, getattr(Template, name)))
    monkeypatch.setattr(MarkdownIt, "parse", counting("markdown", MarkdownIt.parse))
    inliner = render_module._INLINER  # a Rust object: wrap it rather than patch its method
    monkeypatch.setattr(render_module, "_INLINER", _CountingInliner(inliner, calls))

    skeleton = _tracked()
    assert calls["generate"]  # the build did render: organizer text,
    assert calls["render"]  # the layout,
    assert calls["markdown"]  # the Markdown body,
    assert calls["css_inline"]  # and inlined the CSS
    calls.clear()
    for number in range(10_000):
        skeleton.personalize(_recipient(first_name=f"Member {number}", click_token=f"t{number}"))
    assert calls == Counter()


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_layouts_are_accessible_email_html(key: tuple[str, str]) -> None:
    layout, language = key
    skeleton = build_skeleton(
        SAMPLES[key],
        IDENTITIES[language],
        links=LINKS.get,
        tracking=True,
        base_url=BASE,
        archive_url="https://ex.org/a/1",
        calendar_url="https://ex.org/c/1.ics",
    )
    html = skeleton.personalize(_recipient()).html
    parser = _Structure()
    parser.feed(html)
    tags = parser.tags
    assert ("html", {"lang": language, "dir": "ltr"}) in tags
    assert ("meta", {"name": "color-scheme", "content": "light dark"}) in tags
    assert all(attrs.get("role") == "presentation" for tag, attrs in tags if tag == "table")
    assert all("alt" in attrs for tag, attrs in tags if tag == "img")
    assert any(tag == "table" and attrs.get("width") == "600" for tag, attrs in tags)
    assert "display: none" in next(
        a["style"] or "" for t, a in tags if a.get("class") == "preheader"
    )
    assert "<script" not in html
    assert "@media (prefers-color-scheme: dark)" in html  # kept in <style> by css-inline
    assert 'style="' in html.split("<body", 1)[1]  # and the rest inlined
    identity = IDENTITIES[language]
    assert identity.organization.replace("'", "&#39;") in html or identity.organization in html
    email, phone = identity.contact.split(" · ")
    assert email in html
    # The phone number stays on one line on a phone's screen (it would break at a dash).
    assert f'<span style="white-space: nowrap;">{phone}</span>' in html
    words = {
        "en": ("Unsubscribe", "Manage preferences", "View in browser"),
        "fr": ("Se désabonner", "Gérer mes préférences", "Voir dans le navigateur"),
    }
    for word in words[language]:
        assert word in html
        assert word in skeleton.personalize(_recipient()).text
    if layout == "day_of_action":
        assert 'href="https://ex.org/c/1.ics"' in html


def test_one_line_fields_stay_one_line_once_rendered() -> None:
    content = replace(
        CONTENT,
        subject='Hello{{ "\\r\\nBcc: all@example.org" }}',
        fields={**CONTENT.fields, "headline": 'Act{{ "\\n" }}now'},
    )
    assert check_content(content) == []
    email = _tracked(content).personalize(_recipient())
    assert email.subject == "Hello Bcc: all@example.org"
    assert "Act now" in email.text


@pytest.mark.parametrize(
    ("contact", "parts"),
    [
        (
            "solidarity@union.example · 1-800-555-0199",
            [("solidarity@union.example · ", False), ("1-800-555-0199", True)],
        ),
        ("+1 (514) 555-0199 or info@x.ca", [("+1 (514) 555-0199", True), (" or info@x.ca", False)]),
        ("https://union.example/contact", [("https://union.example/contact", False)]),
        ("Local 1004", [("Local 1004", False)]),
    ],
)
def test_contact_phone_numbers_are_found_for_the_footer(contact, parts):
    from app.emails.render import _contact_parts

    assert _contact_parts(contact) == parts


@given(st.text(alphabet=st.sampled_from("ab &<>\"'-rp3h-é\u00a0"), max_size=30))
@settings(max_examples=300, deadline=None)
def test_html_values_escape_exactly_as_markupsafe(value: str) -> None:
    """The shortcut for values with nothing to escape gives markupsafe's output, always."""
    expected = render_module._VALUE_KEY.sub("&#45;", str(escape(value)))
    assert render_module._html_value(value) == expected
