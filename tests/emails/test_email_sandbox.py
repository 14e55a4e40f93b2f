"""Tests for the organizer-text sandbox: the allow-list, and the sandbox beneath it alone."""

from __future__ import annotations

import pytest
from jinja2 import TemplateError, nodes
from jinja2.sandbox import SecurityError

from app.emails.sandbox import (
    MAX_SOURCE_CHARS,
    MergeSpec,
    OrganizerSandbox,
    RenderLimitExceeded,
    SlotRegistry,
    _MemberNamespace,
    apply_ops,
    check_template,
    render_bounded,
    render_organizer_text,
)

# Known escapes (CVE-2016-10745, CVE-2019-10906, CVE-2024-56326, CVE-2025-27516 and the
# classic globals walks) and denial-of-service payloads.
ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self.__init__.__globals__ }}",
    '{{ "{0.__class__}".format(member) }}',
    '{{ "{0.__class__}".format_map(member) }}',
    '{{ member|attr("__class__") }}',
    '{{ x|attr("format") }}',
    '{{ member.first_name|attr("format") }}',
    "{{ member.__class__ }}",
    "{{ member._registry }}",
    "{{ member.first_name.__class__ }}",
    "{{ member.first_name.spec }}",
    "{{ member.first_name.upper() }}",
    "{{ member.attributes.__class__ }}",
    "{{ member.attributes.items() }}",
    "{{ member.first_name | default(member.__class__) }}",
    '{{ member.first_name | map("upper") }}',
    '{{ member.first_name | format("%s") }}',
    "{{ member.first_name | xmlattr }}",
    '{{ {"onclick": "x"} | xmlattr }}',
    "{{ config }}",
    "{{ request.environ }}",
    "{% set x = cycler %}{{ x }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    '{% include "base.html" %}',
    '{% extends "base.html" %}',
    '{% import "base.html" as b %}',
    '{% from "_button.html" import button %}',
    "{% macro m() %}x{% endmacro %}{{ m() }}",
    "{% filter upper %}x{% endfilter %}",
    "{% with a = 1 %}{{ a }}{% endwith %}",
]
DENIAL_OF_SERVICE = [
    '{{ "a" * 100000000 }}',
    "{{ 9 ** 9999999 }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    '{% for a in "x" * 5000 %}{% for b in "x" * 5000 %}{% for c in "x" * 5000 %}'
    "{% endfor %}{% endfor %}{% endfor %}",
    '{% for a in "x" * 9999 %}{{ "y" * 9999 }}{% endfor %}',
    "{{ range(10**9) }}",
]
BRANCHING = [
    "{% if member.first_name %}Hi {{ member.first_name }}{% else %}Hi friend{% endif %}",
    '{{ member.first_name if member.first_name else "friend" }}',
    "{{ member.first_name ~ '!' }}",
]


@pytest.mark.parametrize("payload", ESCAPES + DENIAL_OF_SERVICE + BRANCHING)
def test_payload_is_refused_at_save_time(payload: str) -> None:
    problems = check_template(payload, field_name="body")
    assert problems, payload
    assert all(p.field == "body" and p.line == 1 for p in problems)


@pytest.mark.parametrize("payload", ESCAPES + DENIAL_OF_SERVICE + BRANCHING)
def test_payload_cannot_be_compiled_by_the_sandbox(payload: str) -> None:
    # The allow-list runs inside the environment's own parse step, not only in check_template.
    with pytest.raises(TemplateError):
        render_organizer_text(payload, SlotRegistry(), plain=False)


def test_branching_on_personal_fields_says_how_to_print_them() -> None:
    (problem,) = check_template(BRANCHING[0], field_name="body")
    assert problem.message.startswith("{% if %} is not allowed here.")
    assert '{{ member.first_name | default("friend") }}' in problem.message


class _WithoutAllowList(OrganizerSandbox):
    """The sandbox beneath the allow-list, to show it holds on its own."""

    def enforce_allow_list(
        self, tree: nodes.Template, name: str | None, filename: str | None
    ) -> None:
        return None


@pytest.mark.parametrize("payload", ESCAPES + DENIAL_OF_SERVICE)
def test_sandbox_alone_refuses_escapes_and_bounds_work(payload: str) -> None:
    env = _WithoutAllowList(autoescape=True)
    namespace = {"member": _MemberNamespace(SlotRegistry())}
    try:
        output = render_bounded(env.from_string(payload), namespace)
    except TemplateError:
        # SecurityError, RenderLimitExceeded, UndefinedError (no globals) or
        # TemplateAssertionError (no such filter): refused either way.
        return
    # Only "{% with a = 1 %}{{ a }}{% endwith %}" gets here; it prints "1". Whatever
    # renders, nothing may leak a class or a module.
    assert "class" not in output
    assert "module" not in output


