"""The sandbox for organizer-written text: plain text and printed merge fields, bounded."""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    DictLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    nodes,
)
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from app.emails.content import Problem

MEMBER_FIELDS = ("first_name", "last_name", "email", "local", "language", "postal_code")
TRANSFORMS = ("upper", "lower", "title", "trim")
MERGE_FILTERS = ("default", *TRANSFORMS)

MAX_SOURCE_CHARS = 20_000
# Parsing and compiling cost Jinja about 0.4 ms per expression, and its parser recurses once
# per nested bracket or chained filter (20,000 of them raised RecursionError). These bounds,
# checked by one pass of the lexer before anything is parsed, keep the save of the largest
# allowed text well under a second and the parser's depth far from Python's limit.
MAX_MERGE_FIELDS = 50  # {{ ... }} and {% ... %} tags in one text
MAX_TAG_TOKENS = 16  # names, operators and literals in one tag: three filters use about 12
_EXPRESSION_TOKENS = frozenset({"name", "operator", "string", "integer", "float"})
MAX_OUTPUT_CHARS = 512 * 1024
MAX_RENDER_SECONDS = 2.0
# Bound on what `*` may build from a string or a sequence, should an operator ever get past
# the allow-list: 'a' * 100000000 must not allocate 100 MB.
MAX_REPEAT_ITEMS = 10_000
# Bound on the iterations of all loops of one render, likewise: three nested loops over
# 5,000 items would otherwise run for hours without writing a byte.
MAX_LOOP_ITERATIONS = 10_000

# Placeholders are first written as these private-use characters (which Markdown, nh3 and
# css-inline all pass through as text) and only turned into SendGrid keys once the whole
# email is built, so no later stage can mangle them. Organizer text is scrubbed of them.
MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"

PRINT_ONLY_HINT = (
    'Personal fields can only be printed, e.g. {{ member.first_name | default("friend") }}.'
)
_FIELD_LIST = ", ".join(f"member.{name}" for name in MEMBER_FIELDS)
_STATEMENT_NAMES: dict[type[nodes.Node], str] = {
    nodes.For: "for",
    nodes.If: "if",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
    nodes.With: "with",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.Block: "block",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.Extends: "extends",
}

Op = tuple[str, str]


class RenderLimitExceeded(SecurityError):
    """Raised when organizer text renders too much output or takes too long."""


@dataclass(frozen=True, slots=True)
class MergeSpec:
    """What one placeholder stands for: a source value and the filters applied to it.

    Attributes:
        source: "member.first_name", "member.attributes.<key>", or a system value:
            "open_token", "click_token", "unsubscribe_url", "preferences_url".
        ops: Filters in the order written, e.g. (("default", "friend"), ("upper", "")).
    """

    source: str
    ops: tuple[Op, ...] = ()


class SlotRegistry:
    """Numbers the distinct merge specs met while building one skeleton."""

    def __init__(self) -> None:
        self._index: dict[MergeSpec, int] = {}

    def marker(self, spec: MergeSpec) -> str:
        """Return the private-use marker standing for `spec`, numbering it on first use."""
        index = self._index.setdefault(spec, len(self._index))
        return f"{MARK_OPEN}{index}{MARK_CLOSE}"

    @property
    def specs(self) -> tuple[MergeSpec, ...]:
        """The specs in order of their numbers."""
        return tuple(self._index)


class MergeSlot:
    """What `member.first_name` evaluates to inside the sandbox: a placeholder, not a value.

    Printing it writes a marker; the merge filters return a new slot with one more op.
    """

    __slots__ = ("_registry", "spec")

    def __init__(self, registry: SlotRegistry, spec: MergeSpec) -> None:
        self._registry = registry
        self.spec = spec

    def then(self, op: Op) -> MergeSlot:
        """Return this slot with one more filter applied."""
        return MergeSlot(self._registry, MergeSpec(self.spec.source, (*self.spec.ops, op)))

    def __str__(self) -> str:
        return self._registry.marker(self.spec)

    def __html__(self) -> str:
        # Markers hold no character HTML escaping would touch; values are escaped later,
        # per recipient, by the skeleton.
        return str(self)


class _MemberNamespace:
    """`member` inside the sandbox; its only readable attributes are the merge fields."""

    __slots__ = ("_registry",)

    def __init__(self, registry: SlotRegistry) -> None:
        self._registry = registry

    def __getattr__(self, name: str) -> MergeSlot | _AttributesNamespace:
        if name in MEMBER_FIELDS:
            return MergeSlot(self._registry, MergeSpec(f"member.{name}"))
        if name == "attributes":
            return _AttributesNamespace(self._registry)
        raise AttributeError(name)


