"""The dashboard and the top-level sections of the navigation."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.models import Role
from app.web.roles import role_required

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    return redirect(url_for("auth.login"))


@bp.route("/dashboard")
@role_required(Role.VIEWER)
def dashboard() -> ResponseReturnValue:
    return render_template("pages/dashboard.html")


@bp.route("/lists")
@role_required(Role.ORGANIZER)
def lists() -> ResponseReturnValue:
    return render_template("pages/section.html", section="lists", title="Lists")


@bp.route("/campaigns")
@role_required(Role.ORGANIZER)
def campaigns() -> ResponseReturnValue:
    from app.web.campaigns import campaign_list

    return campaign_list()


@bp.route("/stats")
@role_required(Role.VIEWER)
def stats() -> ResponseReturnValue:
    return render_template("pages/section.html", section="stats", title="Stats")
