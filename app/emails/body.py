"""Organizer bodies (Markdown or HTML) to safe email HTML, a plain-text twin and their links."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.emails.content import Problem, is_http_url
from app.emails.sandbox import MARK_OPEN

# Tags and attributes an email client renders well; no scripts, forms, frames, styles
# blocks, classes or ids (they would fight the layout's CSS), no event handlers.
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "del", "div", "em",
        "h1", "h2", "h3", "h4", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small",
        "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
        "tr", "u", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "ol": {"start"},
    "*": {"style"},
}
# Inline styles pasted from an editor keep their look, but nothing that moves or hides.
ALLOWED_STYLES = frozenset(
    {
        "color", "background-color", "font-weight", "font-style", "text-align",
        "text-decoration", "font-size",
    }
)  # fmt: skip
LINK_SCHEMES = ("http", "https", "mailto")
_VOID = frozenset({"br", "hr", "img"})
_BLOCKS = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "blockquote", "ul", "ol", "table", "pre", "hr"}
)
# A marker inside an attribute, raw or as markdown-it's percent-encoding of U+E000.
_MARKER_IN_ATTRIBUTE = re.compile(f"{MARK_OPEN}|%EE%80%80", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\n\f]+")
_BLANK_RUNS = re.compile(r"\n{3,}")

PERSONAL_IN_ATTRIBUTE = (
    "Personal fields can be used in the text only, not inside a link address or an image."
)


@dataclass(frozen=True, slots=True)
class Body:
    """A rendered body.

    Attributes:
        html: Sanitised HTML fragment, links rewritten.
        text: The plain-text twin, links shown as "label (url)".
        links: The distinct http(s) addresses, as written, in order of first appearance.
        problems: Links with a refused scheme, personal fields inside attributes.
    """

    html: str
    text: str
    links: tuple[str, ...]
    problems: tuple[Problem, ...] = field(default=())


def _accept_any_link(url: str) -> bool:
    return True


def _markdown() -> MarkdownIt:
    # breaks: a single line break inside a paragraph is kept (<br>), as organizers mean it
    # in a sign-off ("In solidarity,\nThe Action Team") or an address; the editor's textarea
    # wraps long lines itself, so nobody hard-wraps prose there.
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    # Accept every destination while parsing so a javascript: link is seen and reported
    # (markdown-it would otherwise turn it silently into text); _filter_links drops it.
    md.validateLink = _accept_any_link  # type: ignore[method-assign]
    return md


_MD = _markdown()


def render_body(source: str, body_format: str, *, rewrite: Callable[[str], str]) -> Body:
    """Render a body that has been through the sandbox (it may hold markers).

    Markdown is parsed with raw HTML disabled; its text twin is written from the same
    tokens. HTML is cleaned by nh3 to an email-friendly allow-list; its text twin is read
    from the cleaned tree. Both HTML outputs then go through one serializer that rewrites
    link addresses and refuses personal fields inside attributes.

    Args:
        source: The rendered organizer text.
        body_format: "markdown" or "html".
        rewrite: Maps an http(s) address to the one to put in the email (a tracked
            click address, or itself).

    Returns:
        The body's HTML, text, links and problems.
    """
    problems: list[Problem] = []
    if body_format == "markdown":
        tokens = _MD.parse(source)
        _filter_links(tokens, problems, source)
        writer = _HtmlWriter(rewrite)
        writer.feed(_clean(_MD.renderer.render(tokens, _MD.options, {})))
        writer.close()
        text = _MarkdownText(rewrite).render(tokens)
    else:
        scan = _LinkScan(source)
        scan.feed(source)
        scan.close()
        problems += scan.problems
        writer = _HtmlWriter(rewrite)
        writer.feed(_clean(source))
        writer.close()
        text = writer.text()
    problems += writer.problems
    return Body(
        html="".join(writer.out), text=text, links=tuple(writer.links), problems=tuple(problems)
    )


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        filter_style_properties=set(ALLOWED_STYLES),
        url_schemes=set(LINK_SCHEMES),
        strip_comments=True,
        link_rel=None,
    )


def _scheme_problem(url: str, source: str) -> Problem | None:
    if is_http_url(url) or (url.startswith("mailto:") and len(url) > len("mailto:")):
        return None
    shown = url if len(url) <= 60 else url[:57] + "..."
    message = f"Links must be full addresses starting with https:// ({shown!r})."
    return Problem("body", _line_of(source, url), message)


def _line_of(source: str, needle: str) -> int | None:
    """Best effort: the line where `needle` first occurs (the sandbox keeps line breaks)."""
    at = source.find(needle) if needle else -1
    return source.count("\n", 0, at) + 1 if at >= 0 else None


def _filter_links(tokens: Sequence[Token], problems: list[Problem], source: str) -> None:
    """Drop Markdown links and images whose address is refused, recording a problem."""
    for token in tokens:
        if not token.children:
            continue
        kept: list[Token] = []
        dropping = False
        for child in token.children:
            if child.type == "link_open":
                problem = _scheme_problem(str(child.attrs.get("href", "")), source)
                if problem:
                    problems.append(problem)
                    dropping = True
                    continue
            elif child.type == "link_close" and dropping:
                dropping = False
                continue
            elif child.type == "image" and not is_http_url(src := str(child.attrs.get("src"))):
                message = "Images must be full addresses starting with https://."
                problems.append(Problem("body", _line_of(source, src), message))
                continue
            kept.append(child)
        token.children = kept


class _LinkScan(HTMLParser):
    """Find refused link addresses in organizer HTML before nh3 silently drops them."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.problems: list[Problem] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            problem = _scheme_problem((href or "").strip(), self.source) if href else None
            if problem:
                self.problems.append(problem)


