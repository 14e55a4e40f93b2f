"""Helpers for campaign tests: an organization with a sender, and input from the samples."""

from __future__ import annotations

from app import demo
from app.emails.samples import SAMPLES
from app.models import OrgSettings, Sender
from app.services.campaigns.authoring import CampaignInput, VariantInput

SENDER = "alerts@prairieworkers.example"


def setup_org(session, *, sender: str = SENDER) -> Sender:
    """The organization identity (CASL) and one allowed sender; flushed."""
    row = session.get(OrgSettings, 1)
    if row is None:
        row = OrgSettings(id=1)
        session.add(row)
    row.organization = demo.ORGANIZATION
    row.mailing_address = demo.MAILING_ADDRESS
    row.contact = demo.CONTACT
    allowed = Sender(email=sender, name="Prairie Workers", is_default=True)
    session.add(allowed)
    session.flush()
    return allowed


def variant(layout: str, language: str, **changes: object) -> VariantInput:
    sample = SAMPLES[layout, language]
    values = {
        "subject": sample.subject,
        "preheader": sample.preheader,
        "body": sample.body,
        "body_format": sample.body_format,
        "fields": dict(sample.fields),
    }
    values.update(changes)
    return VariantInput(**values)  # type: ignore[arg-type]


def sample_input(
    layout: str = "action_alert",
    *,
    languages: tuple[str, ...] = ("en",),
    name: str = "Test campaign",
    list_ids: tuple[int, ...] = (),
    **changes: object,
) -> CampaignInput:
    """Input for a campaign made of the sample content of `layout` in `languages`."""
    values: dict[str, object] = {
        "name": name,
        "layout": layout,
        "from_email": SENDER,
        "default_language": languages[0],
        "variants": {lang: variant(layout, lang) for lang in languages},
        "list_ids": list_ids,
    }
    values.update(changes)
    return CampaignInput(**values)  # type: ignore[arg-type]
