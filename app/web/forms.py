"""WTForms forms of the shell: login and user management (every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length

from app.models import Role

ROLE_CHOICES = [
    SelectChoice(Role.VIEWER.value, "Viewer — reads stats"),
    SelectChoice(Role.ORGANIZER.value, "Organizer — lists and campaigns"),
    SelectChoice(Role.ADMIN.value, "Admin — also users and settings"),
]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class CreateUserForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.ORGANIZER.value)
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10, max=200)])


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[Length(max=100)])
