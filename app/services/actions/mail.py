"""A signer's two possible emails: "confirm your signature" and the optional thank-you.

Both are transactional (the signature asked for them; no consent to hear more is implied):
signing enqueues the job after its commit, the transactional task sends it here, once
(`mailed_at`), never to a suppressed address. The confirmation link is signed and lasts
CONFIRM_MAX_AGE; following it shows a button, and only the POST counts the signature (link
scanners fetch every URL of an email).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.emails import EmailContent, Recipient
from app.models import Action, ActionResponse, OrgSettings, Sender
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.notices import notice_batch, plain
from app.services.audience.subscriptions import is_suppressed

log = logging.getLogger(__name__)

CONFIRM_KIND = "action_confirmation"
THANKS_KIND = "action_thanks"
CONFIRM_SALT = "rallypoint.action-confirm.v1"
CONFIRM_MAX_AGE = timedelta(days=7)


def confirm_token(secret_key: str, response_id: int, email: str) -> str:
    return str(URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT).dumps([response_id, email]))


def read_confirm_token(secret_key: str, token: str) -> tuple[int, str] | None:
    """(response id, email) of a confirmation link, or None: forged, altered or expired."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT).loads(
            token, max_age=int(CONFIRM_MAX_AGE.total_seconds())
        )
    except BadSignature:
        return None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int)):
        return None
    return data[0], str(data[1])


def _content(kind: str, language: str, title: str, url: str, thank_you: str) -> EmailContent:
    fr = language == "fr"
    if kind == CONFIRM_KIND:
        return EmailContent(
            layout="action_alert",
            language="fr" if fr else "en",
            subject=(
                f"Confirmez votre signature : {title}" if fr else f"Confirm your signature: {title}"
            ),
            preheader="Un clic pour que votre signature compte."
            if fr
            else "One click to count your signature.",
            body=(
                "Merci d'avoir signé. Confirmez votre adresse pour que votre signature compte. "
                "Si ce n'est pas vous, ignorez ce message. Le lien est valide pendant 7 jours."
                if fr
                else "Thank you for signing. Confirm your address so your signature counts. "
                "If it wasn't you, just ignore this email. The link works for 7 days."
            ),
            body_format="markdown",
            fields={
                "headline": "Confirmez votre signature" if fr else "Confirm your signature",
                "cta_label": "Oui, je confirme" if fr else "Yes, count my signature",
                "cta_url": url,
            },
        )
    return EmailContent(
        layout="action_alert",
        language="fr" if fr else "en",
        subject=f"Merci d'avoir signé : {title}" if fr else f"Thank you for signing: {title}",
        preheader="Partagez la pétition." if fr else "Share the petition.",
        body=plain(thank_you)
        or (
            "Votre signature est comptée. Aidez-la à grandir : partagez la pétition."
            if fr
            else "Your signature is counted. Now help it grow: share the petition."
        ),
        body_format="markdown",
        fields={
            "headline": "Merci!" if fr else "Thank you!",
            "cta_label": "Partager la pétition" if fr else "Share the petition",
            "cta_url": url,
        },
    )


def send_response_mail(
    session: DbSession,
    transport: Any,
    response_id: int,
    kind: str,
    *,
    secret_key: str,
    base_url: str,
) -> int:
    """Send a signer's confirmation request or thank-you, once. Returns 1 if it left, else 0
    (already sent, already confirmed, removed, suppressed, or no organization identity or
    sender set up: logged, not retried). Flushes; the task commits."""
    response = session.get(ActionResponse, response_id)
    if response is None or response.mailed_at is not None or response.removed_at is not None:
        return 0
    if kind == CONFIRM_KIND and response.counted:
        return 0
    if is_suppressed(session, response.email):
        return 0
    action = session.get(Action, response.action_id)
    settings = session.get(OrgSettings, 1)
    sender = session.scalar(
        sa.select(Sender).order_by(Sender.is_default.desc(), Sender.id).limit(1)
    )
    if (
        action is None
        or settings is None
        or sender is None
        or not all(
            part.strip()
            for part in (settings.organization, settings.mailing_address, settings.contact)
        )
    ):
        log.error("signer email for response %s not sent: no identity or sender", response_id)
        return 0
    base = base_url.rstrip("/")
    version = action.version(response.language)
    title = plain(version.title if version and version.title else action.title)
    if kind == CONFIRM_KIND:
        token = confirm_token(secret_key, response.id, response.email)
        url = f"{base}/a/{action.slug}/confirm/{token}"
    else:
        url = f"{base}/a/{action.slug}?ref={response.referral_code}&utm_source=email"
    content = _content(kind, response.language, title, url, version.thank_you if version else "")
    transport.send_batch(
        notice_batch(
            settings,
            sender,
            content,
            base_url=base,
            inert_url=f"{base}/a/{action.slug}",
            to=Recipient(
                first_name=response.first_name,
                last_name=response.last_name,
                email=response.email,
                language=response.language,
            ),
            category=kind.replace("_", "-"),
        )
    )
    response.mailed_at = utcnow()
    session.flush()
    return 1