class _HtmlWriter(HTMLParser):
    """Re-serialize cleaned HTML, rewriting links, and read its plain text on the way."""

    def __init__(self, rewrite: Callable[[str], str]) -> None:
        super().__init__(convert_charrefs=True)
        self.rewrite = rewrite
        self.out: list[str] = []
        self.links: list[str] = []
        self.problems: list[Problem] = []
        self._text: list[str] = []
        self._href: list[tuple[str, str, int]] = []  # href, address shown, label start
        self._lists: list[list[int] | None] = []
        self._cells = 0
        self._pre = 0

    # HTML ----------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        rendered = []
        for name, value in attrs:
            value = value or ""
            if _MARKER_IN_ATTRIBUTE.search(value):
                if PERSONAL_IN_ATTRIBUTE not in (p.message for p in self.problems):
                    self.problems.append(Problem("body", None, PERSONAL_IN_ATTRIBUTE))
                continue
            if tag == "a" and name == "href":
                value = self._link(value)
            rendered.append(f' {name}="{escape(value, quote=True)}"')
        self.out.append(f"<{tag}{''.join(rendered)}>")
        self._text_start(tag, dict(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID:
            self.out.append(f"</{tag}>")
        self._text_end(tag)

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data, quote=False))
        self._text.append(data if self._pre else _SPACES.sub(" ", data))

    def _link(self, href: str) -> str:
        if not is_http_url(href):
            return href  # mailto: stays as written and is not tracked
        if href not in self.links:
            self.links.append(href)
        return self.rewrite(href)

    # Text ----------------------------------------------------------------------------------
    def _text_start(self, tag: str, attrs: dict[str, str | None]) -> None:
        if tag in _BLOCKS or tag in ("li", "tr"):
            self._text.append("\n\n" if tag not in ("li", "tr") else "\n")
        if tag == "ul":
            self._lists.append(None)
        elif tag == "ol":
            self._lists.append([int(attrs.get("start") or 1) if _digits(attrs.get("start")) else 1])
        elif tag == "li":
            depth = "  " * max(len(self._lists) - 1, 0)
            counter = self._lists[-1] if self._lists else None
            if counter is None:
                self._text.append(f"{depth}- ")
            else:
                self._text.append(f"{depth}{counter[0]}. ")
                counter[0] += 1
        elif tag == "br":
            self._text.append("\n")
        elif tag == "hr":
            self._text.append("----------\n\n")
        elif tag == "tr":
            self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self._text.append(" | ")
            self._cells += 1
        elif tag == "pre":
            self._pre += 1
        elif tag == "img":
            alt = (attrs.get("alt") or "").strip()
            if alt:
                self._text.append(alt)
        elif tag == "a":
            href = attrs.get("href") or ""
            self._href.append((href, self.rewrite_text(href), len(self._text)))

    def rewrite_text(self, href: str) -> str:
        """Return the address the text part shows for a link."""
        if _MARKER_IN_ATTRIBUTE.search(href):
            return ""
        if href.startswith("mailto:"):
            return href[len("mailto:") :]
        return self.rewrite(href) if is_http_url(href) else href

    def _text_end(self, tag: str) -> None:
        if tag in ("ul", "ol") and self._lists:
            self._lists.pop()
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
        elif tag == "a" and self._href:
            href, shown, start = self._href.pop()
            label = "".join(self._text[start:]).strip()
            if shown and label not in (shown, href):
                self._text.append(f" ({shown})")
        if tag in _BLOCKS:
            self._text.append("\n\n")

    def text(self) -> str:
        """Return the plain-text twin of what was fed."""
        return _tidy("".join(self._text))


