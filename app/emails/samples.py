"""Sample campaigns in the spirit of the seeds, in English and French: demo data and fixtures.

The union, the people and the addresses are made up; the words are ours, not the seeds'.
"""

from __future__ import annotations

from app.emails.content import EmailContent, Identity, Recipient

NBSP = "\u00a0"  # French puts a no-break space before : ; ? !

IDENTITIES = {
    "en": Identity(
        organization="Prairie Public Workers' Union",
        mailing_address="PO Box 1245, Station Main\nEdmonton AB  T5J 2M1",
        contact="solidarity@prairieworkers.example · 1-800-555-0199",
    ),
    "fr": Identity(
        organization="Syndicat des travailleuses et travailleurs publics des Prairies",
        mailing_address="Case postale 1245, succursale Main\nEdmonton (Alberta)  T5J 2M1",
        contact="solidarite@prairieworkers.example · 1-800-555-0199",
    ),
}

PETITION_URL = (
    "https://prairieworkers.example/petitions/free-nadia?utm_source=email&utm_medium=alert"
)

_STATEMENT_EN = """\
{{ member.first_name | default("Friend") }},

Tonight, in too many countries, people are sitting in prison cells for the crime of organizing their workplaces. Some were arrested at the factory gate. Others were taken from their homes after a peaceful strike. Their families are often not told where they are held.

This week our Executive Board adopted the following statement:

> We condemn the arrest and detention of trade unionists for peaceful union activity. Freedom of association is a human right, not a favour granted by governments. We call for the immediate release of every worker jailed for organizing, and for a fair and public trial for anyone facing charges.

What we are doing about it:

- writing to the embassies of the governments responsible;
- giving to the international labour movement's legal defence fund;
- bringing the issue to the next meeting of **{{ member.local | default("your local") }}**.

An injury to one is an injury to all. Read the [full statement on our website](https://prairieworkers.example/statements/jailed-unionists).
"""  # noqa: E501 - one line per paragraph, as organizers type it

_STATEMENT_FR = f"""\
Bonjour {{{{ member.first_name | default("à toutes et à tous") }}}},

Ce soir, dans trop de pays, des personnes dorment en prison pour avoir organisé leur milieu de travail. Certaines ont été arrêtées aux portes de l'usine; d'autres ont été enlevées chez elles après une grève pacifique. Bien souvent, leur famille ignore où elles sont détenues.

Cette semaine, notre Conseil exécutif a adopté la déclaration suivante{NBSP}:

> Nous condamnons l'arrestation et la détention de syndicalistes pour des activités syndicales pacifiques. La liberté d'association est un droit fondamental, et non une faveur accordée par les gouvernements. Nous exigeons la libération immédiate de toutes les personnes emprisonnées pour avoir milité, ainsi qu'un procès public et équitable pour quiconque fait l'objet d'accusations.

Voici ce que nous faisons{NBSP}:

- nous écrivons aux ambassades des gouvernements responsables;
- nous contribuons au fonds de défense juridique du mouvement syndical international;
- nous porterons la question à la prochaine assemblée de **{{{{ member.local | default("votre section locale") }}}}**.

Une injustice faite à l'un est une injustice faite à tous. Lisez la [déclaration complète sur notre site](https://prairieworkers.example/fr/declarations/syndicalistes-emprisonnes).
"""  # noqa: E501 - one line per paragraph, as organizers type it

_DAY_EN = f"""\
{{{{ member.first_name | default("Friend") }}}}, on November 8 Nadia Rahimi, a student organizer and a tireless voice for workers' rights, was taken away by security police. Six weeks later there are still no charges, no lawyer, and no word to her family about where she is held.

On **Wednesday, December 17**, union members in cities across the country will gather at noon to demand her release. Join us in Edmonton: bring your co-workers, and bring your voice.

Can't be there? You can act today:

1. [Sign the online petition]({PETITION_URL}) for her release.
2. Share it with your co-workers.
3. Wear red at work on December 17 and post a photo with #FreeNadia.

The more of us stand up, the harder it is for anyone to look away.
"""  # noqa: E501 - one line per paragraph, as organizers type it

_DAY_FR = f"""\
Bonjour {{{{ member.first_name | default("à toutes et à tous") }}}},

Le 8 novembre, la police de sécurité a arrêté Nadia Rahimi, organisatrice étudiante et infatigable défenseure des droits des travailleuses et des travailleurs. Six semaines plus tard, aucune accusation n'a été portée, elle n'a pas vu d'avocat et sa famille ignore toujours où elle est détenue.

Le **mercredi 17 décembre**, à midi, des syndiquées et des syndiqués se rassembleront dans plusieurs villes du pays pour exiger sa libération. Joignez-vous à nous à Edmonton{NBSP}: venez avec vos collègues et faites entendre votre voix.

Vous ne pouvez pas être des nôtres{NBSP}? Agissez dès aujourd'hui{NBSP}:

1. [Signez la pétition en ligne]({PETITION_URL}) qui réclame sa libération.
2. Faites-la circuler parmi vos collègues.
3. Le 17 décembre, portez du rouge au travail et publiez une photo avec le mot-clic #LibérezNadia.

Plus nous serons nombreux à nous lever, plus il sera difficile de détourner le regard.
"""  # noqa: E501 - one line per paragraph, as organizers type it

