"""Every domain's models, imported so that ``Base.metadata`` (and Alembic) sees all tables."""

from access.models import AuditEntry
from accounts.models import SignInLink, User, UserSession
from alerts.models import Alert, AlertChannel, AlertDelivery
from bookings.models import Booking, LinkVisitor, ShortLink
from campaigns.models import Campaign, CampaignOccurrence, PlumRainOnset
from compliance.models import (
    ComplianceDecision,
    CompliancePolicy,
    ConsentRecord,
    MarketingHold,
    MarketingSend,
    Suppression,
)
from customers.models import Customer, CustomerTag, ImportJob, ImportJobRow
from huifang.db import Base
from huifang.ops import WorkerHeartbeat
from media.models import Media, Rendition, WatermarkTemplate
from messaging.models import Message, MessageEvent, SmsTemplate
from reports.models import Report, ReportRating, ReportText, ReportViews
from tenancy.models import ApiKey, Tenant
from visits.models import Staff, Visit

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertDelivery",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Booking",
    "Campaign",
    "CampaignOccurrence",
    "ComplianceDecision",
    "CompliancePolicy",
    "ConsentRecord",
    "Customer",
    "CustomerTag",
    "ImportJob",
    "ImportJobRow",
    "LinkVisitor",
    "MarketingHold",
    "MarketingSend",
    "Media",
    "Message",
    "MessageEvent",
    "PlumRainOnset",
    "Rendition",
    "Report",
    "ReportRating",
    "ReportText",
    "ReportViews",
    "ShortLink",
    "SignInLink",
    "SmsTemplate",
    "Staff",
    "Suppression",
    "Tenant",
    "User",
    "UserSession",
    "Visit",
    "WatermarkTemplate",
    "WorkerHeartbeat",
]
