"""Skeletons cached per process, and the outgoing batch built from claimed ledger rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from app.emails.content import Recipient
from app.emails.headers import list_unsubscribe_headers, message_id
from app.emails.render import Skeleton
from app.infra.tokens import Scope, TokenSigner
from app.models import Campaign
from app.services import DbSession
from app.services.sending import peers
from app.services.transports import OutgoingBatch, OutgoingRecipient

ONE_CLICK = "List-Unsubscribe=One-Click"


def skeleton(session: DbSession, campaign: Campaign, language: str) -> Skeleton:
    """The campaign's tracked skeleton for `language` (else its default language).

    Rendered once per process: campaigns.skeleton_for caches it by campaign id, language
    and updated_at (which every edit bumps), so a batch costs a dict lookup, not a render.
    """
    return peers.skeleton_for(session, campaign, language)


class ClaimedRow(NamedTuple):
    """A delivery claimed for sending, with what its message needs from the member.

    A named tuple, immutable like a frozen dataclass but built in C: a claim makes 1,000.
    """

    delivery_id: int
    email: str
    language: str  # the variant chosen when the audience was frozen
    first_name: str
    last_name: str
    local: str
    member_language: str
    postal_code: str
    attributes: Mapping[str, Any]


class BatchBuilder:
    """Turns claimed rows into an OutgoingBatch; everything per campaign is computed once."""

    def __init__(
        self,
        campaign: Campaign,
        *,
        signer: TokenSigner,
        base_url: str,
        one_click_over_http: bool = False,
    ) -> None:
        self.campaign_id = campaign.id
        self.signer = signer
        self.from_email = campaign.from_email
        self.from_name = campaign.from_name
        self.reply_to = campaign.reply_to
        base = base_url.rstrip("/")
        self.unsubscribe_prefix = f"{base}/u/"
        # RFC 8058 wants an https link; without one the header is left out rather than sent
        # broken, except in development and tests (one_click_over_http), where http://localhost
        # lets one-click unsubscribe be tried. Tokens are URL-safe, so checking the base once
        # stands for every recipient.
        try:
            list_unsubscribe_headers(f"{base}/u/token", allow_http=one_click_over_http)
            self.one_click = True
        except ValueError:
            self.one_click = False
        domain = self.from_email.rpartition("@")[2]
        try:
            message_id(1, 1, domain)
            self.message_domain: str | None = domain.lower()
        except ValueError:
            self.message_domain = None
        self.categories = ("rallypoint", f"campaign-{campaign.id}")
        # Message-level custom_args merge into every personalization's (SendGrid), so the
        # campaign id is written once and every event still carries both ids.
        self.custom_args = {"rp_campaign": str(campaign.id)}

    def recipient(self, row: ClaimedRow) -> OutgoingRecipient:
        # One token per use: the pixel's cannot unsubscribe, a link's cannot read the page.
        tokens = self.signer.sign_all(self.campaign_id, row.delivery_id)
        unsubscribe_url = self.unsubscribe_prefix + tokens[Scope.UNSUBSCRIBE]
        headers = (
            {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": ONE_CLICK}
            if self.one_click
            else {}
        )
        return OutgoingRecipient(
            email=row.email,
            recipient=Recipient(
                first_name=row.first_name,
                last_name=row.last_name,
                email=row.email,
                local=row.local,
                language=row.member_language,
                postal_code=row.postal_code,
                attributes=row.attributes,
                open_token=tokens[Scope.OPEN],
                click_token=tokens[Scope.CLICK],
                unsubscribe_url=unsubscribe_url,
                preferences_url=unsubscribe_url + "#preferences",
            ),
            delivery_id=row.delivery_id,
            message_id=(
                f"<d{row.delivery_id}.c{self.campaign_id}@{self.message_domain}>"
                if self.message_domain
                else ""
            ),
            headers=headers,
            custom_args={"rp_delivery": str(row.delivery_id)},
        )

    def batch(self, skeleton: Skeleton, rows: Iterable[ClaimedRow]) -> OutgoingBatch:
        return OutgoingBatch(
            from_email=self.from_email,
            from_name=self.from_name,
            reply_to=self.reply_to,
            skeleton=skeleton,
            recipients=[self.recipient(row) for row in rows],
            categories=self.categories,
            custom_args=self.custom_args,
        )