def _digits(value: str | None) -> bool:
    return bool(value) and str(value).isdigit()


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    # Whitespace runs were collapsed to one space, so a line starting with exactly one
    # space got it from the source's line breaks; two or more are list indentation.
    lines = [line[1:] if line[:1] == " " and line[:2] != "  " else line for line in lines]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


class _MarkdownText:
    """Write the plain-text twin of a Markdown body from its tokens."""

    def __init__(self, rewrite: Callable[[str], str]) -> None:
        self.rewrite = rewrite
        self.lines: list[str] = []
        self.prefixes: list[str] = []  # "> " per blockquote, spaces per list item
        self.marker: str | None = None  # "- " or "3. " for the next line of a list item
        self.lists: list[list[int] | None] = []  # a counter per ordered list, None if bullet
        self.tight: list[bool] = []
        self.row: list[str] | None = None  # cells of the table row being read

    def render(self, tokens: Sequence[Token]) -> str:
        """Return the text for a token stream."""
        for index, token in enumerate(tokens):
            self._token(token, tokens[index + 1 :])
        return _BLANK_RUNS.sub("\n\n", "\n".join(self.lines)).strip("\n")

    def _token(self, token: Token, rest: Sequence[Token]) -> None:
        kind = token.type
        if kind == "inline":
            text = _inline_text(token.children or [], self.rewrite)
            if self.row is not None:
                self.row.append(text.strip())
                return
            self._block(text)
            if rest and rest[0].type == "heading_close" and rest[0].tag in ("h1", "h2"):
                # Underline top-level headings, as plain-text mail always has.
                width = min(max(len(text), 3), 60)
                self._block(("=" if rest[0].tag == "h1" else "-") * width)
        elif kind in ("paragraph_close", "heading_close"):
            if not (token.hidden and self.tight and self.tight[-1]):
                self._blank()
        elif kind in ("code_block", "fence"):
            self._block("\n".join("    " + line for line in token.content.rstrip("\n").split("\n")))
            self._blank()
        elif kind == "hr":
            self._block("----------")
            self._blank()
        elif kind == "blockquote_open":
            self.prefixes.append("> ")
        elif kind == "blockquote_close":
            while self.lines and self.lines[-1] and not self.lines[-1].strip(" >"):
                self.lines.pop()  # the quote's own trailing blank line
            self.prefixes.pop()
            self._blank()
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrs.get("start", 1))
            self.lists.append([start] if kind == "ordered_list_open" else None)
            self.tight.append(_is_tight(token, rest))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
            self.tight.pop()
            if not (self.tight and self.tight[-1]):  # a nested list in a tight one: no gap
                self._blank()
        elif kind == "list_item_open":
            counter = self.lists[-1] if self.lists else None
            if counter is None:
                self.marker = "- "
            else:
                self.marker = f"{counter[0]}. "
                counter[0] += 1
            self.prefixes.append(" " * len(self.marker))
        elif kind == "list_item_close":
            self.prefixes.pop()
        elif kind == "tr_open":
            self.row = []
        elif kind == "tr_close" and self.row is not None:
            self._block(" | ".join(self.row))
            self.row = None
        elif kind == "table_close":
            self._blank()

    def _block(self, text: str) -> None:
        for number, line in enumerate(text.split("\n")):
            if number == 0 and self.marker is not None:
                prefix = "".join(self.prefixes[:-1]) + self.marker
                self.marker = None
            else:
                prefix = "".join(self.prefixes)
            self.lines.append((prefix + line).rstrip())

    def _blank(self) -> None:
        if self.lines and self.lines[-1].strip(" >"):
            # Inside a quote the blank line keeps its ">" so the quote reads as one.
            self.lines.append("".join(p for p in self.prefixes if p == "> ").rstrip())


def _is_tight(list_open: Token, rest: Sequence[Token]) -> bool:
    # markdown-it marks the paragraphs of a tight list hidden; look at the first one.
    for token in rest:
        if token.type == "paragraph_open" and token.level > list_open.level:
            return token.hidden
    return True


def _inline_text(children: Sequence[Token], rewrite: Callable[[str], str]) -> str:
    parts: list[str] = []
    links: list[tuple[str, str, int]] = []  # href, address shown, where the label starts
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            # Kept, as in the HTML (markdown-it's `breaks`): the organizer meant it.
            parts.append("\n")
        elif child.type == "image":
            parts.append(_inline_text(child.children or [], rewrite))
        elif child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            if href.startswith("mailto:"):
                shown = href[len("mailto:") :]
            elif _MARKER_IN_ATTRIBUTE.search(href):
                shown = ""
            else:
                shown = rewrite(href)
            links.append((href, shown, len(parts)))
        elif child.type == "link_close" and links:
            href, shown, start = links.pop()
            label = "".join(parts[start:]).strip()
            if shown and label not in (shown, href):
                parts.append(f" ({shown})")
    return "".join(parts)
