"""Segments: saved filters over members, compiled server-side from an allow-list to SQL.

A rule is data: ``{"field": "local", "op": "equals", "value": "Local 1004"}`` (custom
attributes add ``"key"``). Only the fields and operators in FIELDS exist; every value is bound
as a parameter; no user ever supplies SQL. ``compile_segment(rules, match)`` returns a
condition on ``members``; the sender narrows an audience with::

    sa.select(...).where(Member.id.in_(segment_member_ids_clause(segment)))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.models import (
    LANGUAGE_NAMES,
    ConsentBasis,
    MailingList,
    Member,
    Segment,
    Subscription,
    SubscriptionStatus,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.consent import (
    consent_expired_clause,
    consent_expiring_clause,
    consent_valid_clause,
)

MAX_RULES = 50
MAX_VALUE_CHARS = 500
MAX_CHOICES = 200

# Operators and choices are listed in the order the editor offers them: the first is what
# choosing the field selects, so it is the positive, expected one ("is subscribed to", "is",
# "contains", "is valid"). An organizer who picks "List" and does not look at the operator must
# not get the inverse segment.
TEXT_OPS = {
    "contains": "contains",
    "equals": "is",
    "starts_with": "starts with",
    "in": "is one of",
    "not_contains": "does not contain",
    "not_equals": "is not",
    "is_empty": "is empty",
    "is_not_empty": "is not empty",
}
NO_VALUE_OPS = {"is_empty", "is_not_empty", "is_set", "is_not_set"}


@dataclass(frozen=True)
class FieldSpec:
    label: str
    kind: str  # text, language, date, attribute, list, consent
    ops: Mapping[str, str]
    choices: Mapping[str, str] | None = None


# The field menu, in the order organizers use them most; then the rarely used ones.
FIELDS: Mapping[str, FieldSpec] = {
    "list": FieldSpec(
        "List",
        "list",
        {
            "subscribed": "is subscribed to",
            "not_subscribed": "is not subscribed to",
            "unsubscribed": "unsubscribed from",
            "pending": "has not yet confirmed",
        },
    ),
    "local": FieldSpec("Local or chapter", "text", TEXT_OPS),
    "language": FieldSpec(
        "Language",
        "language",
        {"equals": "is", "not_equals": "is not"},
        LANGUAGE_NAMES,
    ),
    "postal_code": FieldSpec("Postal code", "text", TEXT_OPS),
    "consent": FieldSpec(
        "Consent",
        "consent",
        {"is": "is", "is_not": "is not"},
        {
            "valid": "valid (can be emailed)",
            "expiring": "expiring within 60 days",
            "expired": "expired",
            "none": "not recorded",
            "express": "express",
            "implied": "implied",
        },
    ),
    "attribute": FieldSpec(
        "Custom field",
        "attribute",
        {
            "contains": "contains",
            "equals": "is",
            "starts_with": "starts with",
            "is_set": "has a value",
            "not_equals": "is not",
            "is_not_set": "has no value",
        },
    ),
    "first_name": FieldSpec("First name", "text", TEXT_OPS),
    "last_name": FieldSpec("Last name", "text", TEXT_OPS),
    "email": FieldSpec("Email", "text", TEXT_OPS),
    "created_at": FieldSpec(
        "Added on",
        "date",
        {"within_days": "in the last (days)", "after": "on or after", "before": "before"},
    ),
}


class SegmentError(ValueError):
    """Rules that cannot be compiled. `problems` lists {"rule": index or None, "message"}."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems


