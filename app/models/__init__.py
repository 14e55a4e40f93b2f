"""All models, imported here so Alembic and the app see one metadata."""

from app.models.base import Base
from app.models.breakdown import BreakdownDimension, CampaignBreakdown
from app.models.campaigns import (
    TRANSITIONS,
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Link,
    campaign_lists,
)
from app.models.deliveries import (
    OPEN_BATCH_STATUSES,
    BatchStatus,
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    SendBatch,
    WebhookBatch,
)
from app.models.imports import (
    IMPORT_TRANSITIONS,
    ImportIssue,
    ImportIssueKind,
    ImportStatus,
    MemberImport,
)
from app.models.members import (
    LANGUAGE_NAMES,
    ConsentBasis,
    Language,
    MailingList,
    Member,
    Segment,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    UnsubscribeSource,
)
from app.models.settings import OrgSettings, Sender
from app.models.stats import CampaignHourly, CampaignStats, LinkStats
from app.models.users import ApiToken, Role, User

__all__ = [
    "IMPORT_TRANSITIONS",
    "LANGUAGE_NAMES",
    "OPEN_BATCH_STATUSES",
    "TRANSITIONS",
    "ApiToken",
    "Base",
    "BatchStatus",
    "BreakdownDimension",
    "Campaign",
    "CampaignBreakdown",
    "CampaignHourly",
    "CampaignStats",
    "CampaignStatus",
    "CampaignVariant",
    "ConsentBasis",
    "Delivery",
    "DeliveryStatus",
    "Event",
    "EventKind",
    "ImportIssue",
    "ImportIssueKind",
    "ImportStatus",
    "Language",
    "Link",
    "LinkStats",
    "MailingList",
    "Member",
    "MemberImport",
    "OrgSettings",
    "Role",
    "Segment",
    "SendBatch",
    "Sender",
    "Subscription",
    "SubscriptionSource",
    "SubscriptionStatus",
    "Suppression",
    "SuppressionReason",
    "UnsubscribeSource",
    "User",
    "WebhookBatch",
    "campaign_lists",
]