class _AttributesNamespace:
    """`member.attributes` inside the sandbox: every key is a placeholder."""

    __slots__ = ("_registry",)

    def __init__(self, registry: SlotRegistry) -> None:
        self._registry = registry

    def __getattr__(self, name: str) -> MergeSlot:
        if name.startswith("_"):
            raise AttributeError(name)
        return MergeSlot(self._registry, MergeSpec(f"member.attributes.{name}"))

    def __getitem__(self, key: object) -> MergeSlot:
        if not isinstance(key, str) or key.startswith("_"):
            raise KeyError(key)
        return MergeSlot(self._registry, MergeSpec(f"member.attributes.{key}"))


def _merge_default(value: object, text: object = "", boolean: object = False) -> MergeSlot:
    # `boolean` is accepted for people used to Jinja; empty values always get the default.
    return _slot(value, "default").then(("default", str(text)))


def _transform(name: str) -> Any:
    def apply(value: object) -> MergeSlot:
        return _slot(value, name).then((name, ""))

    apply.__name__ = name
    return apply


def _slot(value: object, filter_name: str) -> MergeSlot:
    if not isinstance(value, MergeSlot):
        raise SecurityError(f"The {filter_name} filter only applies to personal fields.")
    return value


# The loop budget of the render in progress; render_bounded sets it.
_loop_budget: ContextVar[list[int] | None] = ContextVar("rallypoint_loop_budget", default=None)
_LOOP_GUARD = "rallypoint_loop_guard"


def _guard_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _loop_budget.get()
    if budget is None:
        raise SecurityError("Organizer text must be rendered with render_bounded().")
    for item in iterable:
        budget[0] -= 1
        if budget[0] < 0:
            raise RenderLimitExceeded("The text repeats too many times.")
        yield item


def _guard_loops(tree: nodes.Template) -> None:
    """Route every {% for %} through the loop budget (no-op for allow-listed text)."""
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _LOOP_GUARD, [], [], None, None, lineno=loop.lineno)


