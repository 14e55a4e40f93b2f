"""Demo data for `make run`: an admin, the organization and its senders, draft campaigns,
and an open hosted petition.

The union, its people and addresses are made up; the campaigns are written in the spirit
of the seed documents (a statement of support, a day of action with a petition), in our
own words. Every step is idempotent: a second load changes nothing it already made.
audience.py adds the lists and about 200 members.

A room of its own, beside the services rather than in them: it calls the actions, audience,
campaigns and organization services like any other caller, and only `flask demo load`
(app/cli.py) calls it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import sqlalchemy as sa

from app.demo.audience import load_audience
from app.models import (
    Action,
    ActionStatus,
    Campaign,
    MailingList,
    Role,
    Sender,
    User,
    campaign_lists,
)
from app.services import DbSession
from app.services.actions import petitions
from app.services.campaigns import authoring as campaigns
from app.services.campaigns.authoring import CampaignInput, VariantInput
from app.services.organization import settings as org_settings
from app.services.organization import users

ORGANIZATION = "Prairie Public Workers' Union"
MAILING_ADDRESS = "PO Box 1245, Station Main\nEdmonton AB  T5J 2M1"
# The phone number first: at the end of a line a phone may wrap it after "1-".
CONTACT = "1-800-555-0199 · solidarity@prairieworkers.example"
SENDERS = (
    ("action@prairieworkers.example", "Prairie Workers Action Team", True),
    ("communications@prairieworkers.example", "PPWU Communications", False),
)
PETITION_URL = "https://prairieworkers.example/petitions/free-nadia"
NBSP = "\u00a0"


def load(session: DbSession, *, admin_email: str, admin_password: str) -> bool:
    """Create the demo admin, organization, senders and campaigns where absent.

    Returns:
        True when something was created.
    """
    created = False
    if session.scalar(sa.select(User.id).where(User.email == admin_email)) is None:
        users.create_user(
            session,
            email=admin_email,
            password=admin_password,
            role=Role.ADMIN.value,
            name="Demo Admin",
        )
        created = True
    created |= _load_organization(session)
    # Lists and members before campaigns: the demo drafts are addressed to the demo lists.
    created |= load_audience(session)
    created |= _load_campaigns(session, admin_email=admin_email)
    created |= _load_petition(session)
    return created


DEMO_PETITION_SLUG = "free-nadia-rahimi"


def _load_petition(session: DbSession) -> bool:
    """A hosted petition, open, in English and French, joining "Action network" on consent."""
    if session.scalar(sa.select(Action.id).where(Action.slug == DEMO_PETITION_SLUG)):
        return False
    network = session.scalar(sa.select(MailingList.id).where(MailingList.name == "Action network"))
    target = "The Minister of Foreign Affairs of Canada"
    data = petitions.PetitionData(
        title="Free Nadia Rahimi",
        slug=DEMO_PETITION_SLUG,
        goal=5000,
        fields={"postal_code": "optional", "city": "optional", "local": "optional"},
        show_recent_signers=True,
        list_ids=[network] if network else [],
        versions={
            "en": {
                "headline": "A student organizer jailed for a peaceful protest. Add your name.",
                "target": target,
                "description": "Nadia Rahimi speaks up for students and workers. Since "
                "November 8 she has been held without charge for leading a peaceful "
                "march. Our members stand with her.",
                "petition_text": "We ask you to press, publicly and without delay, for "
                "Nadia Rahimi's release, and to tell us what Canada has done so far.",
                "thank_you": "Thank you. Every name counts when we deliver this petition "
                "on December 17. Ask two co-workers to sign too.",
            },
            "fr": {
                "title": "Libérez Nadia Rahimi",
                "headline": "Une organisatrice étudiante emprisonnée pour une manifestation "
                "pacifique. Ajoutez votre nom.",
                "target": "La ministre des Affaires étrangères du Canada",
                "description": "Nadia Rahimi défend les étudiantes et les travailleurs. Elle "
                "est détenue sans accusation depuis le 8 novembre pour avoir mené une "
                "marche pacifique. Nos membres sont à ses côtés.",
                "petition_text": "Nous vous demandons d'intervenir publiquement et sans "
                "délai pour la libération de Nadia Rahimi, et de nous dire ce que le Canada "
                "a fait jusqu'ici.",
                "thank_you": "Merci. Chaque nom compte quand nous remettrons cette pétition "
                "le 17 décembre. Invitez deux collègues à signer aussi.",
            },
        },
    )
    action = petitions.create_petition(session, data, owner_id=None)
    petitions.transition(session, action, ActionStatus.OPEN)
    return True


def _load_organization(session: DbSession) -> bool:
    created = False
    settings = org_settings.get_settings(session)
    if not settings.organization:
        org_settings.update_identity(
            session,
            organization=ORGANIZATION,
            mailing_address=MAILING_ADDRESS,
            contact=CONTACT,
            timezone="America/Edmonton",
        )
        created = True
    for email, name, is_default in SENDERS:
        if session.scalar(sa.select(Sender.id).where(Sender.email == email)) is None:
            org_settings.add_sender(session, email=email, name=name, is_default=is_default)
            created = True
    return created


def unwrap(text: str) -> str:
    """Join the lines of each Markdown paragraph, list item and quote, as an organizer
    types them (the source wraps them to fit the code's line length)."""
    blocks = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if all(line.startswith(">") for line in lines):
            blocks.append("> " + " ".join(line.lstrip("> ").strip() for line in lines))
            continue
        joined: list[str] = []
        for line in lines:
            starts_item = line.startswith(("- ", "1. ", "2. ", "3. "))
            if joined and not starts_item and not joined[-1].endswith("\\"):
                joined[-1] += " " + line.strip()
            else:
                joined.append(line)
        blocks.append("\n".join(joined))
    return "\n\n".join(blocks) + "\n"


def _next_dec_17(today: date | None = None) -> date:
    today = today or date.today()
    this_year = date(today.year, 12, 17)
    return this_year if this_year >= today else date(today.year + 1, 12, 17)


def demo_campaigns(today: date | None = None) -> list[CampaignInput]:
    """The three demo drafts: a statement, a Dec. 17 day of action, a petition alert."""
    event_day = _next_dec_17(today).isoformat()
    drafts = [
        CampaignInput(
            name="Statement of support: workers jailed for peaceful protest",
            layout="statement",
            from_email="communications@prairieworkers.example",
            default_language="en",
            variants={"en": _STATEMENT_EN, "fr": _STATEMENT_FR},
        ),
        CampaignInput(
            name="Dec. 17 day of action: free Nadia Rahimi",
            layout="day_of_action",
            from_email="action@prairieworkers.example",
            default_language="en",
            variants={
                "en": _day_of_action("en", event_day),
                "fr": _day_of_action("fr", event_day),
            },
            petition_flags={PETITION_URL: True},
        ),
        CampaignInput(
            name="Petition: free Nadia Rahimi",
            layout="action_alert",
            from_email="action@prairieworkers.example",
            default_language="en",
            variants={"en": _ALERT_EN, "fr": _ALERT_FR},
        ),
    ]
    return [
        replace(
            draft,
            variants={lang: replace(v, body=unwrap(v.body)) for lang, v in draft.variants.items()},
        )
        for draft in drafts
    ]


def _load_campaigns(session: DbSession, *, admin_email: str) -> bool:
    created = False
    admin_id = session.scalar(sa.select(User.id).where(User.email == admin_email))
    list_ids = list(session.scalars(sa.select(MailingList.id).order_by(MailingList.id)))
    for data in demo_campaigns():
        campaign = session.scalar(sa.select(Campaign).where(Campaign.name == data.name))
        if campaign is None:
            campaign = campaigns.create_campaign(session, data, actor_id=admin_id)
            created = True
        # Lists come from the audience demo; attach them to drafts that have none yet.
        has_lists = session.scalar(
            sa.select(campaign_lists.c.list_id).where(campaign_lists.c.campaign_id == campaign.id)
        )
        if list_ids and has_lists is None and campaign.status == "draft":
            session.execute(
                campaign_lists.insert(),
                [{"campaign_id": campaign.id, "list_id": list_id} for list_id in list_ids],
            )
            created = True
    session.flush()
    return created


_STATEMENT_EN = VariantInput(
    subject="Our union stands with workers jailed for peaceful protest",
    preheader="A statement from the Provincial Executive, and three things we are doing.",
    body="""\
{{ member.first_name | default("Sisters, brothers and friends") }},

For months, working people in several countries have marched, struck and walked off the
job to demand fair elections and the right to organize. The answer from their governments
has been mass arrests, beatings and the jailing of trade union leaders.

Human rights monitors now count thousands of people detained, reporters held for doing
their jobs, and union activists missing. Workers who leave their machines in protest are
risking their freedom, and sometimes their lives.

Our Provincial Executive adopted this statement on Monday:

> The Prairie Public Workers' Union condemns the violence and the arrests used against
> peaceful protesters and trade unionists. We demand the release of every union leader
> and activist imprisoned for peaceful action, an end to the persecution of independent
> unions, and free elections watched by independent observers.

**What we are doing:**

- adding our name to the international labour movement's call for their release;
- writing to Global Affairs Canada to ask for sanctions that target those responsible;
- donating to the legal defence fund for jailed union activists.

Bring this statement to your next meeting at
{{ member.local | default("your local") }}. When one worker is jailed for organizing, all of
us are less free.

[Read the full statement on our website](https://prairieworkers.example/statements/solidarity).
""",
    fields={
        "headline": "We stand with workers who refuse to be silenced",
        "byline": "Statement of the Provincial Executive",
    },
)

_STATEMENT_FR = VariantInput(
    subject="Notre syndicat est solidaire des travailleurs emprisonnés pour avoir manifesté",
    preheader="Une déclaration de l'Exécutif provincial, et trois gestes que nous posons.",
    body=f"""\
Bonjour {{{{ member.first_name | default("à toutes et à tous") }}}},

Depuis des mois, dans plusieurs pays, des travailleuses et des travailleurs manifestent,
font la grève et quittent le travail pour exiger des élections libres et le droit de
s'organiser. Leurs gouvernements répondent par des arrestations massives, des violences et
l'emprisonnement de dirigeants syndicaux.

Lundi, notre Exécutif provincial a adopté la déclaration suivante{NBSP}:

> Le Syndicat des travailleuses et travailleurs publics des Prairies condamne la violence
> et les arrestations dirigées contre des manifestants pacifiques et des syndicalistes.
> Nous exigeons la libération de toutes les personnes emprisonnées pour une action
> syndicale pacifique, la fin de la persécution des syndicats indépendants et des
> élections libres sous observation indépendante.

**Ce que nous faisons{NBSP}:**

- nous joignons notre voix à l'appel du mouvement syndical international;
- nous écrivons à Affaires mondiales Canada pour demander des sanctions ciblées;
- nous donnons au fonds de défense juridique des militants syndicaux emprisonnés.

Présentez cette déclaration à la prochaine assemblée de
{{{{ member.local | default("votre section locale") }}}}.

[Lire la déclaration complète](https://prairieworkers.example/fr/declarations/solidarite).
""",
    fields={
        "headline": "Solidaires de celles et ceux qu'on veut faire taire",
        "byline": "Déclaration de l'Exécutif provincial",
    },
)


def _day_of_action(language: str, event_day: str) -> VariantInput:
    shared = {
        "event_date": event_day,
        "event_time": "12:00",
        "event_end_time": "13:00",
        "timezone": "America/Edmonton",
        "address": "10800 97 Avenue NW\nEdmonton AB  T5K 2B6",
        "cta_url": PETITION_URL,
    }
    if language == "fr":
        return VariantInput(
            subject=f"17 décembre{NBSP}: journée d'action pour Nadia Rahimi",
            preheader="Rendez-vous à midi devant l'Assemblée législative. Signez la pétition.",
            body=f"""\
Bonjour {{{{ member.first_name | default("camarade") }}}},

Nadia Rahimi défend les droits des étudiantes et des travailleurs. Le 8 novembre, des
policiers l'ont emmenée sans mandat. Depuis, ni sa famille ni ses avocats ne savent où
elle est détenue.

Le **17 décembre**, des syndicats de partout au pays organisent une journée d'action pour
exiger sa libération. À Edmonton, nous nous rassemblons à midi devant l'Assemblée
législative.

Vous ne pouvez pas venir{NBSP}? [Signez la pétition]({PETITION_URL}) et faites-la
circuler à {{{{ member.local | default("votre section locale") }}}}.
""",
            fields={
                **shared,
                "headline": f"Journée d'action du 17 décembre{NBSP}: libérez Nadia Rahimi",
                "place": "Assemblée législative de l'Alberta, côté sud",
                "what_to_bring": "Une pancarte\nDes vêtements chauds\nVos collègues",
                "cta_label": "Signer la pétition",
            },
        )
    return VariantInput(
        subject="Dec. 17: day of action to free Nadia Rahimi",
        preheader="Noon at the Legislature. Can't make it? Sign the petition.",
        body=f"""\
{{{{ member.first_name | default("Friend") }}}},

Nadia Rahimi stands up for students and workers. On November 8, police took her away
without a warrant. Her family and her lawyers still don't know where she is held.

On **December 17**, unions across the country are holding a day of action to demand her
release. In Edmonton we gather at noon on the south side of the Legislature.

Can't be there? [Sign the petition]({PETITION_URL}) and share it with your co-workers at
{{{{ member.local | default("your local") }}}}. An injury to one is an injury to all.
""",
        fields={
            **shared,
            "headline": "Day of action, Dec. 17: free Nadia Rahimi",
            "place": "Alberta Legislature, south side",
            "what_to_bring": "A sign\nWarm clothes\nYour co-workers",
            "cta_label": "Sign the petition",
        },
    )


_ALERT_EN = VariantInput(
    subject='{{ member.first_name | default("Friend") }}, one minute for Nadia Rahimi',
    preheader="Add your name: we deliver the petition on December 17.",
    body="""\
{{ member.first_name | default("Friend") }},

Nadia Rahimi has been held for weeks with no charge and no lawyer, for speaking up for
workers. Governments do notice when thousands of union members sign their names together.

**Add your name to the petition** for her release. It takes one minute. Then ask two
co-workers at {{ member.local | default("your workplace") }} to sign too.

We will deliver every name on December 17, the national day of action.

In solidarity,\\
The Human Rights Committee
""",
    fields={
        "headline": "Sign now: free Nadia Rahimi",
        "cta_label": "Sign the petition",
        "cta_url": PETITION_URL,
    },
)

_ALERT_FR = VariantInput(
    subject='{{ member.first_name | default("Camarade") }}, une minute pour Nadia Rahimi',
    preheader=f"Ajoutez votre nom{NBSP}: nous remettons la pétition le 17 décembre.",
    body=f"""\
Bonjour {{{{ member.first_name | default("camarade") }}}},

Nadia Rahimi est détenue depuis des semaines, sans accusation et sans avocat, pour avoir
défendu les travailleuses et les travailleurs. Les gouvernements remarquent quand des
milliers de syndiqués signent ensemble.

**Signez la pétition** pour sa libération{NBSP}: une minute suffit. Invitez ensuite deux
collègues de {{{{ member.local | default("votre milieu de travail") }}}} à signer.

Nous remettrons toutes les signatures le 17 décembre, journée nationale d'action.

Solidairement,\\
Le Comité des droits de la personne
""",
    fields={
        "headline": f"Signez maintenant{NBSP}: libérez Nadia Rahimi",
        "cta_label": "Signer la pétition",
        "cta_url": PETITION_URL,
    },
)
