"""Domain logic: the only code that changes models. Views, API and tasks call it.

One package a domain, each opening with what it owns, which rooms it may call and the
invariants it keeps: audience, campaigns, organization, sending, stats, tracking, and the
transports they share (docs/architecture.md, "Map of the rooms"; tests/test_architecture.py
keeps the arrows). Here only what every room uses: the session type and the service errors.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias

from sqlalchemy.orm import Session, scoped_session

# Services take the session explicitly: a plain Session (tasks, tests) or Flask's scoped one.
DbSession: TypeAlias = Session | scoped_session[Any]


class ServiceError(ValueError):
    """A change a service refused; the message is for people (FlaskBB's core/exceptions).

    The class says what kind of refusal it is, so a view or the API picks its answer from
    `code` (app.api.errors maps it to an HTTP status), never from the message's words:
    Invalid (the input is wrong), Conflict (the input is fine but collides with what
    exists), NotFound. `field` names the input at fault, when there is one.
    """

    code: ClassVar[str] = "invalid"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Invalid(ServiceError):
    """The input is wrong: fix it and try again."""

    code = "invalid"


class Conflict(ServiceError):
    """The input is fine, but it collides with what exists (a name taken, a list in use)."""

    code = "conflict"


class NotFound(ServiceError):
    """The thing to change does not exist (any more)."""

    code = "not_found"
