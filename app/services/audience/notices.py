"""One email to one person outside any campaign: a sign-up confirmation, a petition signer's
confirmation or thank-you. Untracked, with the organization's identity (CASL) and the
default sender, through the transactional transport.
"""

from __future__ import annotations

from app.emails import EmailContent, Identity, Recipient, build_skeleton
from app.models import OrgSettings, Sender
from app.services.transports import OutgoingBatch, OutgoingRecipient


def plain(text: str) -> str:
    """Organizer text placed in a template field: no template syntax in it."""
    return text.replace("{", "(").replace("}", ")").replace("%", " percent")


def notice_batch(
    settings: OrgSettings,
    sender: Sender,
    content: EmailContent,
    *,
    base_url: str,
    inert_url: str,
    to: Recipient,
    category: str,
) -> OutgoingBatch:
    """The batch of one untracked email to `to`."""
    skeleton = build_skeleton(
        content,
        Identity(settings.organization, settings.mailing_address, settings.contact),
        tracking=False,
        base_url=base_url,
        inert_url=inert_url,
    )
    return OutgoingBatch(
        from_email=sender.email,
        from_name=sender.name or settings.organization,
        reply_to="",
        skeleton=skeleton,
        recipients=[OutgoingRecipient(email=to.email, recipient=to)],
        categories=(category,),
    )
