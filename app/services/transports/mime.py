"""Build RFC 5322 messages for the transports that deliver message by message (SMTP, outbox)."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from app.services.transports.base import OutgoingBatch, OutgoingRecipient


def build_message(batch: OutgoingBatch, to: OutgoingRecipient) -> EmailMessage:
    """A multipart/alternative message (text first, then HTML) for one recipient."""
    rendered = batch.skeleton.personalize(to.recipient)
    message = EmailMessage()
    message["Subject"] = batch.subject_prefix + rendered.subject
    message["From"] = Address(display_name=batch.from_name, addr_spec=batch.from_email)
    message["To"] = to.email
    if batch.reply_to:
        message["Reply-To"] = batch.reply_to
    message["Date"] = formatdate(localtime=False)
    if to.message_id:
        message["Message-ID"] = to.message_id
    for name, value in to.headers.items():
        message[name] = value
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