class OrganizerSandbox(ImmutableSandboxedEnvironment):
    """The only environment organizer text is compiled in.

    What organizers may write in a subject, preheader, body, headline, button label or
    byline:

    * plain text (Markdown or HTML in the body), `{# comments #}`, `{% raw %}` blocks;
    * `{{ member.<field> }}` where field is first_name, last_name, email, local, language
      or postal_code, or `{{ member.attributes.<key> }}` / `{{ member.attributes["a key"] }}`;
    * those followed by filters from a fixed set: `default("text")`, `upper`, `lower`,
      `title`, `trim` (in any order, each applied per recipient);
    * quoted text or numbers, e.g. `{{ "{{" }}` to print braces.

    Everything else - statements (`{% if %}`, `{% for %}`, `{% set %}`, `{% include %}`...),
    calls, operators, attribute access on anything but `member`, other filters, tests,
    other names - is refused when the text is saved, with its line. Personal fields are
    printed, never branched on, because the email is rendered once per language into a
    skeleton and each recipient only gets substitutions (see render.py).

    Two layers. `find_refused` checks the parsed template against that allow-list, and
    this environment runs it in its own parse step, so it cannot compile anything else.
    Beneath it, the environment is safe and bounded on its own: no globals (no range,
    cycler, joiner, lipsum), no tests, an empty loader, only the merge filters, an
    allow-listed `is_safe_attribute`, no callable objects, `**` refused and `*` bounded,
    a budget on the iterations of all loops of a render, and `render_bounded` capping
    output size and render time. The source is capped too. Tests check each layer alone.
    """

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            # An empty loader: {% include %} and friends find nothing, by name or path.
            loader=DictLoader({}),
            auto_reload=False,
            cache_size=0,
        )
        # Nothing to reach: the default globals include cycler, joiner and namespace, whose
        # __init__.__globals__ was the classic escape, and range, the classic DoS.
        self.globals.clear()
        self.tests.clear()
        self.filters = {"default": _merge_default, _LOOP_GUARD: _guard_loop}
        self.filters.update({name: _transform(name) for name in TRANSFORMS})

    def parse_unchecked(self, source: str) -> nodes.Template:
        """Parse without applying the allow-list, to report every problem at once.

        Raises:
            TemplateSyntaxError: On a syntax error.
        """
        return Parser(self, source).parse()

    def check_size(self, source: str, name: str | None = None) -> None:
        """Refuse text too long, with too many tags, or with a tag too deep, before parsing.

        Raises:
            TemplateSyntaxError: With the limit in the message and the line of the tag.
        """
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateSyntaxError(_too_long(len(source)), 1, name)
        tags = tokens = 0
        for line, kind, _value in self.lex(source, name):
            if kind in ("variable_begin", "block_begin"):
                tags += 1
                tokens = 0
                if tags > MAX_MERGE_FIELDS:
                    message = (
                        f"This text has more than {MAX_MERGE_FIELDS} personal fields and "
                        "tags; that is the limit."
                    )
                    raise TemplateSyntaxError(message, line, name)
            elif kind in _EXPRESSION_TOKENS:
                tokens += 1
                if tokens > MAX_TAG_TOKENS:
                    message = (
                        f"This tag is too long or nested too deeply (more than {MAX_TAG_TOKENS} "
                        f"parts). {PRINT_ONLY_HINT}"
                    )
                    raise TemplateSyntaxError(message, line, name)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every compile path (from_string, compile, parse) comes through here, so no
        # template this environment runs can hold a loop, a call or a stray name.
        self.check_size(source, name)
        tree = super()._parse(source, name, filename)
        self.enforce_allow_list(tree, name, filename)
        _guard_loops(tree)
        return tree

    def enforce_allow_list(
        self, tree: nodes.Template, name: str | None, filename: str | None
    ) -> None:
        """Refuse a parsed template that holds more than the allow-list permits.

        Raises:
            TemplateSyntaxError: With the first refusal's message and line.
        """
        refused = find_refused(tree, field_name=name or "template")
        if refused:
            raise TemplateSyntaxError(refused[0].message, refused[0].line or 1, name, filename)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Allow only merge fields: no dunders, no methods, no other object's attributes."""
        return (
            isinstance(obj, (_MemberNamespace, _AttributesNamespace))
            and not attr.startswith("_")
            and isinstance(value, (MergeSlot, _AttributesNamespace))
        )

    def is_safe_callable(self, obj: Any) -> bool:
        """Refuse every call: organizer text has nothing to call (filters are not calls)."""
        return False

    def wrap_str_format(self, value: Any) -> None:
        """Never hand out a (sandboxed) str.format; let is_safe_attribute refuse it."""
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse `**` and any `*` that would build a long string or sequence."""
        if operator == "**":
            raise SecurityError("The ** operator is not allowed.")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                repeats = isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                if repeats and len(seq) * count > MAX_REPEAT_ITEMS:
                    raise SecurityError("That repetition would be too long.")
        return super().call_binop(context, operator, left, right)


# Body text is HTML or Markdown (autoescaped); subjects and other one-line fields are plain
# text, escaped later by the layout, so autoescaping them here would double-escape.
_HTML_SANDBOX = OrganizerSandbox(autoescape=True)
_PLAIN_SANDBOX = OrganizerSandbox(autoescape=False)


def scrub(text: str) -> str:
    """Remove the private-use marker characters from text that did not come from us."""
    if MARK_OPEN in text or MARK_CLOSE in text:
        return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
    return text


def render_organizer_text(source: str, registry: SlotRegistry, *, plain: bool) -> str:
    """Render organizer text once, turning each merge field into a marker.

    Args:
        source: The stored text (never a template name: templates come from strings only).
        registry: Where the markers are numbered, shared by every field of one skeleton.
        plain: True for one-line plain-text fields, False for the body.

    Returns:
        The text with markers in place of personal fields.

    Raises:
        TemplateError: For text that is refused or does not render; `SecurityError`
            (a subclass) for escapes and limits. `check_template` reports these at save.
    """
    env = _PLAIN_SANDBOX if plain else _HTML_SANDBOX
    template = _compiled(env, scrub(source))
    return render_bounded(template, {"member": _MemberNamespace(registry)})


@functools.lru_cache(maxsize=64)
def _compiled(env: OrganizerSandbox, source: str) -> Template:
    # A save checks the text and then builds the skeleton from it: compile it once. The
    # compiled template holds no state between renders (the registry is a variable).
    return env.from_string(source)


def render_bounded(
    template: Template,
    variables: Mapping[str, Any],
    *,
    max_output: int = MAX_OUTPUT_CHARS,
    max_seconds: float = MAX_RENDER_SECONDS,
) -> str:
    """Render a sandboxed template as a stream, stopping at an output or time limit.

    Raises:
        RenderLimitExceeded: When the output passes `max_output` characters, the render
            passes `max_seconds`, or its loops pass `MAX_LOOP_ITERATIONS` in all.
    """
    deadline = time.monotonic() + max_seconds
    size = 0
    parts: list[str] = []
    budget = _loop_budget.set([MAX_LOOP_ITERATIONS])
    try:
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > max_output:
                message = f"The text renders to more than {max_output} characters."
                raise RenderLimitExceeded(message)
            if time.monotonic() > deadline:
                raise RenderLimitExceeded("The text takes too long to render.")
            parts.append(chunk)
    finally:
        _loop_budget.reset(budget)
    return "".join(parts)


def apply_ops(value: str, ops: Iterable[Op]) -> str:
    """Apply merge filters to one recipient's value, as the skeleton does per recipient.

    `default` replaces a value that is empty or only spaces (Jinja's own `default` only
    replaces undefined values; a member with no first name has an empty one).
    """
    for name, argument in ops:
        if name == "default":
            if not value.strip():
                value = argument
        elif name == "upper":
            value = value.upper()
        elif name == "lower":
            value = value.lower()
        elif name == "title":
            value = value.title()
        elif name == "trim":
            value = value.strip()
    return value


def find_refused(
    tree: nodes.Template, *, field_name: str, known_attributes: Collection[str] | None = None
) -> list[Problem]:
    """List what a parsed template holds beyond the allow-list (see the module docstring).

    Args:
        tree: The parsed template.
        field_name: The field the text belongs to, for the problems.
        known_attributes: When given, `member.attributes.<key>` must use one of these keys.

    Returns:
        One problem per refused construct, with its line.
    """
    problems: list[Problem] = []
    for node in tree.body:
        if isinstance(node, nodes.Output):
            for expr in node.nodes:
                if not isinstance(expr, nodes.TemplateData):
                    message = _refusal(expr, known_attributes)
                    if message:
                        problems.append(Problem(field_name, expr.lineno, message))
        else:
            keyword = _STATEMENT_NAMES.get(type(node), type(node).__name__.lower())
            message = f"{{% {keyword} %}} is not allowed here. {PRINT_ONLY_HINT}"
            problems.append(Problem(field_name, node.lineno, message))
    return problems


def _refusal(expr: nodes.Expr, known_attributes: Collection[str] | None) -> str | None:
    if isinstance(expr, nodes.Const):
        if isinstance(expr.value, (str, int, float)) and not isinstance(expr.value, bool):
            return None
        return "Only quoted text and personal fields can be printed."
    filters: list[nodes.Filter] = []
    while isinstance(expr, nodes.Filter) and expr.node is not None:
        filters.append(expr)
        expr = expr.node
    base = _member_refusal(expr, known_attributes)
    if base is not None:
        return base
    for item in filters:
        message = _filter_refusal(item)
        if message:
            return message
    return None


def _member_refusal(expr: nodes.Expr, known_attributes: Collection[str] | None) -> str | None:
    """Return why `expr` is not a merge field, or None when it is one."""
    if isinstance(expr, nodes.Getattr) and _is_member(expr.node):
        if expr.attr in MEMBER_FIELDS:
            return None
        if expr.attr == "attributes":
            return 'Choose one custom attribute, e.g. {{ member.attributes.shop | default("") }}.'
        return f"Unknown personal field 'member.{expr.attr}'. Available: {_FIELD_LIST}."
    key = _attribute_key(expr)
    if key is not None:
        if key.startswith("_"):
            return f"Unknown custom attribute {key!r}."
        if known_attributes is not None and key not in known_attributes:
            known = ", ".join(sorted(known_attributes)) or "none yet"
            return f"Unknown custom attribute {key!r}. Known attributes: {known}."
        return None
    if isinstance(expr, nodes.Name):
        if expr.name == "member":
            return f"Choose a personal field, e.g. member.first_name. Available: {_FIELD_LIST}."
        if expr.name in MEMBER_FIELDS:
            return f"Unknown name {expr.name!r}; personal fields start with member., e.g. " + (
                f"{{{{ member.{expr.name} }}}}."
            )
        return f"Unknown name {expr.name!r}. {PRINT_ONLY_HINT}"
    if isinstance(expr, nodes.Call):
        return f"Calling functions or methods is not allowed. {PRINT_ONLY_HINT}"
    if isinstance(expr, (nodes.BinExpr, nodes.UnaryExpr, nodes.Concat, nodes.Compare)):
        return f"Operators are not allowed here. {PRINT_ONLY_HINT}"
    if any(isinstance(n, nodes.Name) and n.name == "member" for n in expr.find_all(nodes.Name)):
        return PRINT_ONLY_HINT
    return f"This expression is not allowed. {PRINT_ONLY_HINT}"


def _filter_refusal(item: nodes.Filter) -> str | None:
    allowed = ", ".join(MERGE_FILTERS)
    if item.name not in MERGE_FILTERS:
        return f"The filter {item.name!r} is not allowed; you can use {allowed}."
    if item.kwargs or item.dyn_args is not None or item.dyn_kwargs is not None:
        return f"Write the {item.name} filter without named or unpacked arguments."
    if item.name == "default":
        ok = (
            1 <= len(item.args) <= 2
            and isinstance(item.args[0], nodes.Const)
            and isinstance(item.args[0].value, str)
            and (len(item.args) == 1 or isinstance(item.args[1], nodes.Const))
        )
        if not ok:
            return 'The default must be quoted text, e.g. default("friend").'
    elif item.args:
        return f"The {item.name} filter takes no arguments."
    return None


def _is_member(expr: nodes.Node | None) -> bool:
    return isinstance(expr, nodes.Name) and expr.name == "member"


def _attribute_key(expr: nodes.Expr) -> str | None:
    """Return the key of `member.attributes.<key>` or `member.attributes["key"]`."""
    if isinstance(expr, nodes.Getattr):
        parent, key = expr.node, expr.attr
    elif isinstance(expr, nodes.Getitem) and isinstance(expr.arg, nodes.Const):
        parent, key = expr.node, expr.arg.value
    else:
        return None
    is_attributes = (
        isinstance(parent, nodes.Getattr)
        and parent.attr == "attributes"
        and _is_member(parent.node)
    )
    return key if is_attributes and isinstance(key, str) else None


def _too_long(length: int) -> str:
    return f"This text is too long ({length} characters; the limit is {MAX_SOURCE_CHARS})."


SAMPLE_VALUES = {
    "member.first_name": "Alex",
    "member.last_name": "Tremblay",
    "member.email": "alex.tremblay@example.org",
    "member.local": "Local 118",
    "member.language": "en",
    "member.postal_code": "T5J 0N3",
}


def check_template(
    source: str, *, field_name: str, known_attributes: Collection[str] | None = None
) -> list[Problem]:
    """Check organizer text when it is saved, so a broken campaign is never sent.

    Reports syntax errors (with Jinja's message and line), unknown merge fields and custom
    attributes, refused constructs (statements, calls, operators, other filters and names,
    which covers the known sandbox escapes) and then renders the text under the limits and
    fills it with a sample member.

    Args:
        source: The organizer's text.
        field_name: The field it belongs to ("subject", "body", "headline"...).
        known_attributes: The custom attribute keys members have; when given, any other
            `member.attributes.<key>` is an error.

    Returns:
        The problems found, empty when the text is fine.
    """
    source = scrub(source)
    if len(source) > MAX_SOURCE_CHARS:
        return [Problem(field_name, None, _too_long(len(source)))]
    try:
        _HTML_SANDBOX.check_size(source, field_name)
        tree = _HTML_SANDBOX.parse_unchecked(source)
    except TemplateSyntaxError as error:
        return [Problem(field_name, error.lineno, error.message or "Syntax error.")]
    except RecursionError:
        # Unreachable within the size bounds; kept so no text can ever make a save a 500.
        return [Problem(field_name, None, "This text is nested too deeply.")]
    problems = find_refused(tree, field_name=field_name, known_attributes=known_attributes)
    if problems:
        return problems
    registry = SlotRegistry()
    try:
        rendered = render_organizer_text(source, registry, plain=False)
    except TemplateError as error:
        # Unreachable for text that passed the allow-list; kept so a gap in it shows up
        # as a refusal at save time rather than an error at send time.
        return [Problem(field_name, getattr(error, "lineno", None), str(error.message))]
    for index, spec in enumerate(registry.specs):
        value = apply_ops(SAMPLE_VALUES.get(spec.source, ""), spec.ops)
        rendered = rendered.replace(f"{MARK_OPEN}{index}{MARK_CLOSE}", value)
    if len(rendered) > MAX_OUTPUT_CHARS:
        return [Problem(field_name, None, "This text renders to too much output.")]
    return []
