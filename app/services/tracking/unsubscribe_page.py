"""What the public unsubscribe page shows a member, in English or French, and what they chose."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.emails.content import Recipient
from app.infra.bounds import as_int
from app.models import (
    Campaign,
    Delivery,
    MailingList,
    Member,
    OrgSettings,
    Subscription,
    SubscriptionStatus,
    campaign_lists,
)
from app.services import DbSession
from app.services.campaigns import authoring as campaigns

log = logging.getLogger(__name__)

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Email preferences",
        "heading": "Stop these emails?",
        "intro": "You are getting this email at {email} because you are on these lists:",
        "about": "This alert was: “{subject}”.",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_help": "You will stop getting emails from: {lists}.",
        "unsubscribe_help_all": "You will stop getting all our emails.",
        "prefs_heading": "Or choose what you get",
        "prefs_help": "Untick the lists you want to leave, then save.",
        "save": "Save my choices",
        "all": "Unsubscribe from everything",
        "none_left": "You are not on any of our lists any more.",
        "done_heading": "You're unsubscribed",
        "done_lists": "You will no longer get emails from: {lists}.",
        "done_all": "You will no longer get any of our emails.",
        "done_nothing": "Nothing changed: you are still on the lists you kept.",
        "still_on": "You are still on: {lists}.",
        "change_mind": "Changed your mind? Contact {org} to be added back.",
        "invalid_title": "This link doesn't work",
        "invalid": "The link may be incomplete. Copy the whole link from the email and try again.",
        "error": "Please choose one of the buttons below.",
        "other_lang": "Français",
        "org_fallback": "the organizers",
    },
    "fr": {
        "title": "Préférences de courriel",
        "heading": "Ne plus recevoir ces courriels?",
        "intro": "Vous recevez ce courriel à {email} parce que vous êtes inscrit·e à ces listes :",
        "about": "Cette alerte était : « {subject} ».",
        "unsubscribe": "Me désabonner",
        "unsubscribe_help": "Vous ne recevrez plus les courriels de : {lists}.",
        "unsubscribe_help_all": "Vous ne recevrez plus aucun de nos courriels.",
        "prefs_heading": "Ou choisissez ce que vous recevez",
        "prefs_help": "Décochez les listes que vous voulez quitter, puis enregistrez.",
        "save": "Enregistrer mes choix",
        "all": "Me désabonner de tout",
        "none_left": "Vous n'êtes plus inscrit·e à aucune de nos listes.",
        "done_heading": "Votre désabonnement est fait",
        "done_lists": "Vous ne recevrez plus les courriels de : {lists}.",
        "done_all": "Vous ne recevrez plus aucun de nos courriels.",
        "done_nothing": "Rien n'a changé : vous restez inscrit·e aux listes conservées.",
        "still_on": "Vous restez inscrit·e à : {lists}.",
        "change_mind": "Vous avez changé d'idée? Écrivez à {org} pour être réinscrit·e.",
        "invalid_title": "Ce lien ne fonctionne pas",
        "invalid": "Le lien est peut-être incomplet. Copiez le lien en entier depuis le courriel.",
        "error": "Veuillez choisir un des boutons ci-dessous.",
        "other_lang": "English",
        "org_fallback": "l'équipe organisatrice",
    },
}


def strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])


@dataclass(frozen=True)
class ListChoice:
    id: int
    name: str
    description: str
    subscribed: bool
    in_campaign: bool


@dataclass
class PageView:
    language: str
    t: dict[str, str]
    email: str
    subject: str
    organization: str
    contact: str
    lists: list[ListChoice] = field(default_factory=list)
    campaign_has_lists: bool = False  # False: sent to a segment; leaving it means leaving all

    @property
    def subscribed(self) -> list[ListChoice]:
        return [item for item in self.lists if item.subscribed]

    @property
    def campaign_lists(self) -> list[ListChoice]:
        return [item for item in self.lists if item.in_campaign and item.subscribed]

    def names(self, items: list[ListChoice]) -> str:
        return ", ".join(item.name for item in items)


def page_for(session: DbSession, delivery: Delivery) -> PageView:
    """The member's lists (those of this campaign first) and the words in their language."""
    member = session.get(Member, delivery.member_id)
    language = (member.language if member else delivery.language) or "en"
    t = strings(language)
    subject = _subject_for(session, delivery, member, language)
    org = session.get(OrgSettings, 1)
    in_campaign = set(
        session.scalars(
            sa.select(campaign_lists.c.list_id).where(
                campaign_lists.c.campaign_id == delivery.campaign_id
            )
        )
    )
    rows = session.execute(
        sa.select(MailingList.id, MailingList.name, MailingList.description, Subscription.status)
        .join(Subscription, Subscription.list_id == MailingList.id)
        .where(Subscription.member_id == delivery.member_id)
        .order_by(MailingList.name)
    )
    lists = [
        ListChoice(
            id=row.id,
            name=row.name,
            description=row.description,
            subscribed=row.status == SubscriptionStatus.SUBSCRIBED.value,
            in_campaign=row.id in in_campaign,
        )
        for row in rows
    ]
    lists.sort(key=lambda item: (not item.in_campaign, item.name.lower()))
    return PageView(
        language=language,
        t=t,
        email=delivery.email,
        subject=subject,
        organization=(org.organization if org and org.organization else t["org_fallback"]),
        contact=org.contact if org else "",
        lists=lists,
        campaign_has_lists=bool(in_campaign),
    )


def _subject_for(
    session: DbSession, delivery: Delivery, member: Member | None, language: str
) -> str:
    """The subject as this member saw it: merge fields filled in, never template syntax."""

    campaign = session.get(Campaign, delivery.campaign_id)
    if campaign is None:
        return ""
    try:
        # Cached per campaign version and process: a page view costs a substitution.
        skeleton = campaigns.skeleton_for(
            session, campaign, language, tracking=False, archive=False
        )
        recipient = Recipient(
            first_name=member.first_name if member else "",
            last_name=member.last_name if member else "",
            local=member.local if member else "",
            language=language,
        )
        return skeleton.personalize(recipient).subject
    except Exception:  # an incomplete identity or an old draft: the page works without it
        log.warning(
            "no subject for campaign %s on the unsubscribe page", campaign.id, exc_info=True
        )
        return ""


class ChoiceError(ValueError):
    """The form asked for nothing we understand."""


@dataclass(frozen=True)
class Choice:
    action: str  # "unsubscribe" | "all" | "preferences"
    list_ids: list[int] | None  # None: every list


def parse_choice(form: Mapping[str, Any], view: PageView) -> Choice:
    """Turn the page's form into the lists to leave; ids not on the member's lists are ignored.

    Raises:
        ChoiceError: no known action.
    """
    action = form.get("action")
    if action == "all":
        return Choice("all", None)
    if action == "unsubscribe":
        # A campaign sent to a segment has no lists: leaving "these emails" means leaving all.
        if not view.campaign_has_lists:
            return Choice("unsubscribe", None)
        return Choice("unsubscribe", [item.id for item in view.campaign_lists])
    if action == "preferences":
        getlist = getattr(form, "getlist", None)
        raw = getlist("keep") if getlist else form.get("keep", [])
        keep = {n for v in raw if isinstance(v, str) and (n := as_int(v)) is not None}
        return Choice("preferences", [i.id for i in view.subscribed if i.id not in keep])
    raise ChoiceError("unknown action")
