"""Writing petitions: content in each language, fields asked, lists, and open/close."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from markupsafe import Markup

from app.emails.body import render_body
from app.models import (
    ACTION_TRANSITIONS,
    Action,
    ActionResponse,
    ActionStatus,
    ActionVersion,
    MailingList,
    action_lists,
)
from app.models.base import utcnow
from app.services import Conflict, DbSession, Invalid, NotFound

# City is what "recent signers" shows beside a first name (when the petition opts in).
OPTIONAL_FIELDS = ("postal_code", "city", "local", "phone", "comment")
FIELD_MODES = ("off", "optional", "required")
NEXT_STEPS = ("share", "donate", "action")
LANGUAGES = ("en", "fr")
# Bounds on what an organizer writes (a petition is read on a phone; the text is delivered).
LIMITS = {
    "title": 200,
    "headline": 300,
    "description": 20_000,
    "target": 500,
    "petition_text": 20_000,
    "thank_you": 5_000,
}
MAX_GOAL = 10_000_000
EMBED_SALT = "rallypoint.action-embed.v1"
FORM_SALT = "rallypoint.action-form.v1"
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class ActionError(Invalid):
    """A petition change that is refused; the message is for the organizer."""


class SlugTaken(Conflict, ActionError):
    """Another action has this address."""


@dataclass
class PetitionData:
    """What the organizer's form (or the API) gives for a petition."""

    title: str
    slug: str = ""
    default_language: str = "en"
    goal: int | None = None
    image_url: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    show_recent_signers: bool = False
    next_step: str = "share"
    next_step_url: str = ""
    send_thank_you: bool = False
    require_confirmation: bool = False
    list_ids: Sequence[int] = ()
    # language -> {"title", "headline", "description", "target", "petition_text", "thank_you"}
    versions: dict[str, dict[str, str]] = field(default_factory=dict)


def slugify(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:60] or "petition"


def _unique_slug(session: DbSession, wanted: str, exclude_id: int | None) -> str:
    base, n = wanted, 1
    while True:
        query = sa.select(Action.id).where(Action.slug == wanted)
        if exclude_id is not None:
            query = query.where(Action.id != exclude_id)
        if session.scalar(query) is None:
            return wanted
        n += 1
        wanted = f"{base}-{n}"


def _is_web_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def _clean(session: DbSession, data: PetitionData, action: Action | None) -> PetitionData:
    """Check and trim everything; raises ActionError naming the field at fault."""
    title = " ".join((data.title or "").split())
    if not title:
        raise ActionError("Give the petition a title.", "title")
    if len(title) > LIMITS["title"]:
        raise ActionError(f"The title is longer than {LIMITS['title']} characters.", "title")
    if data.default_language not in LANGUAGES:
        raise ActionError("The default language must be English or French.", "default_language")
    if data.goal is not None and not 0 < data.goal <= MAX_GOAL:
        raise ActionError(f"The goal must be a number from 1 to {MAX_GOAL:,}.", "goal")
    for name in ("image_url", "next_step_url"):
        url = (getattr(data, name) or "").strip()
        if url and (not _is_web_url(url) or len(url) > 1000 or any(c.isspace() for c in url)):
            raise ActionError("Give a web address starting with https://.", name)
        setattr(data, name, url)
    if data.next_step not in NEXT_STEPS:
        raise ActionError("The next step must be share, donate or another action.", "next_step")
    if data.next_step != "share" and not data.next_step_url:
        raise ActionError("Give the address of the next step.", "next_step_url")
    fields = {}
    for name in OPTIONAL_FIELDS:
        mode = data.fields.get(name, "off") or "off"
        if mode not in FIELD_MODES:
            raise ActionError(f"Unknown choice {mode!r} for {name}.", "fields")
        fields[name] = mode
    versions: dict[str, dict[str, str]] = {}
    for language, content in data.versions.items():
        if language not in LANGUAGES:
            raise ActionError(f"Unknown language {language!r}.", "versions")
        clean = {k: (content.get(k) or "").strip() for k in LIMITS}
        for key, limit in LIMITS.items():
            if len(clean[key]) > limit:
                raise ActionError(f"The {key.replace('_', ' ')} is too long ({language}).", key)
        if any(clean.values()):
            versions[language] = clean
    if data.default_language not in versions:
        versions.setdefault(data.default_language, dict.fromkeys(LIMITS, ""))
    default = versions[data.default_language]
    default["title"] = default["title"] or title
    slug = (data.slug or "").strip().lower()
    if slug:
        if not _SLUG.fullmatch(slug) or len(slug) > 80:
            raise ActionError("The address may hold only a-z, 0-9 and dashes.", "slug")
        exists = sa.select(Action.id).where(Action.slug == slug)
        if action is not None:
            exists = exists.where(Action.id != action.id)
        if session.scalar(exists) is not None:
            raise SlugTaken("Another action already has this address.", "slug")
    else:
        slug = action.slug if action else _unique_slug(session, slugify(title), None)
    list_ids = sorted({int(i) for i in data.list_ids})
    if list_ids:
        found = set(session.scalars(sa.select(MailingList.id).where(MailingList.id.in_(list_ids))))
        if found != set(list_ids):
            raise ActionError("One of the chosen lists no longer exists.", "list_ids")
    return PetitionData(
        title=title,
        slug=slug,
        default_language=data.default_language,
        goal=data.goal,
        image_url=data.image_url,
        fields=fields,
        show_recent_signers=bool(data.show_recent_signers),
        next_step=data.next_step,
        next_step_url=data.next_step_url,
        send_thank_you=bool(data.send_thank_you),
        require_confirmation=bool(data.require_confirmation),
        list_ids=list_ids,
        versions=versions,
    )


