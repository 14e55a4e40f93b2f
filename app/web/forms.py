"""WTForms forms: login, users, organization settings (every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
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


class OrganizationForm(FlaskForm):
    organization = StringField("Organization name", validators=[Length(max=200)])
    mailing_address = TextAreaField("Mailing address", validators=[Length(max=1000)])
    contact = StringField("Contact", validators=[Length(max=300)])
    timezone = SelectField("Time zone", choices=[], validate_choice=False)


class SenderForm(FlaskForm):
    email = EmailField("Email address", validators=[Length(max=254)])
    name = StringField("Name people see", validators=[Length(max=200)])
    is_default = BooleanField("Use it by default for new campaigns")
