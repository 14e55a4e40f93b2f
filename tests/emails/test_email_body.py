"""Tests for body rendering: Markdown and HTML to safe email HTML, text twin and links."""

from __future__ import annotations

import pytest

from app.emails.body import PERSONAL_IN_ATTRIBUTE, render_body


def _same(url: str) -> str:
    return url


def _tracked(url: str) -> str:
    return f"https://t.example.org/t/c/{len(url)}/TOKEN"


def test_markdown_to_html_and_text() -> None:
    source = (
        "# Rally at noon\n\n"
        "Bring **your co-workers** and a ~~small~~ big sign.\n"
        "Meet at [the steps](https://example.org/map).\n\n"
        "1. Sign\n2. Share\n\n"
        "- one\n  - nested\n- two\n\n"
        "> Quoted line\n> continues.\n\n"
        "| When | Where |\n|---|---|\n| 12:00 | Steps |\n\n"
        "---\n\n"
        "Write to <mailto:office@example.org> or [us](mailto:office@example.org).\n"
    )
    body = render_body(source, "markdown", rewrite=_same)
    assert body.problems == ()
    assert "<h1>Rally at noon</h1>" in body.html
    assert "<strong>your co-workers</strong>" in body.html
    assert "<s>small</s>" in body.html
    assert '<a href="https://example.org/map">the steps</a>' in body.html
    assert "<table>" in body.html
    assert body.links == ("https://example.org/map",)
    assert body.text == (
        "Rally at noon\n"
        "=============\n"
        "\n"
        "Bring your co-workers and a small big sign.\n"
        "Meet at the steps (https://example.org/map).\n"
        "\n"
        "1. Sign\n"
        "2. Share\n"
        "\n"
        "- one\n"
        "  - nested\n"
        "- two\n"
        "\n"
        "> Quoted line\n"
        "> continues.\n"
        "\n"
        "When | Where\n"
        "12:00 | Steps\n"
        "\n"
        "----------\n"
        "\n"
        "Write to mailto:office@example.org or us (office@example.org)."
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_single_line_break_is_kept_in_html_and_text(newline: str) -> None:
    """A sign-off on two lines stays on two lines; a blank line still makes a paragraph."""
    source = newline.join(["See you there.", "", "In solidarity,", "The Action Team", ""])
    body = render_body(source, "markdown", rewrite=_same)
    assert body.html == "<p>See you there.</p>\n<p>In solidarity,<br>\nThe Action Team</p>\n"
    assert body.text == "See you there.\n\nIn solidarity,\nThe Action Team"


def test_markdown_raw_html_is_text_not_markup() -> None:
    body = render_body(
        '<script>alert(1)</script> <img src=x onerror="alert(1)">', "markdown", rewrite=_same
    )
    assert "<script" not in body.html
    assert "<img" not in body.html
    assert "&lt;script&gt;" in body.html


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "vbscript:x", "data:text/html;base64,PHNjcmlwdD4=", "/relative"]
)
def test_markdown_refused_links_are_reported_and_dropped(link: str) -> None:
    body = render_body(f"[click]({link}) here", "markdown", rewrite=_same)
    assert [p.field for p in body.problems] == ["body"]
    assert "https://" in body.problems[0].message
    assert "href" not in body.html
    assert "click here" in body.text


def test_markdown_image_must_be_http() -> None:
    body = render_body("![logo](javascript:alert(1))", "markdown", rewrite=_same)
    assert body.problems
    assert "<img" not in body.html


