"""Bearer-token authentication and role checks for API views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar

from flask import g, request
from flask_smorest import abort

from app.extensions import db
from app.models import Role, User
from app.services.organization import users

P = ParamSpec("P")
R = TypeVar("R")


def _deny(status: int, message: str) -> NoReturn:
    abort(status, message=message)
    raise AssertionError("flask_smorest.abort always raises")


def current_api_user() -> User:
    user: User = g.api_user
    return user


def api_role(role: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require `Authorization: Bearer <token>` of an active user with at least `role`.

    401 without a valid token, 403 when the role is too low.
    """

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            header = request.headers.get("Authorization", "")
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                _deny(401, "Send an API token as 'Authorization: Bearer <token>'.")
            user = users.user_for_token(db.session, secret.strip())
            if user is None:
                _deny(401, "The API token is unknown or revoked.")
            if not user.can(role):
                _deny(403, f"This needs the {role.value} role; you are {user.role}.")
            db.session.commit()  # records last_used_at
            g.api_user = user
            return view(*args, **kwargs)

        return wrapped

    return decorator
