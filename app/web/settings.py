"""Settings: users and roles, the organization and its senders (admins), each user's API tokens."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from app.extensions import db
from app.models import ApiToken, Role, Sender, User
from app.services.organization import settings as org_settings
from app.services.organization import users
from app.services.organization.settings import SettingsError
from app.web.forms import (
    CreateUserForm,
    OrganizationForm,
    PasswordForm,
    RoleForm,
    SenderForm,
    TokenForm,
)
from app.web.roles import role_required

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.route("/")
@role_required(Role.VIEWER)
def index() -> ResponseReturnValue:
    if current_user.can(Role.ADMIN):
        return redirect(url_for("settings.users_page"))
    return redirect(url_for("settings.tokens_page"))


@bp.route("/users", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def users_page() -> ResponseReturnValue:
    form = CreateUserForm()
    if form.validate_on_submit():
        try:
            user = users.create_user(
                db.session,
                email=form.email.data or "",
                password=form.password.data or "",
                role=form.role.data or "",
                name=form.name.data or "",
            )
        except users.UserError as exc:
            db.session.rollback()
            form.email.errors = [*form.email.errors, str(exc)]
        else:
            db.session.commit()
            flash(f"{user.email} can now log in as {user.role}.", "success")
            return redirect(url_for("settings.users_page"))
    all_users = db.session.scalars(sa.select(User).order_by(User.email)).all()
    return render_template(
        "settings/users.html", form=form, users=all_users, role_form=RoleForm()
    ), (422 if form.errors else 200)


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@role_required(Role.ADMIN)
def change_role(user_id: int) -> ResponseReturnValue:
    user = db.session.get(User, user_id) or abort(404)
    form = RoleForm()
    if not form.validate_on_submit():
        abort(400)
    if user.id == current_user.id and form.role.data != Role.ADMIN.value:
        flash("You can't remove your own admin role.", "error")
        return redirect(url_for("settings.users_page"))
    users.set_role(db.session, user, form.role.data or "")
    db.session.commit()
    flash(f"{user.email} is now {user.role}.", "success")
    return redirect(url_for("settings.users_page"))


@bp.route("/account", methods=["GET", "POST"])
@role_required(Role.VIEWER)
def account_page() -> ResponseReturnValue:
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            users.change_password(
                db.session, current_user, current=form.current.data or "", new=form.new.data or ""
            )
        except users.UserError as exc:
            db.session.rollback()
            form.current.errors = [*form.current.errors, str(exc)]
        else:
            db.session.commit()
            # Every other session ended with the change; this browser keeps its place.
            login_user(current_user._get_current_object())
            flash("Your password is changed. Other browsers are logged out.", "success")
            return redirect(url_for("settings.account_page"))
    return render_template("settings/account.html", form=form, end_form=TokenForm()), (
        422 if form.errors else 200
    )


@bp.route("/account/logout-everywhere", methods=["POST"])
@role_required(Role.VIEWER)
def logout_everywhere() -> ResponseReturnValue:
    if not TokenForm().validate_on_submit():
        abort(400)
    users.end_sessions(db.session, current_user)
    db.session.commit()
    logout_user()
    flash("You are logged out on every browser. API tokens still work.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/tokens", methods=["GET", "POST"])
@role_required(Role.VIEWER)
def tokens_page() -> ResponseReturnValue:
    form = TokenForm()
    new_secret = None
    if form.validate_on_submit():
        issued = users.create_token(db.session, current_user, name=form.name.data or "")
        db.session.commit()
        new_secret = issued.secret
    tokens = db.session.scalars(
        sa.select(ApiToken)
        .where(ApiToken.user_id == current_user.id)
        .order_by(ApiToken.created_at.desc())
    ).all()
    return render_template("settings/tokens.html", form=form, tokens=tokens, new_secret=new_secret)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@role_required(Role.VIEWER)
def revoke_token(token_id: int) -> ResponseReturnValue:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != current_user.id:
        abort(404)
    form = TokenForm()
    if not form.validate_on_submit():
        abort(400)
    users.revoke_token(db.session, token_id)
    db.session.commit()
    flash("The token is revoked.", "success")
    return redirect(url_for("settings.tokens_page"))


@bp.route("/organization", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def organization_page() -> ResponseReturnValue:
    row = org_settings.get_settings(db.session)
    form = OrganizationForm(obj=row if request.method == "GET" else None)
    form.timezone.choices = [(tz, tz.replace("_", " ")) for tz in org_settings.timezone_choices()]
    if form.validate_on_submit():
        try:
            org_settings.update_identity(
                db.session,
                organization=form.organization.data or "",
                mailing_address=form.mailing_address.data or "",
                contact=form.contact.data or "",
                timezone=form.timezone.data or "",
            )
        except SettingsError as exc:
            db.session.rollback()
            getattr(form, exc.field).errors = [str(exc)]
        else:
            db.session.commit()
            flash(
                "The organization's details are saved; every email's footer uses them.", "success"
            )
            return redirect(url_for("settings.organization_page"))
    db.session.commit()  # get_settings may have created the row
    return render_template("settings/organization.html", form=form), (422 if form.errors else 200)


@bp.route("/senders", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def senders_page() -> ResponseReturnValue:
    form = SenderForm()
    if form.validate_on_submit():
        try:
            sender = org_settings.add_sender(
                db.session,
                email=form.email.data or "",
                name=form.name.data or "",
                is_default=bool(form.is_default.data),
            )
        except SettingsError as exc:
            db.session.rollback()
            getattr(form, exc.field).errors = [str(exc)]
        else:
            db.session.commit()
            flash(f"Campaigns can now be sent from {sender.email}.", "success")
            return redirect(url_for("settings.senders_page"))
    senders = org_settings.allowed_senders(db.session)
    return render_template("settings/senders.html", form=form, senders=senders), (
        422 if form.errors else 200
    )


@bp.route("/senders/<int:sender_id>/default", methods=["POST"])
@role_required(Role.ADMIN)
def make_default_sender(sender_id: int) -> ResponseReturnValue:
    sender = db.session.get(Sender, sender_id) or abort(404)
    org_settings.set_default_sender(db.session, sender)
    db.session.commit()
    flash(f"New campaigns now come from {sender.email} unless you choose another.", "success")
    return redirect(url_for("settings.senders_page"))


@bp.route("/senders/<int:sender_id>/remove", methods=["POST"])
@role_required(Role.ADMIN)
def remove_sender(sender_id: int) -> ResponseReturnValue:
    sender = db.session.get(Sender, sender_id) or abort(404)
    email = sender.email
    try:
        org_settings.remove_sender(db.session, sender)
    except SettingsError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(f"{email} is no longer an allowed sender.", "success")
    return redirect(url_for("settings.senders_page"))