_ALERT_EN = """\
Dear {{ member.first_name | default("member") }},

Nadia Rahimi has now spent more than a month in detention, without charge, for standing up for students and workers. Governments notice when thousands of union members speak with one voice.

**Add your name to our petition** for her immediate release, and ask two co-workers at {{ member.local | default("your workplace") }} to do the same.

We will deliver every signature on December 17, the national day of action. [Read the background](https://prairieworkers.example/campaigns/nadia).

In solidarity,
The Human Rights Committee
"""  # noqa: E501 - one line per paragraph, as organizers type it

_ALERT_FR = """\
Bonjour {{ member.first_name | default("camarade") }},

Nadia Rahimi est détenue depuis plus d'un mois, sans accusation, pour avoir défendu les étudiantes, les étudiants et les travailleurs. Les gouvernements remarquent quand des milliers de syndiqués parlent d'une seule voix.

**Ajoutez votre nom à notre pétition** pour exiger sa libération immédiate, et invitez deux collègues de {{ member.local | default("votre milieu de travail") }} à faire de même.

Nous remettrons toutes les signatures le 17 décembre, lors de la journée nationale d'action. [Lire le contexte](https://prairieworkers.example/fr/campagnes/nadia).

Solidairement,
Le Comité des droits de la personne
"""  # noqa: E501 - one line per paragraph, as organizers type it

_EVENT = {
    "event_date": "2025-12-17",
    "event_time": "12:00",
    "event_end_time": "13:30",
    "timezone": "America/Edmonton",
    "address": "10800 97 Avenue NW\nEdmonton AB",
    "cta_url": PETITION_URL,
}

SAMPLES: dict[tuple[str, str], EmailContent] = {
    ("statement", "en"): EmailContent(
        layout="statement",
        language="en",
        subject="We stand with trade unionists jailed for organizing",
        preheader="A statement from the Executive Board, and what we are doing about it.",
        body=_STATEMENT_EN,
        body_format="markdown",
        fields={
            "headline": "Free the jailed trade unionists",
            "byline": "Statement of the Executive Board",
        },
    ),
    ("statement", "fr"): EmailContent(
        layout="statement",
        language="fr",
        subject="Solidarité avec les syndicalistes emprisonnés pour avoir milité",
        preheader="Une déclaration du Conseil exécutif, et ce que nous faisons.",
        body=_STATEMENT_FR,
        body_format="markdown",
        fields={
            "headline": "Libérez les syndicalistes emprisonnés",
            "byline": "Déclaration du Conseil exécutif",
        },
    ),
    ("day_of_action", "en"): EmailContent(
        layout="day_of_action",
        language="en",
        subject="Dec. 17: rally to bring Nadia Rahimi home",
        preheader="Noon at the Legislature. Bring a co-worker, and sign the petition today.",
        body=_DAY_EN,
        body_format="markdown",
        fields={
            **_EVENT,
            "headline": "Day of action, Dec. 17: free Nadia Rahimi",
            "place": "Alberta Legislature, south steps",
            "what_to_bring": "A homemade sign\nWarm layers and a thermos\nA co-worker or two",
            "cta_label": "Sign the petition",
        },
    ),
    ("day_of_action", "fr"): EmailContent(
        layout="day_of_action",
        language="fr",
        subject=f"17 décembre{NBSP}: rassemblement pour libérer Nadia Rahimi",
        preheader="À midi, devant l'Assemblée législative. Venez avec un ou une collègue.",
        body=_DAY_FR,
        body_format="markdown",
        fields={
            **_EVENT,
            "headline": f"Journée d'action du 17 décembre{NBSP}: libérez Nadia Rahimi",
            "place": "Assemblée législative de l'Alberta, marches sud",
            "what_to_bring": "Une pancarte faite maison\nDes vêtements chauds et un thermos\n"
            "Une ou deux personnes de votre milieu de travail",
            "cta_label": "Signer la pétition",
        },
    ),
    ("action_alert", "en"): EmailContent(
        layout="action_alert",
        language="en",
        subject='{{ member.first_name | default("Friend") }}, add your name for Nadia',
        preheader="It takes one minute, and every name counts.",
        body=_ALERT_EN,
        body_format="markdown",
        fields={
            "headline": "Sign now: free Nadia Rahimi",
            "cta_label": "Sign the petition",
            "cta_url": PETITION_URL,
        },
    ),
    ("action_alert", "fr"): EmailContent(
        layout="action_alert",
        language="fr",
        subject='{{ member.first_name | default("Camarade") }}, signez pour Nadia',
        preheader="Une minute suffit, et chaque nom compte.",
        body=_ALERT_FR,
        body_format="markdown",
        fields={
            "headline": f"Signez maintenant{NBSP}: libérez Nadia Rahimi",
            "cta_label": "Signer la pétition",
            "cta_url": PETITION_URL,
        },
    ),
}

SAMPLE_RECIPIENTS = {
    "en": Recipient(
        first_name="Amélie",
        last_name="O'Brien",
        email="amelie.obrien@example.org",
        local="Local 118",
        language="en",
        postal_code="T5J 0N3",
        token="tok123",  # noqa: S106 - sample data, not a secret
        unsubscribe_url="https://t.prairieworkers.example/u/tok123",
        preferences_url="https://t.prairieworkers.example/p/tok123",
    ),
    "fr": Recipient(
        first_name="Mathieu",
        last_name="Côté",
        email="mathieu.cote@example.org",
        local="la section locale 118",
        language="fr",
        postal_code="T6E 1Z9",
        token="tok456",  # noqa: S106 - sample data, not a secret
        unsubscribe_url="https://t.prairieworkers.example/u/tok456",
        preferences_url="https://t.prairieworkers.example/p/tok456",
    ),
}
