"""The words the email layouts say themselves, in English and French, and event dates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from app.emails.content import EventTime

# One table for both languages, so a missing translation is a missing key, caught by a test.
UI_STRINGS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "kicker_action_alert": "Action alert",
        "kicker_day_of_action": "Day of action",
        "kicker_statement": "Statement",
        "when": "When",
        "where": "Where",
        "what_to_bring": "What to bring",
        "add_to_calendar": "Add to calendar",
        "sent_by": "Sent by",
        "contact": "Contact",
        "colon": ":",
        "why_received": "You are receiving this email because your address is on one of our "
        "mailing lists.",
        "view_in_browser": "View in browser",
        "preferences": "Manage preferences",
        "unsubscribe": "Unsubscribe",
    },
    "fr": {
        "kicker_action_alert": "Appel à l'action",
        "kicker_day_of_action": "Journée d'action",
        "kicker_statement": "Déclaration",
        "when": "Quand",
        "where": "Où",
        "what_to_bring": "À apporter",
        "add_to_calendar": "Ajouter à mon agenda",
        # "Expéditeur :" rather than "Envoyé par", which would need an article before
        # most organization names ("par le Syndicat...").
        "sent_by": "Expéditeur\u00a0:",
        "contact": "Pour nous joindre",
        # French typography puts a no-break space before a colon.
        "colon": "\u00a0:",
        "why_received": "Vous recevez ce courriel parce que votre adresse figure sur l'une de nos "
        "listes de diffusion.",
        "view_in_browser": "Voir dans le navigateur",
        "preferences": "Gérer mes préférences",
        "unsubscribe": "Se désabonner",
    },
}

_WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
}
_MONTHS = {
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
    "fr": (
        "janvier", "février", "mars", "avril", "mai", "juin",
        "juillet", "août", "septembre", "octobre", "novembre", "décembre",
    ),
}  # fmt: skip


def ui_strings(language: str) -> dict[str, str]:
    """Return the layouts' strings for `language` ("en" or "fr") as a fresh dict."""
    return dict(UI_STRINGS[language])


def format_event_date(when: datetime, language: str) -> str:
    """Format a date the way each language writes it in a letter.

    "Wednesday, December 17, 2025" in English; "mercredi 17 décembre 2025" in French,
    with "1er" for the first of the month.
    """
    weekday = _WEEKDAYS[language][when.weekday()]
    month = _MONTHS[language][when.month - 1]
    if language == "fr":
        day = "1er" if when.day == 1 else str(when.day)
        return f"{weekday} {day} {month} {when.year}"
    return f"{weekday}, {month} {when.day}, {when.year}"


def format_event_hours(event: EventTime, language: str) -> str:
    """Format the start (and end) time with the zone's abbreviation.

    "12:00 p.m. to 2:00 p.m. (MST)" in English (Canadian Press style);
    "de 12 h à 14 h (MST)" in French (Office québécois de la langue française style).
    """
    zone_name = event.start.tzname() or event.zone.key
    if language == "fr":
        start = _clock_fr(event.start)
        hours = f"de {start} à {_clock_fr(event.end)}" if event.end else start
    else:
        start = _clock_en(event.start)
        hours = f"{start} to {_clock_en(event.end)}" if event.end else start
    return f"{hours} ({zone_name})"


def _clock_en(when: datetime) -> str:
    hour = when.hour % 12 or 12
    suffix = "a.m." if when.hour < 12 else "p.m."
    return f"{hour}:{when.minute:02d} {suffix}"


def _clock_fr(when: datetime) -> str:
    return f"{when.hour} h" if when.minute == 0 else f"{when.hour} h {when.minute:02d}"
