"""Demo data for `make run`: an admin to log in with (content joins as features land)."""

from __future__ import annotations

import sqlalchemy as sa

from app.models import Role, User
from app.services import DbSession, users


def load(session: DbSession, *, admin_email: str, admin_password: str) -> bool:
    """Create the demo admin and demo content if absent. Returns True when the admin was
    created (the content is created at most once too; see demo_audience)."""
    from app.services.demo_audience import load_audience

    load_audience(session)
    if session.scalar(sa.select(User.id).where(User.email == admin_email)) is not None:
        return False
    users.create_user(
        session,
        email=admin_email,
        password=admin_password,
        role=Role.ADMIN.value,
        name="Demo Admin",
    )
    return True