# A petition's own settings: the Action columns the editor and the API set, which the edit
# form (as_data) and the public page's snapshot (public.snapshot) read back.
SETTINGS = (
    "title",
    "slug",
    "default_language",
    "goal",
    "image_url",
    "fields",
    "show_recent_signers",
    "next_step",
    "next_step_url",
    "send_thank_you",
    "require_confirmation",
)


def settings_of(action: Action) -> dict[str, Any]:
    """The petition's settings (SETTINGS), as keyword arguments; `fields` copied."""
    values = {name: getattr(action, name) for name in SETTINGS}
    values["fields"] = dict(values["fields"] or {})
    return values


def _apply(session: DbSession, action: Action, data: PetitionData) -> None:
    for name in SETTINGS:
        setattr(action, name, getattr(data, name))
    existing = {v.language: v for v in action.versions}
    for language in LANGUAGES:
        content = data.versions.get(language)
        if content is None:
            if language in existing:
                action.versions.remove(existing[language])
            continue
        version = existing.get(language)
        if version is None:
            version = ActionVersion(language=language)
            action.versions.append(version)
        for key, value in content.items():
            setattr(version, key, value)
    session.flush()
    session.execute(sa.delete(action_lists).where(action_lists.c.action_id == action.id))
    if data.list_ids:
        session.execute(
            sa.insert(action_lists), [{"action_id": action.id, "list_id": i} for i in data.list_ids]
        )
    session.flush()


def create_petition(session: DbSession, data: PetitionData, *, owner_id: int | None) -> Action:
    """Create a draft petition. Flushes; enqueues nothing.

    Raises:
        ActionError: a field is missing, too long or wrong (SlugTaken: the address is used).
    """
    clean = _clean(session, data, None)
    action = Action(title=clean.title, slug=clean.slug, owner_id=owner_id)
    session.add(action)
    session.flush()
    _apply(session, action, clean)
    return action


def update_petition(session: DbSession, action: Action, data: PetitionData) -> Action:
    """Change a petition's content, whatever its status (an open petition's typo can be fixed;
    its address stays unless the organizer changes it). Flushes.

    Raises:
        ActionError: as create_petition.
    """
    clean = _clean(session, data, action)
    _apply(session, action, clean)
    return action


def transition(session: DbSession, action: Action, to: ActionStatus) -> Action:
    """Open, close or reopen (ACTION_TRANSITIONS). Flushes.

    Raises:
        ActionError: the change is not allowed from the current status, or the petition has
            no petition text to sign.
    """
    current = ActionStatus(action.status)
    if to not in ACTION_TRANSITIONS[current]:
        raise ActionError(f"A {current.value} petition can't become {to.value}.", "status")
    if to is ActionStatus.OPEN:
        version = action.version(action.default_language)
        if version is None or not version.petition_text:
            raise ActionError("Write the petition text before opening it.", "petition_text")
        action.opened_at = action.opened_at or utcnow()
        action.closed_at = None
    else:
        action.closed_at = utcnow()
    action.status = to.value
    session.flush()
    return action


