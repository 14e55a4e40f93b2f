"""Domain logic: the only code that changes models. Views, API and tasks call it."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy.orm import Session, scoped_session

# Services take the session explicitly: a plain Session (tasks, tests) or Flask's scoped one.
DbSession: TypeAlias = Session | scoped_session[Any]