def test_html_is_sanitised() -> None:
    source = (
        '<p onclick="steal()" style="color: red; position: fixed">Hi <b>all</b></p>'
        "<script>alert(1)</script><style>p{}</style><iframe src=https://x.example></iframe>"
        '<a href="https://example.org/a" target="_blank" onmouseover="x()">go</a>'
        '<img src="https://example.org/i.png" alt="Our banner" onerror="x()">'
        "<form><input name=q></form><!-- comment -->"
    )
    body = render_body(source, "html", rewrite=_same)
    assert body.problems == ()
    for banned in (
        "onclick",
        "script",
        "alert",
        "iframe",
        "position",
        "onmouseover",
        "<form",
        "<input",
        "comment",
        "onerror",
        "target",
    ):
        assert banned not in body.html, banned
    assert '<p style="color:red">Hi <b>all</b></p>' in body.html
    assert '<a href="https://example.org/a">go</a>' in body.html
    assert '<img src="https://example.org/i.png" alt="Our banner">' in body.html


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:x", "/path", "data:x"]
)
def test_html_refused_links_are_reported(href: str) -> None:
    body = render_body(f'<a href="{href}">x</a>', "html", rewrite=_same)
    assert body.problems
    assert "javascript" not in body.html.lower()


def test_html_text_twin() -> None:
    source = (
        "<h2>Day of action</h2><p>Meet   at\n the <a href='https://example.org/m'>steps</a>.<br>"
        "Noon sharp.</p><ul><li>Sign</li><li>Bring a friend</li></ul>"
        "<ol start='3'><li>Three</li><li>Four</li></ol><p>Bye &amp; thanks</p>"
    )
    body = render_body(source, "html", rewrite=_tracked)
    assert body.text == (
        "Day of action\n\n"
        "Meet at the steps (https://t.example.org/t/c/21/TOKEN).\nNoon sharp.\n\n"
        "- Sign\n- Bring a friend\n\n"
        "3. Three\n4. Four\n\n"
        "Bye & thanks"
    )
    assert 'href="https://t.example.org/t/c/21/TOKEN"' in body.html
    assert "Bye &amp; thanks" in body.html


def test_links_distinct_in_order_and_rewritten() -> None:
    source = (
        "[a](https://example.org/b) [b](https://example.org/a) [c](https://example.org/b) "
        "[mail](mailto:x@example.org)"
    )
    body = render_body(source, "markdown", rewrite=_tracked)
    assert body.links == ("https://example.org/b", "https://example.org/a")
    assert body.html.count("https://t.example.org/t/c/") == 3
    assert 'href="mailto:x@example.org"' in body.html


def test_ampersands_in_links_survive_both_ways() -> None:
    body = render_body("[p](https://example.org/p?a=1&b=2)", "markdown", rewrite=_same)
    assert body.links == ("https://example.org/p?a=1&b=2",)
    assert 'href="https://example.org/p?a=1&amp;b=2"' in body.html
    assert body.text == "p (https://example.org/p?a=1&b=2)"


@pytest.mark.parametrize(
    ("source", "body_format"),
    [
        ("[x](https://example.org/?n=\ue0000\ue001)", "markdown"),
        ("![\ue0000\ue001](https://example.org/i.png)", "markdown"),
        ('<a href="https://example.org/?n=\ue0000\ue001">x</a>', "html"),
        ('<img src="https://example.org/i.png" alt="\ue0000\ue001">', "html"),
    ],
)
def test_personal_fields_refused_inside_attributes(source: str, body_format: str) -> None:
    body = render_body(source, body_format, rewrite=_same)
    assert [p.message for p in body.problems] == [PERSONAL_IN_ATTRIBUTE]


def test_markers_pass_through_text() -> None:
    body = render_body(
        "Hi *\ue0000\ue001*, [join \ue0001\ue001](https://e.org)", "markdown", rewrite=_same
    )
    assert body.problems == ()
    assert "<em>\ue0000\ue001</em>" in body.html
    assert ">join \ue0001\ue001</a>" in body.html
    assert body.text == "Hi \ue0000\ue001, join \ue0001\ue001 (https://e.org)"


def test_refused_links_report_their_line() -> None:
    body = render_body("Intro.\n\nSee [this](javascript:alert(1)).", "markdown", rewrite=_same)
    assert [p.line for p in body.problems] == [3]
    body = render_body('<p>a</p>\n<p><a href="/relative">b</a></p>', "html", rewrite=_same)
    assert [p.line for p in body.problems] == [2]