def get_action(session: DbSession, action_id: int) -> Action:
    action = session.get(Action, action_id)
    if action is None:
        raise NotFound(f"There is no action {action_id}.")
    return action


def open_action_by_slug(session: DbSession, slug: str) -> Action | None:
    """The open or closed (not draft) action at this address; drafts are not public."""
    if not _SLUG.fullmatch(slug or "") or len(slug) > 80:
        return None
    return session.scalar(
        sa.select(Action).where(Action.slug == slug, Action.status != ActionStatus.DRAFT.value)
    )


def all_actions(session: DbSession) -> list[Action]:
    return list(session.scalars(sa.select(Action).order_by(Action.created_at.desc())))


def petitions_page(session: DbSession, page: int, per_page: int) -> tuple[int, list[Action]]:
    """Every petition's count and one page of them, newest first."""
    total = int(session.scalar(sa.select(sa.func.count()).select_from(Action)) or 0)
    items = session.scalars(
        sa.select(Action)
        .order_by(Action.created_at.desc(), Action.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return total, list(items)


def signatures_page(
    session: DbSession, action: Action, page: int, per_page: int
) -> tuple[int, list[ActionResponse]]:
    """A petition's counted signatures (their count and one page), oldest first."""
    where = sa.and_(ActionResponse.action_id == action.id, ActionResponse.counted.is_(True))
    total = int(session.scalar(sa.select(sa.func.count()).where(where)) or 0)
    rows = session.scalars(
        sa.select(ActionResponse)
        .where(where)
        .order_by(ActionResponse.created_at, ActionResponse.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return total, list(rows)


def list_ids_of(session: DbSession, action_id: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(action_lists.c.list_id).where(action_lists.c.action_id == action_id)
        )
    )


def render_markdown(source: str) -> Markup:
    """Organizer Markdown as sanitised HTML (no raw HTML, http(s) and mailto links only)."""
    return Markup(render_body(source or "", "markdown", rewrite=lambda url: url).html)  # noqa: S704 — nh3-cleaned


def as_data(session: DbSession, action: Action) -> PetitionData:
    """A petition's current values, to fill the edit form or merge an API change into."""
    return PetitionData(
        **settings_of(action),
        list_ids=list_ids_of(session, action.id),
        versions={v.language: {k: getattr(v, k) for k in LIMITS} for v in action.versions},
    )


def merge(data: PetitionData, changes: Mapping[str, Any]) -> PetitionData:
    """A copy of `data` with the given attributes replaced (the API's PUT of some fields)."""
    values = {**data.__dict__, **{k: v for k, v in changes.items() if k in data.__dict__}}
    return PetitionData(**values)


def embed_token(secret_key: str, action_id: int) -> str:
    """The token the embeddable form posts instead of a session CSRF token (per action, no
    expiry; rotating SECRET_KEY revokes every snippet), like the subscribe snippet's."""
    return str(URLSafeSerializer(secret_key, salt=EMBED_SALT).dumps({"a": action_id}))


def check_embed_token(secret_key: str, token: str, action_id: int) -> bool:
    """True when `token` was issued by this server for this action's embeddable form."""
    try:
        data = URLSafeSerializer(secret_key, salt=EMBED_SALT).loads(token or "")
    except BadSignature:
        return False
    return isinstance(data, dict) and data.get("a") == action_id


def form_token(secret_key: str, action_id: int) -> str:
    """The token the hosted page's form posts in place of a session CSRF token: signed for
    this action and dated, so the page needs no session and one rendering serves every
    anonymous visitor for a moment. Not a secret of the visitor (any page view gets one):
    the view refuses a cross-site POST by its Origin / Sec-Fetch-Site headers, and the
    token proves the form came from this server's page of this action, recently."""
    return str(URLSafeTimedSerializer(secret_key, salt=FORM_SALT).dumps(action_id))


def check_form_token(secret_key: str, token: str, action_id: int, max_age: int | None) -> bool:
    """True when `token` is this server's form token for this action, at most `max_age`
    seconds old (None: any age)."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=FORM_SALT).loads(
            token or "", max_age=max_age
        )
    except BadSignature:  # SignatureExpired is a BadSignature
        return False
    return isinstance(data, int) and not isinstance(data, bool) and data == action_id
