"""/api/v1/users: user management for admins."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import abort

from app.api.auth import api_role
from app.api.blueprint import Blueprint
from app.api.errors import status_of
from app.api.schemas.users import UserCreateSchema, UserSchema
from app.extensions import db
from app.models import Role, User
from app.services.organization import users

blp = Blueprint("users", __name__, url_prefix="/users", description="Users (admins only)")


@blp.route("")
class Users(MethodView):
    @api_role(Role.ADMIN)
    @blp.response(200, UserSchema(many=True))
    def get(self) -> list[User]:
        """All users."""
        return list(db.session.scalars(sa.select(User).order_by(User.email)))

    @api_role(Role.ADMIN)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(409, description="Email already taken")
    def post(self, data: dict[str, Any]) -> User:
        """Create a user."""
        try:
            user = users.create_user(db.session, **data)
        except users.UserError as exc:
            db.session.rollback()
            abort(status_of(exc), message=str(exc))
        db.session.commit()
        return user
