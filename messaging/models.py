"""Messages as rows: created before anything is enqueued, moved only forward.

Lifecycle of ``Message.status``::

    scheduled ─► queued ─► sending ─► sent ─► delivered
        │          │          │          └──► undelivered
        │          │          ├──► failed        (the provider refused it for good)
        │          │          ├──► unknown       (timeout after the request left: never
        │          │          │                   re-sent automatically; an operator may)
        │          │          └──► deferred ─► queued …   (quiet hours, or a retry back-off)
        └──────────┴──────────────► suppressed   (the gate said no: reason names why)

``deferred`` and ``scheduled`` are waiting states: the dispatcher's tick claims rows whose
``due_at`` has come. Receipts arrive late, twice and out of order: a transition that is
not in ``TRANSITIONS`` is ignored, so a late ``sent`` never overwrites ``delivered``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin

SCHEDULED = "scheduled"
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
UNKNOWN = "unknown"
DEFERRED = "deferred"
SUPPRESSED = "suppressed"

FINAL = frozenset({DELIVERED, UNDELIVERED, FAILED, SUPPRESSED})
TRANSITIONS: dict[str, frozenset[str]] = {
    SCHEDULED: frozenset({QUEUED, SUPPRESSED, FAILED}),
    DEFERRED: frozenset({QUEUED, SUPPRESSED, FAILED}),
    QUEUED: frozenset({SENDING, SUPPRESSED, FAILED}),
    SENDING: frozenset({SENT, FAILED, UNKNOWN, DEFERRED, SUPPRESSED}),
    SENT: frozenset({DELIVERED, UNDELIVERED, FAILED}),
    # A receipt may still settle an unknown send; an operator's retry queues it again.
    UNKNOWN: frozenset({SENT, DELIVERED, UNDELIVERED, FAILED, QUEUED}),
    DELIVERED: frozenset(),
    UNDELIVERED: frozenset(),
    FAILED: frozenset(),
    SUPPRESSED: frozenset(),
}

# Message.status_reason for failures (the gate's reasons are compliance.models constants)
PROVIDER_REFUSED = "provider_refused"  # a permanent provider error; detail has its code
NO_TEMPLATE = "no_template"  # the provider sends only approved templates; none fits
RETRIES_EXHAUSTED = "retries_exhausted"  # retryable errors went on too long
TIMEOUT_AFTER_SEND = "timeout_after_send"  # the request may have left: status unknown
RETRY_BACKOFF = "retry_backoff"  # deferred for minutes after a retryable provider error
RATE_LIMITED = "rate_limited"  # the provider's shared send rate had no slot in time
# …and for what a delivery receipt did (each provider's StatusMap speaks these words)
PROVIDER_UNDELIVERED = "provider_undelivered"  # the carrier could not hand it over
PROVIDER_CANCELED = "provider_canceled"  # canceled at the provider before it went out
RECEIPT_PROGRESS = "receipt_progress"  # a progress report, recorded without a change
CARRIER_QUIET_HOURS = "carrier_quiet_hours"  # the carrier held marketing outside its hours

JsonList = JSON().with_variant(JSONB(), "postgresql")


class Message(TimestampMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_due", "status", "due_at"),
        Index("ix_messages_tenant_customer", "tenant_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))  # sms | mms
    category: Mapped[str] = mapped_column(String(16))  # marketing | service
    # What caused it: a visit report, a campaign occurrence, an opt-out confirmation, …
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    # (tenant, source, customer, channel): one message per cause, ever. Invariant 1.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[str] = mapped_column(Text)  # the content, before signature and footer
    # What the message is for (``messaging.sms_templates.PURPOSES``) and the values a
    # provider's approved template is filled from (Aliyun sends only templates, never
    # ``body``). None for messages written before purposes were recorded.
    purpose: Mapped[str | None] = mapped_column(String(32), default=None)
    variables: Mapped[dict[str, str] | None] = mapped_column(JsonList, default=dict)
    text: Mapped[str | None] = mapped_column(Text, default=None)  # exactly what was sent
    media_urls: Mapped[list[str]] = mapped_column(JsonList, default=list)
    status: Mapped[str] = mapped_column(String(16), default=SCHEDULED)
    status_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    status_detail: Mapped[str | None] = mapped_column(Text, default=None)
    due_at: Mapped[dt.datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    provider: Mapped[str | None] = mapped_column(String(16), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    events: Mapped[list[MessageEvent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="MessageEvent.id"
    )


class MessageEvent(Base):
    """The status history of a message, one row per change (and per ignored receipt)."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    applied: Mapped[bool] = mapped_column(default=True)  # False: out of order, ignored
    at: Mapped[dt.datetime] = mapped_column()


# InboundMessage.route (messaging.keywords decides it)
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
BOOK = "book"
OTHER = "other"
ROUTES = (OPT_OUT, OPT_IN, HELP, BOOK, OTHER)

# InboundMessage.state: keyword replies are handled on arrival; the rest wait in the inbox.
HANDLED = "handled"
OPEN = "open"


class InboundMessage(Base):
    """A customer's reply, kept with the rule that routed it.

    Providers deliver replies more than once; (tenant, provider, provider id) is unique,
    so a repeated webhook finds the row it made the first time and does nothing again.
    ``tenant_id`` is empty only for a reply from a number no company knows.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "provider_message_id"),
        Index("ix_inbound_tenant_received", "tenant_id", "received_at"),
        Index("ix_inbound_tenant_state", "tenant_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), default=None
    )
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column()
    # The message this answers: the company's latest one to this number before the reply.
    in_reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None
    )
    route: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(64), default=None)
    normalized: Mapped[str] = mapped_column(Text, default="")
    complaint: Mapped[bool] = mapped_column(default=False)
    complaint_rule: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    # Service recovery (complaints): who owns it, when the customer first heard back, and
    # how it ended. The clock runs from received_at.
    owner: Mapped[str | None] = mapped_column(String(100), default=None)
    # The office user it is assigned to (``owner`` keeps their name for the record).
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    assigned_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    first_response_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolution: Mapped[str | None] = mapped_column(Text, default=None)


class KeywordRule(Base):
    """A company's own reply keyword (e.g. "退" → opt_out), checked before the built-in ones."""

    __tablename__ = "keyword_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(16))  # one of ROUTES
    kind: Mapped[str] = mapped_column(String(16))  # exact | pattern (messaging.keywords)
    value: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column()


# SmsTemplate.kind: Aliyun approves notification and marketing templates separately.
NOTIFICATION = "notification"
MARKETING = "marketing"
TEMPLATE_KINDS = (NOTIFICATION, MARKETING)


class SmsTemplate(Base):
    """An SMS template the provider has approved for the company (Aliyun ``TemplateCode``).

    ``text`` is the approved text exactly, its variables written ``${name}``, without the
    【signature】 in front; ``signature`` is the signature (签名) it is sent under.
    """

    __tablename__ = "sms_templates"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        Index("ix_sms_templates_tenant_purpose", "tenant_id", "purpose"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # one of TEMPLATE_KINDS
    purpose: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column()
