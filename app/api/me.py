"""GET /api/v1/me: who the token belongs to."""

from __future__ import annotations

from flask.views import MethodView

from app.api.auth import api_role, current_api_user
from app.api.blueprint import Blueprint
from app.api.schemas.users import UserSchema
from app.models import Role, User

blp = Blueprint("me", __name__, url_prefix="/me", description="The authenticated user")


@blp.route("")
class Me(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, UserSchema)
    @blp.alt_response(401, description="No valid token")
    def get(self) -> User:
        """The user the bearer token belongs to."""
        return current_api_user()
