"""Users, passwords (argon2) and API tokens (stored as SHA-256, shown once)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from flask import current_app

from app.models import ApiToken, Role, User
from app.models.base import utcnow
from app.services import Conflict, DbSession, Invalid, NotFound

TOKEN_PREFIX = "rp_"  # noqa: S105 - a marker, not a secret
MIN_PASSWORD_LENGTH = 10


class UserError(Invalid):
    """Bad input for a user operation; the message is safe to show."""


class UserExists(Conflict, UserError):
    """A user with that address exists already."""


class TokenNotFound(NotFound, UserError):
    """No API token has that id."""


def _hasher() -> PasswordHasher:
    if current_app.config.get("PASSWORD_HASH_FAST"):
        # Tests only: the same algorithm with tiny costs so hundreds of logins stay fast.
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH: dict[bool, str] = {}


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise UserError(f"That email address is not valid: {exc}") from exc


def create_user(
    session: DbSession, *, email: str, password: str, role: str, name: str = ""
) -> User:
    """Create a user.

    Raises:
        UserError: invalid email, unknown role, short password or email already taken.
    """
    address = normalise_email(email)
    try:
        role_value = Role(role.strip().lower()).value
    except ValueError as exc:
        raise UserError(f"Role must be one of {', '.join(r.value for r in Role)}") from exc
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if session.scalar(sa.select(User.id).where(User.email == address)) is not None:
        raise UserExists(f"A user with the email {address} already exists.")
    user = User(
        email=address, name=name.strip(), role=role_value, password_hash=hash_password(password)
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: DbSession, email: str, password: str) -> User | None:
    """Return the active user with these credentials, or None. Records the login time."""
    try:
        address = normalise_email(email)
    except UserError:
        address = email.strip().lower()
    user = session.scalar(sa.select(User).where(User.email == address))
    hasher = _hasher()
    if user is None or not user.is_active:
        fast = bool(current_app.config.get("PASSWORD_HASH_FAST"))
        if fast not in _DUMMY_HASH:
            _DUMMY_HASH[fast] = hasher.hash(secrets.token_urlsafe(16))
        with contextlib.suppress(VerificationError):
            hasher.verify(_DUMMY_HASH[fast], password)
        return None
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def set_role(session: DbSession, user: User, role: str) -> None:
    """Give `user` another role; a change ends the user's web sessions (see end_sessions).

    Raises:
        UserError: an unknown role.
    """
    try:
        value = Role(role).value
    except ValueError as exc:
        raise UserError(f"Role must be one of {', '.join(r.value for r in Role)}") from exc
    if value != user.role:
        user.role = value
        end_sessions(session, user)
    session.flush()


def end_sessions(session: DbSession, user: User) -> None:
    """End every web session of `user`: session cookies issued before stop working.

    A session cookie names the user's session generation (User.get_id); this bumps it, so
    a copied cookie cannot outlive a logout, a password or role change, or "log out
    everywhere". The bump is one SQL expression, so two at once both count. API tokens are
    not sessions and keep working (revoke them one by one in Settings).
    """
    user.session_generation = User.session_generation + 1
    session.flush()


def change_password(session: DbSession, user: User, *, current: str, new: str) -> None:
    """Set a new password for `user` after checking the current one; ends every session.

    The caller logs the user in again (with the new generation) to keep the browser that
    made the change.

    Raises:
        UserError: the current password is wrong or the new one is too short.
    """
    hasher = _hasher()
    try:
        hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError) as exc:
        raise UserError("The current password is not right.") from exc
    if len(new) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = hasher.hash(new)
    end_sessions(session, user)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: DbSession, user: User, name: str = "") -> IssuedToken:
    """Issue an API token for `user`. The plain token is returned once; only its hash is kept."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, prefix=secret[:10], token_hash=_token_hash(secret))
    session.add(token)
    session.flush()
    return IssuedToken(token=token, secret=secret)


def user_for_token(session: DbSession, secret: str) -> User | None:
    """The active user owning an unrevoked token, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == _token_hash(secret)))
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    token.last_used_at = utcnow()
    return token.user


def revoke_token(session: DbSession, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise TokenNotFound(f"No API token with id {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token
