"""One rendering pipeline for preview, test send and real send: skeletons, then substitution."""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import css_inline
from flask import current_app, has_app_context
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from markupsafe import Markup, escape

from app.emails.body import Body, render_body
from app.emails.content import (
    TEMPLATED_FIELDS,
    EmailContent,
    Identity,
    Problem,
    Recipient,
    check_fields,
    is_http_url,
    parse_event_time,
)
from app.emails.sandbox import (
    MARK_CLOSE,
    MARK_OPEN,
    MergeSpec,
    Op,
    SlotRegistry,
    apply_ops,
    check_template,
    render_organizer_text,
    scrub,
)
from app.emails.strings import format_event_date, format_event_hours, ui_strings
from config.settings import EMAIL_TEMPLATES_DIR

# Member values are names, codes and short attributes; the cap keeps one recipient's
# substitutions far below SendGrid's 10,000 bytes per personalization.
MAX_VALUE_CHARS = 256

KEY_PATTERN = re.compile(r"-rp\d+[ht]-")
_KEY_SPLIT = re.compile(r"(-rp\d+[ht]-)")
_MARKER = re.compile(f"{MARK_OPEN}(\\d+){MARK_CLOSE}")
# Any hyphen that starts something key-shaped; in values also a bare "-rp<digit>", so a
# value cannot end in half a key that the template text after it completes.
_LITERAL_KEY = re.compile(r"-(?=rp\d+[ht]-)")
_HTML_SPECIAL = re.compile("[&<>\"']")  # what markupsafe.escape replaces
_VALUE_KEY = re.compile(r"-(?=rp\d)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
WORD_JOINER = "\u2060"

SYSTEM_FIELDS = ("open_token", "click_token", "unsubscribe_url", "preferences_url")
Context = Literal["html", "text"]


class ContentError(ValueError):
    """Content that cannot be rendered; `problems` says why, as at save time."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in self.problems))


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One key in a skeleton and what it is replaced with.

    Attributes:
        key: The key as it appears in the skeleton, e.g. "-rp3h-".
        field: "member.first_name", "member.attributes.<key>", "open_token",
            "click_token", "unsubscribe_url" or "preferences_url".
        context: "html" (value HTML-escaped) or "text" (value as is: subject, text part).
        ops: The merge filters, in order, e.g. (("default", "friend"),).
    """

    key: str
    field: str
    context: Context
    ops: tuple[Op, ...] = ()

    @property
    def default(self) -> str:
        """The text used when the member's value is empty ("" when there is none)."""
        return next((argument for name, argument in self.ops if name == "default"), "")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One recipient's email."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Skeleton:
    """A campaign variant rendered once, with placeholder keys for per-recipient values.

    `build_skeleton` renders the organizer's text in the sandbox, the body, the layout
    around them, and inlines the CSS, once per language variant. What differs per
    recipient (merge fields, the tracking token, the unsubscribe and preference links) is
    left as keys: `personalize` fills them by plain substitution, and `substitutions`
    gives the same values for SendGrid's `substitutions`, so that SendGrid's replacement
    of the keys yields exactly what `personalize` does.

    Keys look like `-rp3h-` (slot 3, HTML context) and `-rp3t-` (slot 3, plain text: the
    subject and the text part). A slot has two keys because SendGrid puts one value
    everywhere a key occurs, and the HTML part needs it escaped. Key-shaped text in
    organizer content or in recipient values is defused: in HTML its hyphen becomes
    `&#45;`; in text a WORD JOINER (U+2060, invisible) follows the hyphen.

    Plain strings and tuples, so it pickles (and `to_json`/`from_json` give a dict) for
    a per-process cache keyed by campaign and variant.
    """

    subject: str
    html: str
    text: str
    placeholders: tuple[Placeholder, ...]
    _plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _Plan.of(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # The plan holds getters; rebuild it on load rather than pickle it.
        return (Skeleton, (self.subject, self.html, self.text, self.placeholders))

    def substitutions(self, recipient: Recipient) -> dict[str, str]:
        """Return every key of this skeleton with its value for `recipient`.

        Values are cleaned (control characters and line breaks become spaces, outer spaces
        go, values are capped at 256 characters), HTML-escaped for HTML keys, and defused.
        These are SendGrid `substitutions` for the recipient's personalization.
        """
        plan = self._plan
        # Each slot's value is cleaned, filtered and escaped once per context it appears in,
        # however many keys share it (a send does this for every recipient).
        escaped: list[tuple[str, str]] = []
        for (get, ops), (in_html, in_text) in zip(plan.slots, plan.contexts, strict=True):
            value = _clean(get(recipient))
            if ops:
                value = apply_ops(value, ops)
            escaped.append(
                (_html_value(value) if in_html else "", _text_value(value) if in_text else "")
            )
        return {key: escaped[slot][0 if is_html else 1] for key, slot, is_html in plan.keys}

    def personalize(self, recipient: Recipient) -> RenderedEmail:
        """Fill the placeholders for one recipient; no template is rendered.

        Returns:
            What SendGrid sends after applying `substitutions(recipient)`.
        """
        subs = self.substitutions(recipient)
        plan = self._plan
        return RenderedEmail(
            subject=_fill(plan.subject, subs),
            html=_fill(plan.html, subs),
            text=_fill(plan.text, subs),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the skeleton as JSON-ready data."""
        return {
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "placeholders": [
                {"key": p.key, "field": p.field, "context": p.context, "ops": [*map(list, p.ops)]}
                for p in self.placeholders
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Skeleton:
        """Rebuild a skeleton from `to_json` data."""
        placeholders = tuple(
            Placeholder(
                key=p["key"],
                field=p["field"],
                context=p["context"],
                ops=tuple((str(n), str(a)) for n, a in p["ops"]),
            )
            for p in data["placeholders"]
        )
        return cls(data["subject"], data["html"], data["text"], placeholders)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What personalize needs, precomputed: a getter per slot and the split strings."""

    slots: tuple[tuple[Callable[[Recipient], object], tuple[Op, ...]], ...]
    keys: tuple[tuple[str, int, bool], ...]
    contexts: tuple[tuple[bool, bool], ...]  # per slot: used in HTML, used in text
    subject: tuple[str, ...]
    html: tuple[str, ...]
    text: tuple[str, ...]

    @classmethod
    def of(cls, skeleton: Skeleton) -> _Plan:
        slot_of: dict[tuple[str, tuple[Op, ...]], int] = {}
        slots: list[tuple[Callable[[Recipient], object], tuple[Op, ...]]] = []
        keys: list[tuple[str, int, bool]] = []
        for placeholder in skeleton.placeholders:
            spec = (placeholder.field, placeholder.ops)
            if spec not in slot_of:
                slot_of[spec] = len(slots)
                slots.append((_getter(placeholder.field), placeholder.ops))
            keys.append((placeholder.key, slot_of[spec], placeholder.context == "html"))
        known = {key for key, _, _ in keys}
        for text in (skeleton.subject, skeleton.html, skeleton.text):
            unknown = set(KEY_PATTERN.findall(text)) - known
            if unknown:
                raise ValueError(f"Skeleton keys without a placeholder: {sorted(unknown)}")
        contexts = tuple(
            (
                any(is_html for _, slot, is_html in keys if slot == n),
                any(not is_html for _, slot, is_html in keys if slot == n),
            )
            for n in range(len(slots))
        )
        return cls(
            slots=tuple(slots),
            keys=tuple(keys),
            contexts=contexts,
            subject=tuple(_KEY_SPLIT.split(skeleton.subject)),
            html=tuple(_KEY_SPLIT.split(skeleton.html)),
            text=tuple(_KEY_SPLIT.split(skeleton.text)),
        )


def _getter(source: str) -> Callable[[Recipient], object]:
    if source in SYSTEM_FIELDS:
        return attrgetter(source)
    prefix = "member.attributes."
    if source.startswith(prefix):
        key = source[len(prefix) :]
        return lambda recipient: recipient.attributes.get(key)
    name = source.removeprefix("member.")
    if source.startswith("member.") and name in _MEMBER_ATTRS:
        return attrgetter(name)
    raise ValueError(f"Unknown placeholder field {source!r}")


_MEMBER_ATTRS = frozenset({"first_name", "last_name", "email", "local", "language", "postal_code"})


def _fill(parts: tuple[str, ...], subs: Mapping[str, str]) -> str:
    # parts alternate literal, key, literal, ... (re.split with one group).
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        out.append(subs[parts[index]])
        out.append(parts[index + 1])
    return "".join(out)


# These three run for every recipient and key of a send (sending's hot path): each skips
# its regular expression when a cheap test shows it would not change anything.


def _clean(value: object) -> str:
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if not text.isprintable():  # printable text holds none of the _CONTROL characters
        text = _CONTROL.sub(" ", text)
    return text.strip()[:MAX_VALUE_CHARS]


def _html_value(value: str) -> str:
    # Most values (names, locals, tokens) hold nothing to escape: one C search instead of
    # building a Markup per value (a send fills several keys for each recipient).
    escaped = value if _HTML_SPECIAL.search(value) is None else str(escape(value))
    return _VALUE_KEY.sub("&#45;", escaped) if "-rp" in escaped else escaped


def _text_value(value: str) -> str:
    return _VALUE_KEY.sub("-" + WORD_JOINER, value) if "-rp" in value else value


def _defuse_html(text: str) -> str:
    return _LITERAL_KEY.sub("&#45;", text)


def _defuse_text(text: str) -> str:
    return _LITERAL_KEY.sub("-" + WORD_JOINER, text)


def templates_dir() -> Path:
    """Where the email layouts are: the EMAIL_TEMPLATES_DIR setting of the running app.

    Outside an app (a test of the renderer alone, a benchmark) the setting's default, the
    one config.settings resolves from the application's root.
    """
    if has_app_context():
        return Path(current_app.config["EMAIL_TEMPLATES_DIR"])
    return EMAIL_TEMPLATES_DIR


def layout_environment() -> Environment:
    """Return the trusted environment for templates/emails (never organizer text)."""
    return _layout_environment(templates_dir())


@functools.cache
def _layout_environment(directory: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )


def warm_layouts() -> int:
    """Compile every layout's templates (and what they include) into the environment's cache.

    A process's first skeleton otherwise compiles them (about 0.1 s of its 0.2 s; later
    campaigns take 15 ms). Called in the Celery worker's parent before it forks its pool,
    whose processes inherit the compiled templates. Returns how many were compiled.
    """
    env = layout_environment()
    names = [name for name in env.list_templates() if name.endswith((".html", ".txt"))]
    for name in names:
        env.get_template(name)
    return len(names)


# keep_at_rules leaves the media queries (phone widths, dark mode) in a <style> block,
# where they belong; everything else is inlined for clients that drop <style>.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def extract_links(content: EmailContent) -> list[str]:
    """Return the distinct http(s) addresses of a variant, in order of first appearance.

    The button's address (cta_url) comes first, then the body's links. These are the
    addresses the caller's link table must know for click tracking.

    Raises:
        ContentError: When the content does not render (check it with `check_content`).
    """
    links: list[str] = []
    cta_url = content.fields.get("cta_url", "").strip()
    if is_http_url(cta_url):
        links.append(cta_url)
    key = (content.body, content.body_format)
    found = _BODY_LINKS.get(key)
    if found is None:
        found = _render_body(content, SlotRegistry(), rewrite=lambda url: url).links
    links += [url for url in found if url not in links]
    return links


# The links of recently rendered bodies, by source and format: a save checks a variant
# (which renders its body) and then lists its links; the Markdown is parsed once, not twice.
# Links are the addresses as written, whatever the rewrite, so any render can fill this.
_BODY_LINKS: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()
_BODY_LINKS_SIZE = 16
_body_links_lock = threading.Lock()


def _remember_links(key: tuple[str, str], links: tuple[str, ...]) -> None:
    with _body_links_lock:
        _BODY_LINKS[key] = links
        _BODY_LINKS.move_to_end(key)
        while len(_BODY_LINKS) > _BODY_LINKS_SIZE:
            _BODY_LINKS.popitem(last=False)


def check_content(
    content: EmailContent, *, known_attributes: Collection[str] | None = None
) -> list[Problem]:
    """Check a campaign variant at save time: fields, templates, and a trial build.

    Args:
        content: The variant.
        known_attributes: The custom attribute keys members have, if known.

    Returns:
        Every problem found; a variant with problems must not be scheduled.
    """
    problems = check_fields(content)
    texts = [("subject", content.subject), ("preheader", content.preheader), ("body", content.body)]
    texts += [(name, value) for name, value in content.fields.items() if name in TEMPLATED_FIELDS]
    # A field already refused (a 200,000-character subject) is not parsed as well.
    refused = {problem.field for problem in problems}
    for name, text in texts:
        if name not in refused:
            problems += check_template(text, field_name=name, known_attributes=known_attributes)
    if problems:
        return problems
    try:
        skeleton = build_skeleton(
            content,
            Identity("Trial", "1 Trial Street", "trial@example.org"),
            links=lambda url: "1",
            tracking=True,
            base_url="https://example.org",
            calendar_url="https://example.org/calendar/1.ics",
        )
        skeleton.personalize(Recipient(first_name="Alex"))
    except ContentError as error:
        return error.problems
    return []


def build_skeleton(
    content: EmailContent,
    identity: Identity,
    *,
    links: Callable[[str], str | None] | None = None,
    tracking: bool,
    base_url: str,
    archive_url: str | None = None,
    calendar_url: str | None = None,
    inert_url: str | None = None,
) -> Skeleton:
    """Render one campaign variant into a skeleton: once, for every recipient of it.

    Args:
        content: The variant, which should have passed `check_content`.
        identity: The sender identification for the footer (CASL).
        links: Maps each address from `extract_links` to its link reference in the
            campaign's link table; None (or a None result) leaves the link as written.
            Used only when tracking.
        tracking: True for real sends: links become `{base_url}/t/c/<ref>/<click token>`,
            an open pixel `{base_url}/t/o/<open token>.gif` is added, and the unsubscribe and
            preference links are the recipient's. False for preview, test send and the
            web archive: links as written, no pixel, and both links point at `inert_url`.
        base_url: The tracking host, e.g. "https://t.example.org".
        archive_url: The public "view in browser" page; None leaves the link out.
        calendar_url: The day of action's .ics address; None leaves the link out.
        inert_url: A harmless page for unsubscribe/preferences when not tracking.

    Returns:
        The skeleton.

    Raises:
        ContentError: When the content does not render.
        ValueError: For a blank identity, or no inert_url when not tracking.
    """
    _check_skeleton_inputs(content, identity, tracking=tracking, inert_url=inert_url)
    registry = SlotRegistry()
    base = base_url.rstrip("/")
    # Each use has its own token scope (infra/tokens.py): the pixel's token cannot open a
    # link or the unsubscribe page, whoever sees the image URL.
    click_token = registry.marker(MergeSpec("click_token")) if tracking else ""
    rewrite = _link_rewriter(links if tracking else None, base, click_token)
    subject = _render_text(content.subject, "subject", registry)
    preheader = _render_text(content.preheader, "preheader", registry)
    fields = {
        name: _render_text(value, name, registry) if name in TEMPLATED_FIELDS else scrub(value)
        for name, value in content.fields.items()
    }
    body = _render_body(content, registry, rewrite=rewrite)
    # After the body: the slots are numbered in the order they are made.
    recipient_links = _recipient_links(registry, base, tracking=tracking, inert=inert_url)
    context = _layout_context(content, identity, subject, preheader, fields, body, rewrite)
    context |= {"archive_url": archive_url, "calendar_url": calendar_url, **recipient_links}
    env = layout_environment()
    html = _INLINER.inline(env.get_template(f"{content.layout}.html").render(context))
    text = env.get_template(f"{content.layout}.txt").render(context) + "\n"
    return _finish(subject, html, text, registry.specs)


def _check_skeleton_inputs(
    content: EmailContent, identity: Identity, *, tracking: bool, inert_url: str | None
) -> None:
    problems = check_fields(content)
    if problems:
        raise ContentError(problems)
    sender = (identity.organization, identity.mailing_address, identity.contact)
    if not all(part.strip() for part in sender):
        raise ValueError("CASL: the sender's name, mailing address and contact are all required.")
    if not tracking and inert_url is None:
        raise ValueError("inert_url is required when tracking is off.")


def _link_rewriter(
    links: Callable[[str], str | None] | None, base: str, click_token: str
) -> Callable[[str], str]:
    """A link as sent: through the click redirect when it has a reference, else as written."""

    def rewrite(url: str) -> str:
        ref = links(url) if links is not None else None
        if ref is None:
            return url
        return f"{base}/t/c/{quote(ref, safe='')}/{click_token}"

    return rewrite


def _recipient_links(
    registry: SlotRegistry, base: str, *, tracking: bool, inert: str | None
) -> dict[str, str | None]:
    """The unsubscribe and preference links and the open pixel: the recipient's own when
    tracking, else the inert page and no pixel."""
    if not tracking:
        return {"unsubscribe_url": str(inert), "preferences_url": str(inert), "pixel_url": None}
    return {
        "unsubscribe_url": registry.marker(MergeSpec("unsubscribe_url")),
        "preferences_url": registry.marker(MergeSpec("preferences_url")),
        "pixel_url": f"{base}/t/o/{registry.marker(MergeSpec('open_token'))}.gif",
    }


def _layout_context(
    content: EmailContent,
    identity: Identity,
    subject: str,
    preheader: str,
    fields: Mapping[str, str],
    body: Body,
    rewrite: Callable[[str], str],
) -> dict[str, Any]:
    """What the layout templates read: plain data, the organizer's text already rendered."""
    cta_url = fields.get("cta_url", "").strip()
    return {
        "lang": content.language,
        "t": ui_strings(content.language),
        "subject": subject,
        "preheader": preheader,
        "headline": fields.get("headline", ""),
        "byline": fields.get("byline", ""),
        "body_html": Markup(body.html),  # noqa: S704 - cleaned by nh3 and re-serialized
        "body_text": body.text,
        "cta": {"label": fields["cta_label"], "url": rewrite(cta_url)} if cta_url else None,
        "event": _event(fields, content.language) if content.layout == "day_of_action" else None,
        "identity": {
            "organization": scrub(identity.organization),
            "address_lines": _lines(scrub(identity.mailing_address)),
            "contact": scrub(identity.contact),
            "contact_parts": _contact_parts(scrub(identity.contact)),
        },
    }


def _render_text(source: str, name: str, registry: SlotRegistry) -> str:
    try:
        text = render_organizer_text(source, registry, plain=True)
    except TemplateError as error:
        raise ContentError([_problem(name, error)]) from error
    # These fields are one line (a header, a heading); a quoted "\n" must not add one.
    return _CONTROL.sub(" ", text)


def _render_body(
    content: EmailContent, registry: SlotRegistry, *, rewrite: Callable[[str], str]
) -> Body:
    try:
        source = render_organizer_text(content.body, registry, plain=False)
    except TemplateError as error:
        raise ContentError([_problem("body", error)]) from error
    body = render_body(source, content.body_format, rewrite=rewrite)
    if body.problems:
        raise ContentError(body.problems)
    _remember_links((content.body, content.body_format), body.links)
    return body


def _problem(name: str, error: TemplateError) -> Problem:
    return Problem(name, getattr(error, "lineno", None), str(error.message))


def _event(fields: Mapping[str, str], language: str) -> dict[str, Any]:
    when = parse_event_time(fields)
    return {
        "date": format_event_date(when.start, language),
        "hours": format_event_hours(when, language),
        "place": fields["place"],
        "address_lines": _lines(fields["address"]),
        "what_to_bring": _lines(fields.get("what_to_bring", "")),
    }


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# A phone number: digits with spaces, dots, dashes or brackets between (1-800-555-0199,
# +1 (514) 555-0199). Narrow screens would break it at a dash.
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")


def _contact_parts(text: str) -> list[tuple[str, bool]]:
    """The contact line as (text, is a phone number) pieces, so the HTML footer can keep each
    phone number on one line on a phone's screen."""
    parts: list[tuple[str, bool]] = []
    at = 0
    for match in _PHONE.finditer(text):
        if match.start() > at:
            parts.append((text[at : match.start()], False))
        parts.append((match.group(), True))
        at = match.end()
    if at < len(text):
        parts.append((text[at:], False))
    return parts


def _finish(subject: str, html: str, text: str, specs: tuple[MergeSpec, ...]) -> Skeleton:
    """Defuse literal key-shaped text, then turn markers into keys and list them."""
    found: dict[str, Placeholder] = {}

    def key_for(context: Context) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            spec = specs[int(match.group(1))]
            key = f"-rp{match.group(1)}{context[0]}-"
            found.setdefault(key, Placeholder(key, spec.source, context, spec.ops))
            return key

        return replace

    # Defusing comes last, after css-inline, which would decode an "&#45;" written earlier.
    subject = _MARKER.sub(key_for("text"), _defuse_text(subject))
    html = _MARKER.sub(key_for("html"), _defuse_html(html))
    text = _MARKER.sub(key_for("text"), _defuse_text(text))
    if any(MARK_OPEN in s or MARK_CLOSE in s for s in (subject, html, text)):
        message = "A personal field ended up in a place that cannot hold one."
        raise ContentError([Problem("body", None, message)])
    return Skeleton(subject=subject, html=html, text=text, placeholders=tuple(found.values()))
