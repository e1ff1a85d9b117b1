"""What the gate decides from: consent, suppressions, a company's policy, and what was sent.

Consent records and suppressions outlive the customer row (evidence must be kept after a
customer is deleted or revokes), so they carry the phone number as well as the customer.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin

# The least a company may keep each kind of data, in days (compliance.service.update_policy).
# Evidence of consent, and the gate's record of checking it: 5 months (MIIT 2020 draft);
# the rest: long enough for the office to answer a complaint about the visit.
RETENTION_MINIMUMS = {
    "consent_retention_days": 153,
    "capture_consent_retention_days": 153,
    "decision_log_days": 153,
    "original_media_days": 7,
    "message_text_days": 30,
    "reply_days": 30,
}

CONSENT_SOURCES = ("in_person", "web_form", "reply", "import", "api")

# ComplianceDecision.decision
SEND = "send"
DEFER = "defer"  # quiet hours: try again at not_before
SUPPRESS = "suppress"  # this customer must not get this message (opt-out, no consent, cap)
REFUSE = "refuse"  # the message itself breaks a rule (signature, brackets, length)

# ComplianceDecision.reason
ALLOWED = "allowed"
OPTED_OUT = "opted_out"  # the customer asked to stop (回复T退订 / STOP) on this signature
NO_CONSENT = "no_consent"  # marketing without a recorded, unrevoked consent
FREQUENCY_CAP = "frequency_cap"  # the company's marketing cap for the rolling window is reached
QUIET_HOURS = "quiet_hours"  # outside the sending window in the customer's time zone
MESSAGE_RULES = "message_rules"  # brackets, length or footer rules broken by the text
# An open complaint or a low rating waits for the office: no marketing until it is resolved
COMPLAINT_HOLD = "complaint_hold"

# MarketingHold.reason
HOLD_COMPLAINT = "complaint"  # a complaint reply, open in the inbox
HOLD_LOW_RATING = "low_rating"  # 不满意 on a visit report: a service-recovery ticket
HOLD_REASONS = (HOLD_COMPLAINT, HOLD_LOW_RATING)


class CompliancePolicy(TimestampMixin, Base):
    """A company's rules; the defaults apply until it changes them."""

    __tablename__ = "compliance_policies"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    marketing_cap: Mapped[int] = mapped_column(default=2)
    cap_window_days: Mapped[int] = mapped_column(default=90)
    # Sending window in the customer's local time, minutes after midnight: [start, end).
    window_start_minute: Mapped[int] = mapped_column(default=8 * 60)
    window_end_minute: Mapped[int] = mapped_column(default=21 * 60)
    opt_out_footer: Mapped[str] = mapped_column(String(20), default="回复T退订")
    # Revoked consents are kept at least this long (MIIT draft: at least 5 months).
    consent_retention_days: Mapped[int] = mapped_column(default=183)
    # How long each other kind of data is kept (compliance.retention; RETENTION_MINIMUMS):
    # withdrawn capture consents with their signatures, original photos and clips after the
    # visit, messages' texts and numbers, customers' replies, the gate's decision log.
    capture_consent_retention_days: Mapped[int] = mapped_column(default=183, server_default="183")
    original_media_days: Mapped[int] = mapped_column(default=365, server_default="365")
    message_text_days: Mapped[int] = mapped_column(default=730, server_default="730")
    reply_days: Mapped[int] = mapped_column(default=730, server_default="730")
    decision_log_days: Mapped[int] = mapped_column(default=365, server_default="365")


class ConsentRecord(Base):
    """A customer's consent to marketing messages, with its evidence; revoked, never edited."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_tenant_phone", "tenant_id", "phone"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    phone: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(16))  # one of CONSENT_SOURCES
    evidence: Mapped[str] = mapped_column(Text)  # what shows it: form id, signed sheet, reply text
    granted_at: Mapped[dt.datetime] = mapped_column()
    recorded_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoke_source: Mapped[str | None] = mapped_column(String(16), default=None)
    revoke_evidence: Mapped[str | None] = mapped_column(Text, default=None)


class Suppression(Base):
    """A number that must get nothing more from this company under this signature."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_tenant_phone", "tenant_id", "phone", "signature"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    signature: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))  # reply_opt_out | provider_opt_out | manual
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column()
    lifted_at: Mapped[dt.datetime | None] = mapped_column(default=None)  # opt-in restores


class MarketingSend(Base):
    """One marketing message the gate let through: what the frequency cap counts."""

    __tablename__ = "marketing_sends"
    __table_args__ = (
        Index("ix_marketing_sends_tenant_phone_at", "tenant_id", "phone", "allowed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    message_ref: Mapped[str] = mapped_column(String(200), unique=True)
    allowed_at: Mapped[dt.datetime] = mapped_column()


class ComplianceDecision(Base):
    """The audit log: every decision of the gate, with its reason."""

    __tablename__ = "compliance_decisions"
    __table_args__ = (Index("ix_compliance_decisions_tenant_at", "tenant_id", "decided_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    phone: Mapped[str] = mapped_column(String(20))
    message_ref: Mapped[str] = mapped_column(String(200), index=True)
    category: Mapped[str] = mapped_column(String(16))  # marketing | service
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime | None] = mapped_column(default=None)
    decided_at: Mapped[dt.datetime] = mapped_column()


class MarketingHold(Base):
    """A number held from marketing while the office owes the customer an answer.

    Whoever opens the ticket (an inbox complaint, a low rating on a report) sets the hold
    with the ticket as ``source``, and releases it when the ticket is resolved; the gate
    only reads this table, so compliance knows nothing of the inbox. Service messages are
    not held.
    """

    __tablename__ = "marketing_holds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source"),
        Index("ix_marketing_holds_tenant_phone", "tenant_id", "phone", "released_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(16))  # one of HOLD_REASONS
    source: Mapped[str] = mapped_column(String(64))  # the ticket, e.g. "reply:42"
    opened_at: Mapped[dt.datetime] = mapped_column()
    released_at: Mapped[dt.datetime | None] = mapped_column(default=None)


CAPTURE_SCOPES = ("photos", "clips", "marketing")
CAPTURE_SOURCES = ("in_person", "signature", "web_form", "api")


class CaptureConsent(Base):
    """A customer's permission to photograph or film the home, with its evidence.

    ``scopes`` is a comma list of CAPTURE_SCOPES: photos, clips, and use in marketing (a
    before/after in a campaign). Withdrawn, never edited; a signature drawn on the staff
    phone is kept as a PNG under the media root (``signature_path``).
    """

    __tablename__ = "capture_consents"
    __table_args__ = (Index("ix_capture_consents_tenant_customer", "tenant_id", "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None
    )
    source: Mapped[str] = mapped_column(String(16))  # one of CAPTURE_SOURCES
    evidence: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(64))
    signature_path: Mapped[str | None] = mapped_column(String(255), default=None)
    recorded_by: Mapped[str | None] = mapped_column(String(100), default=None)
    granted_at: Mapped[dt.datetime] = mapped_column()
    recorded_at: Mapped[dt.datetime] = mapped_column()
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    withdraw_evidence: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]
