"""WTForms forms: login, users, settings and the audience pages (each with a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length

from app.models import LANGUAGE_NAMES, Role

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


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=200)])
    new = PasswordField("New password", validators=[DataRequired(), Length(min=10, max=200)])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[Length(max=100)])


# ---- audience ---------------------------------------------------------------------------------

LANGUAGE_CHOICES = [SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()]
OPT_IN_CHOICES = [
    SelectChoice("single", "Single opt-in — people are on the list as soon as they sign up"),
    SelectChoice("double", "Double opt-in — people confirm by clicking a link in an email"),
]


class ListForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    is_public = BooleanField("Public: anyone can sign up with a form")
    opt_in = SelectField("How people join", choices=OPT_IN_CHOICES, default="single")


class MemberFieldsForm(FlaskForm):
    first_name = StringField("First name", validators=[Length(max=200)])
    last_name = StringField("Last name", validators=[Length(max=200)])
    language = SelectField("Language", choices=LANGUAGE_CHOICES, default="en")
    postal_code = StringField("Postal code", validators=[Length(max=20)])
    local = StringField("Local or chapter", validators=[Length(max=100)])


class NewMemberForm(MemberFieldsForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    list_id = SelectField("Add to list", coerce=int, default=0)


class EditMemberForm(MemberFieldsForm):
    attributes = TextAreaField("Custom fields (one per line: name: value)")
    membership_ended = StringField("Membership ended on (empty while still a member)")


class ConsentForm(FlaskForm):
    basis = SelectField(
        "Consent",
        choices=[
            SelectChoice("express", "Express — they said yes (form, signed card, email)"),
            SelectChoice("implied_membership", "Implied — they are (or were) a member"),
            SelectChoice("implied_inquiry", "Implied — they asked us something (6 months)"),
            SelectChoice("none", "No consent (stop emailing them)"),
        ],
    )
    source = StringField("How (e.g. signed card at the May 1 rally)", validators=[Length(max=200)])
    given_on = StringField("Date given (YYYY-MM-DD, today if empty)")


class AddToListForm(FlaskForm):
    list_id = SelectField("List", coerce=int)


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])
    consent = SelectField("How did these people agree to hear from you?")


class SuppressForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    detail = StringField("Note (why)", validators=[Length(max=500)])


class SegmentForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    match = SelectField(
        "Members who match",
        choices=[SelectChoice("all", "all the rules"), SelectChoice("any", "any rule")],
    )
    rules = HiddenField("Rules", default="[]")


class SubscribeForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    first_name = StringField("First name", validators=[Length(max=200)])
    last_name = StringField("Last name", validators=[Length(max=200)])
    language = SelectField("Language", choices=LANGUAGE_CHOICES, default="en")
    # A honeypot: hidden from people by CSS; bots fill every field they find.
    website = StringField("Leave this empty")


class ConfirmForm(FlaskForm):
    pass


class OrganizationForm(FlaskForm):
    organization = StringField("Organization name", validators=[Length(max=200)])
    mailing_address = TextAreaField("Mailing address", validators=[Length(max=1000)])
    contact = StringField("Contact", validators=[Length(max=300)])
    timezone = SelectField("Time zone", choices=[], validate_choice=False)


class SenderForm(FlaskForm):
    email = EmailField("Email address", validators=[Length(max=254)])
    name = StringField("Name people see", validators=[Length(max=200)])
    is_default = BooleanField("Use it by default for new campaigns")