def _like_pattern(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_condition(column: sa.ColumnElement[str], op: str, value: Any) -> sa.ColumnElement[bool]:
    # Case-insensitive throughout: organizers type "local 1004" for "Local 1004".
    lowered = sa.func.lower(sa.func.coalesce(column, ""))
    if op == "is_empty":
        return lowered == ""
    if op == "is_not_empty":
        return lowered != ""
    if op == "in":
        return lowered.in_([str(v).strip().lower() for v in value])
    text = str(value).strip().lower()
    if op == "equals":
        return lowered == text
    if op == "not_equals":
        return lowered != text
    pattern = _like_pattern(text)
    if op == "contains":
        return lowered.like(f"%{pattern}%", escape="\\")
    if op == "not_contains":
        return ~lowered.like(f"%{pattern}%", escape="\\")
    if op == "starts_with":
        return lowered.like(f"{pattern}%", escape="\\")
    raise AssertionError(op)


def _list_condition(op: str, list_id: int) -> sa.ColumnElement[bool]:
    status = {
        "subscribed": SubscriptionStatus.SUBSCRIBED,
        "not_subscribed": SubscriptionStatus.SUBSCRIBED,
        "unsubscribed": SubscriptionStatus.UNSUBSCRIBED,
        "pending": SubscriptionStatus.PENDING,
    }[op]
    # EXISTS probes the subscriptions primary key (member_id, list_id) per member.
    exists = sa.exists().where(
        Subscription.member_id == Member.id,
        Subscription.list_id == list_id,
        Subscription.status == status.value,
    )
    return ~exists if op == "not_subscribed" else exists


def _consent_condition(value: str, now: datetime) -> sa.ColumnElement[bool]:
    conditions: dict[str, Callable[[], sa.ColumnElement[bool]]] = {
        "valid": lambda: consent_valid_clause(now),
        "expiring": lambda: consent_expiring_clause(now),
        "expired": lambda: consent_expired_clause(now),
        "none": lambda: Member.consent_basis.is_(None),
        "express": lambda: Member.consent_basis == ConsentBasis.EXPRESS.value,
        "implied": lambda: Member.consent_basis.like("implied%"),
    }
    return conditions[value]()


def _parse_day(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    day = date.fromisoformat(str(value).strip()[:10])
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _check_rule(index: int, rule: Any, list_ids: set[int] | None) -> dict[str, Any]:
    """Validate one rule; return it normalised. Raises SegmentError for this rule."""

    def fail(message: str) -> SegmentError:
        return SegmentError([{"rule": index, "message": f"Rule {index + 1}: {message}"}])

    if not isinstance(rule, Mapping):
        raise fail("must be an object with field, op and value.")
    unknown = set(rule) - {"field", "op", "value", "key"}
    if unknown:
        raise fail(f"unknown keys {', '.join(sorted(map(str, unknown)))}.")
    field = rule.get("field")
    spec = FIELDS.get(field) if isinstance(field, str) else None
    if spec is None:
        raise fail(f"unknown field {field!r}. Fields: {', '.join(FIELDS)}.")
    op = rule.get("op")
    if not isinstance(op, str) or op not in spec.ops:
        raise fail(f"{spec.label} cannot use the operator {op!r}. Use: {', '.join(spec.ops)}.")
    value = rule.get("value")
    out: dict[str, Any] = {"field": field, "op": op}
    if spec.kind == "attribute":
        key = rule.get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            raise fail("name the custom field (100 characters at most).")
        if any(ch in key for ch in '"\\') or any(ord(ch) < 32 for ch in key):
            raise fail("the custom field's name cannot contain quotes or backslashes.")
        out["key"] = key.strip()
    if op in NO_VALUE_OPS:
        return out
    if spec.kind == "list":
        try:
            list_id = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise fail("choose a list.") from None
        if list_ids is not None and list_id not in list_ids:
            raise fail("that list does not exist.")
        out["value"] = list_id
    elif spec.kind == "date":
        if op == "within_days":
            try:
                days = int(value or 0)
            except (TypeError, ValueError):
                raise fail("give a number of days.") from None
            if not 0 < days <= 36500:
                raise fail("the number of days must be between 1 and 36500.")
            out["value"] = days
        else:
            try:
                _parse_day(value)
            except ValueError:
                raise fail("write the date as YYYY-MM-DD.") from None
            out["value"] = str(value).strip()[:10]
    elif spec.choices is not None:
        if value not in spec.choices:
            raise fail(f"choose one of {', '.join(spec.choices)}.")
        out["value"] = value
    elif op == "in":
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if (
            not isinstance(value, list)
            or not value
            or len(value) > MAX_CHOICES
            or not all(isinstance(v, str | int) for v in value)
        ):
            raise fail(f"give between 1 and {MAX_CHOICES} values, separated by commas.")
        out["value"] = [str(v).strip()[:MAX_VALUE_CHARS] for v in value]
    else:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise fail("give a value.")
        if len(str(value)) > MAX_VALUE_CHARS:
            raise fail(f"the value is too long ({MAX_VALUE_CHARS} characters at most).")
        out["value"] = str(value).strip()
    return out


def validate_rules(
    rules: Any, match: Any, list_ids: set[int] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Check and normalise rules and match; raise SegmentError listing every problem."""
    problems: list[dict[str, Any]] = []
    if match not in ("all", "any"):
        problems.append({"rule": None, "message": "Match must be 'all' or 'any'."})
    if not isinstance(rules, list):
        raise SegmentError([*problems, {"rule": None, "message": "Rules must be a list."}])
    if len(rules) > MAX_RULES:
        problems.append({"rule": None, "message": f"At most {MAX_RULES} rules."})
    cleaned: list[dict[str, Any]] = []
    for index, rule in enumerate(rules[:MAX_RULES]):
        try:
            cleaned.append(_check_rule(index, rule, list_ids))
        except SegmentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SegmentError(problems)
    return cleaned, str(match)


def compile_segment(
    rules: Any,
    match: str = "all",
    *,
    now: datetime | None = None,
    list_ids: set[int] | None = None,
) -> sa.ColumnElement[bool]:
    """Compile rules to one SQL condition on ``members``.

    No rules match every member. Values are bound parameters; fields and operators come
    from FIELDS only.

    Raises:
        SegmentError: an unknown field or operator, or a value of the wrong kind.
    """
    cleaned, match = validate_rules(
        list(rules) if isinstance(rules, tuple) else rules, match, list_ids
    )
    now = now or utcnow()
    conditions: list[sa.ColumnElement[bool]] = []
    for rule in cleaned:
        field, op, value = rule["field"], rule["op"], rule.get("value")
        kind = FIELDS[field].kind
        if kind == "text":
            conditions.append(_text_condition(getattr(Member, field), op, value))
        elif kind == "language":
            condition = Member.language == value
            conditions.append(condition if op == "equals" else ~condition)
        elif kind == "date":
            if op == "within_days":
                conditions.append(Member.created_at >= now - timedelta(days=int(value or 0)))
            elif op == "before":
                conditions.append(Member.created_at < _parse_day(value))
            else:
                conditions.append(Member.created_at >= _parse_day(value))
        elif kind == "attribute":
            # JSONB ->> on PostgreSQL, json_extract on SQLite (SQLAlchemy's JSON index).
            attribute = Member.attributes[rule["key"]].as_string()
            if op == "is_set":
                conditions.append(sa.func.coalesce(attribute, "") != "")
            elif op == "is_not_set":
                conditions.append(sa.func.coalesce(attribute, "") == "")
            else:
                conditions.append(_text_condition(attribute, op, value))
        elif kind == "list":
            conditions.append(_list_condition(op, int(value or 0)))
        elif kind == "consent":
            condition = _consent_condition(str(value), now)
            conditions.append(condition if op == "is" else ~sa.func.coalesce(condition, False))
    if not conditions:
        return sa.true()
    return sa.and_(*conditions) if match == "all" else sa.or_(*conditions)


def segment_condition(segment: Segment, now: datetime | None = None) -> sa.ColumnElement[bool]:
    """The saved segment's condition on ``members``."""
    return compile_segment(segment.rules or [], segment.match, now=now)


def segment_member_ids_clause(segment: Segment, now: datetime | None = None) -> sa.Select[Any]:
    """SELECT members.id of a segment, to narrow an audience: ``Member.id.in_(...)``."""
    return sa.select(Member.id).where(segment_condition(segment, now))


def count_members(session: DbSession, rules: Any, match: str = "all") -> int:
    """How many members the rules select (the live count of the editor).

    Raises:
        SegmentError: invalid rules.
    """
    condition = compile_segment(rules, match, list_ids=_list_ids(session))
    return int(session.scalar(sa.select(sa.func.count()).select_from(Member).where(condition)) or 0)


def _list_ids(session: DbSession) -> set[int]:
    return set(session.scalars(sa.select(MailingList.id)))


def _clean_name(session: DbSession, name: str, exclude_id: int | None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise SegmentError([{"rule": None, "message": "Give the segment a name."}])
    if len(name) > 200:
        raise SegmentError([{"rule": None, "message": "The name is too long (200 at most)."}])
    query = sa.select(Segment.id).where(Segment.name == name)
    if exclude_id is not None:
        query = query.where(Segment.id != exclude_id)
    if session.scalar(query) is not None:
        raise SegmentError([{"rule": None, "message": f"There is already a segment {name}."}])
    return name


def create_segment(
    session: DbSession,
    *,
    name: str,
    rules: Any,
    match: Any = "all",
    description: str = "",
) -> Segment:
    """Save a segment after checking its rules. Flushes.

    Raises:
        SegmentError: empty or taken name, invalid rules.
    """
    clean_name = _clean_name(session, name, None)
    cleaned, match = validate_rules(rules, match, _list_ids(session))
    segment = Segment(
        name=clean_name, rules=cleaned, match=match, description=(description or "").strip()
    )
    session.add(segment)
    session.flush()
    return segment


def update_segment(
    session: DbSession,
    segment: Segment,
    *,
    name: str | None = None,
    rules: Any = None,
    match: Any = None,
    description: str | None = None,
) -> Segment:
    """Change a segment's name, rules, match or description (given ones). Flushes.

    Raises:
        SegmentError: empty or taken name, invalid rules.
    """
    if name is not None:
        segment.name = _clean_name(session, name, segment.id)
    if rules is not None or match is not None:
        cleaned, clean_match = validate_rules(
            segment.rules if rules is None else rules,
            segment.match if match is None else match,
            _list_ids(session),
        )
        segment.rules = cleaned
        segment.match = clean_match
    if description is not None:
        segment.description = description.strip()
    session.flush()
    return segment


def delete_segment(session: DbSession, segment: Segment) -> None:
    """Delete a segment (campaigns that used it keep their frozen audience). Flushes."""
    session.delete(segment)
    session.flush()


def describe_rule(rule: Mapping[str, Any], list_names: Mapping[int, str]) -> str:
    """A rule in words: "Local or chapter is Local 1004"."""
    spec = FIELDS.get(str(rule.get("field")))
    if spec is None:
        return "?"
    label = spec.label if spec.kind != "attribute" else f"Custom field “{rule.get('key')}”"
    op = spec.ops.get(str(rule.get("op")), "?")
    value = rule.get("value")
    if rule.get("op") in NO_VALUE_OPS:
        return f"{label} {op}"
    if spec.kind == "list":
        return f"{op[0].upper()}{op[1:]} {list_names.get(int(value or 0), 'a deleted list')}"
    if spec.choices is not None:
        value = spec.choices.get(str(value), value)
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return f"{label} {op} {value}"


def editor_schema(session: DbSession) -> dict[str, Any]:
    """What the rule editor offers: fields, their operators and choices, and the lists.

    Fields, operators and choices are lists, not objects, so their order survives any JSON
    encoder (Flask's sorts object keys): the editor selects the first of each.
    """
    lists = session.execute(sa.select(MailingList.id, MailingList.name).order_by(MailingList.name))
    return {
        "fields": [
            {
                "name": name,
                "label": spec.label,
                "kind": spec.kind,
                "ops": [{"op": op, "label": label} for op, label in spec.ops.items()],
                "choices": (
                    [{"value": value, "label": label} for value, label in spec.choices.items()]
                    if spec.choices
                    else None
                ),
            }
            for name, spec in FIELDS.items()
        ],
        "no_value_ops": sorted(NO_VALUE_OPS),
        "lists": [{"id": list_id, "name": name} for list_id, name in lists],
    }