def test_sandbox_alone_counts_loop_iterations() -> None:
    env = _WithoutAllowList(autoescape=True)
    nested = "{% for a in 'x' * 200 %}{% for b in 'x' * 200 %}{% endfor %}{% endfor %}"
    with pytest.raises(RenderLimitExceeded, match="repeats too many times"):
        render_bounded(env.from_string(nested), {})
    assert render_bounded(env.from_string("{% for a in 'abc' %}{{ a }}{% endfor %}"), {}) == "abc"


def test_loops_only_run_under_render_bounded() -> None:
    env = _WithoutAllowList(autoescape=True)
    with pytest.raises(SecurityError, match="render_bounded"):
        env.from_string("{% for a in 'abc' %}{{ a }}{% endfor %}").render()


def test_sandbox_alone_refuses_every_call() -> None:
    env = _WithoutAllowList(autoescape=True)
    with pytest.raises(SecurityError):
        render_bounded(env.from_string("{{ 'abc'.upper() }}"), {})


def test_output_size_is_bounded() -> None:
    env = OrganizerSandbox(autoescape=True)
    template = env.from_string("x" * 2000)
    assert render_bounded(template, {}, max_output=2000) == "x" * 2000
    with pytest.raises(RenderLimitExceeded, match="more than 1000 characters"):
        render_bounded(template, {}, max_output=1000)


def test_source_size_is_bounded() -> None:
    (problem,) = check_template("x" * (MAX_SOURCE_CHARS + 1), field_name="body")
    assert "too long" in problem.message


def test_syntax_error_reported_with_its_line() -> None:
    source = "Hello,\n\nThis is fine.\n{{ member.first_name \nmore"
    (problem,) = check_template(source, field_name="body")
    assert problem.field == "body"
    assert problem.line in (4, 5)  # Jinja reports where the expression runs out
    assert problem.message


def test_unclosed_block_reported_with_its_line() -> None:
    (problem,) = check_template("one\ntwo\n{% if x %}\nthree", field_name="body")
    assert problem.line is not None
    assert "endif" in problem.message or "end of template" in problem.message


def test_unknown_merge_field_reported_with_its_line() -> None:
    source = "Hi {{ member.first_name }},\n\nyour shop is {{ member.shop }}.\n{{ first_name }}"
    problems = check_template(source, field_name="body")
    assert [(p.line, p.message.split(".")[0]) for p in problems] == [
        (3, "Unknown personal field 'member"),
        (4, "Unknown name 'first_name'; personal fields start with member"),
    ]
    assert "member.first_name, member.last_name" in problems[0].message


def test_custom_attributes_checked_against_known_keys() -> None:
    source = 'Steward: {{ member.attributes.steward | default("your steward") }}\n'
    source += '{{ member.attributes["shift pattern"] }}'
    assert check_template(source, field_name="body") == []
    known = {"steward", "shift pattern"}
    assert check_template(source, field_name="body", known_attributes=known) == []
    problems = check_template(source, field_name="body", known_attributes={"steward"})
    assert [(p.line, p.message) for p in problems] == [
        (2, "Unknown custom attribute 'shift pattern'. Known attributes: steward.")
    ]


def test_allowed_constructs() -> None:
    source = (
        "{# a note to self #}Hello {{ member.first_name | default('friend') | title }}\n"
        "{{ member.local|upper }} {{ member.email | lower | trim }} {{ member.language }}\n"
        '{{ member.postal_code | default("", true) }} {{ member.last_name }} {{ "{{" }}\n'
        "{% raw %}{{ not a merge field }}{% endraw %} {{ 42 }}"
    )
    assert check_template(source, field_name="body") == []


def test_merge_fields_become_markers_with_their_filters() -> None:
    registry = SlotRegistry()
    source = "Hi {{ member.first_name | default('friend') | upper }} {{ member.first_name }}"
    out = render_organizer_text(source, registry, plain=True)
    assert out == "Hi \ue0000\ue001 \ue0001\ue001"
    assert registry.specs == (
        MergeSpec("member.first_name", (("default", "friend"), ("upper", ""))),
        MergeSpec("member.first_name"),
    )


def test_marker_characters_in_organizer_text_are_scrubbed() -> None:
    out = render_organizer_text("a\ue0000\ue001b", SlotRegistry(), plain=True)
    assert out == "a0b"


def test_apply_ops_in_the_order_written() -> None:
    assert apply_ops("", (("default", "friend"), ("upper", ""))) == "FRIEND"
    assert apply_ops("", (("upper", ""), ("default", "friend"))) == "friend"
    assert apply_ops("  ", (("default", "friend"),)) == "friend"
    assert apply_ops(" ana maría ", (("trim", ""), ("title", ""))) == "Ana María"


def test_autoescape_applies_to_body_text_only() -> None:
    source = '{{ "<b>&" }}'
    assert render_organizer_text(source, SlotRegistry(), plain=False) == "&lt;b&gt;&amp;"
    assert render_organizer_text(source, SlotRegistry(), plain=True) == "<b>&"
