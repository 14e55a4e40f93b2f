"""Role checks for web views: every page names the lowest role that may see it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import abort
from flask_login import current_user, login_required

from app.models import Role

P = ParamSpec("P")
R = TypeVar("R")


def role_required(role: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a logged-in user with at least `role`; others get 403 (or the login page)."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        @login_required
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            if not current_user.can(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
