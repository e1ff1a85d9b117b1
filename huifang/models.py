"""Every domain's models, imported so that ``Base.metadata`` (and Alembic) sees all tables."""

from accounts.models import AuditEntry, SignInLink, User, UserSession
from alerts.models import Alert, AlertChannel, AlertDelivery
from campaigns.models import Campaign, CampaignOccurrence, PlumRainOnset
from compliance.models import (
    ComplianceDecision,
    CompliancePolicy,
    ConsentRecord,
    MarketingSend,
    Suppression,
)
from customers.models import Customer, CustomerTag, ImportJob, ImportJobRow
from huifang.db import Base
from huifang.ops import WorkerHeartbeat
from media.models import Media, Rendition, WatermarkTemplate
from messaging.models import Message, MessageEvent
from tenancy.models import ApiKey, Tenant
from visits.models import Staff, Visit

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertDelivery",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Campaign",
    "CampaignOccurrence",
    "ComplianceDecision",
    "CompliancePolicy",
    "ConsentRecord",
    "Customer",
    "CustomerTag",
    "ImportJob",
    "ImportJobRow",
    "MarketingSend",
    "Media",
    "Message",
    "MessageEvent",
    "PlumRainOnset",
    "Rendition",
    "SignInLink",
    "Staff",
    "Suppression",
    "Tenant",
    "User",
    "UserSession",
    "Visit",
    "WatermarkTemplate",
    "WorkerHeartbeat",
]
