"""What the public petition pages say, in English and French (the signer's language)."""

from __future__ import annotations

from collections.abc import Iterable

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "to": "To",
        "petition": "The petition",
        "signatures": "signatures",
        "signature": "signature",
        "of_goal": "of {goal} goal",
        "sign_title": "Sign the petition",
        "sign_as": "Sign as {name}",
        "not_you": "Not you?",
        "first_name": "First name",
        "last_name": "Last name",
        "email": "Email",
        "postal_code": "Postal code",
        "city": "City",
        "local": "Local",
        "phone": "Phone",
        "comment": "Comment",
        "optional": "optional",
        "sign": "Sign",
        "closed": "This petition is closed. Thank you to everyone who signed.",
        "recent": "Recently signed",
        "thanks_title": "Thank you for signing",
        "thanks_default": "Your signature is counted. Now help it grow: share the petition.",
        "share": "Share the petition",
        "copy_link": "Copy link",
        "copied": "Link copied",
        "share_email": "Email",
        "share_text": "I just signed this petition. Will you sign it too?",
        "brought": "You brought {n} people to sign so far.",
        "brought_one": "You brought 1 person to sign so far.",
        "next_donate": "Support the campaign: donate",
        "next_action": "Take the next action",
        "confirm_sent": "Check your email: click the link we sent to confirm your signature.",
        "errors": "Please check the fields marked below.",
        "lang_switch": "Français",
        "language_name": "English",
        "consent_label": "Email me about this campaign",
        "progress": "Progress toward the goal",
        "confirm_title": "Confirm your signature",
        "confirm_button": "Yes, count my signature",
        "confirm_invalid": "This confirmation link is not valid or has expired. Please sign again.",
    },
    "fr": {
        "to": "À",
        "petition": "La pétition",
        "signatures": "signatures",
        "signature": "signature",
        "of_goal": "sur un objectif de {goal}",
        "sign_title": "Signez la pétition",
        "sign_as": "Signer en tant que {name}",
        "not_you": "Ce n'est pas vous?",
        "first_name": "Prénom",
        "last_name": "Nom",
        "email": "Courriel",
        "postal_code": "Code postal",
        "city": "Ville",
        "local": "Section locale",
        "phone": "Téléphone",
        "comment": "Commentaire",
        "optional": "facultatif",
        "sign": "Signer",
        "closed": "Cette pétition est fermée. Merci à toutes les personnes qui l'ont signée.",
        "recent": "Dernières signatures",
        "thanks_title": "Merci d'avoir signé",
        "thanks_default": "Votre signature est comptée. Aidez-la à grandir : partagez la pétition.",
        "share": "Partagez la pétition",
        "copy_link": "Copier le lien",
        "copied": "Lien copié",
        "share_email": "Courriel",
        "share_text": "Je viens de signer cette pétition. La signerez-vous aussi?",
        "brought": "Vous avez amené {n} personnes à signer jusqu'ici.",
        "brought_one": "Vous avez amené 1 personne à signer jusqu'ici.",
        "next_donate": "Appuyez la campagne : faites un don",
        "next_action": "Passez à l'action suivante",
        "confirm_sent": (
            "Vérifiez vos courriels : cliquez le lien envoyé pour confirmer votre signature."
        ),
        "errors": "Veuillez vérifier les champs indiqués ci-dessous.",
        "lang_switch": "English",
        "language_name": "Français",
        "consent_label": "Écrivez-moi au sujet de cette campagne",
        "progress": "Progression vers l'objectif",
        "confirm_title": "Confirmez votre signature",
        "confirm_button": "Oui, je confirme",
        "confirm_invalid": (
            "Ce lien de confirmation n'est pas valide ou a expiré. Signez de nouveau."
        ),
    },
}


def strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])


def pick_language(
    asked: str | None, member_language: str | None, accepted: Iterable[str], available: set[str]
) -> str:
    """?lang=, else the member's language, else the browser's first accepted one we have."""
    for candidate in (asked, member_language, *accepted):
        code = (candidate or "")[:2].lower()
        if code in available:
            return code
    return "en" if "en" in available else next(iter(sorted(available)), "en")
