"""Campaigns and their per-customer occurrences, as rows.

Lifecycle of ``Campaign.status``::

    draft ─► active ◄─► paused
      │        │          │
      └────────┴──────────┴──► archived   (for good: nothing more is scheduled or sent)

Editing the rule, audience or texts bumps ``version``. Occurrences record the version
that computed them; an edit recomputes the pending ones not yet due and never touches
those already handed to the outbox.

Lifecycle of ``CampaignOccurrence.status``::

    pending ─► handed_off      (a Message was scheduled: ``message_id``)
       ├─────► cancelled       (``reason``: opted_out, booked_early, render_failed,
       │                        campaign_paused, campaign_archived)
    skipped                    (written as such: found too late for the catch-up window)

``(campaign_id, customer_id, local_date)`` is unique: the local date a rule names is the
occurrence's identity, so materializing twice, or two ticks at once, make one row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin

JsonDict = JSON().with_variant(JSONB(), "postgresql")

# Campaign.status
DRAFT = "draft"
ACTIVE = "active"
PAUSED = "paused"
ARCHIVED = "archived"
CAMPAIGN_STATES = (DRAFT, ACTIVE, PAUSED, ARCHIVED)

# CampaignOccurrence.status
PENDING = "pending"
HANDED_OFF = "handed_off"
CANCELLED = "cancelled"
SKIPPED = "skipped"
OCCURRENCE_STATES = (PENDING, HANDED_OFF, CANCELLED, SKIPPED)

# CampaignOccurrence.reason
OPTED_OUT = "opted_out"  # the customer opted out before it was due
BOOKED_EARLY = "booked_early"  # a booking or visit of the service since the basis
RENDER_FAILED = "render_failed"  # the template could not be filled for this customer
CAMPAIGN_PAUSED = "campaign_paused"  # handed off, but paused before it was sent
CAMPAIGN_ARCHIVED = "campaign_archived"  # the campaign was archived while it waited
TOO_LATE = "too_late"  # a cadence date found after its catch-up window (status skipped)

# Message.status_reason for campaign messages stopped by a pause or an archive.
MESSAGE_PAUSED = "campaign_paused"


class Campaign(TimestampMixin, Base):
    """A company's seasonal campaign: a rule, an audience, a template and its state."""

    __tablename__ = "campaigns"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids are in links and message keys

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    preset: Mapped[str | None] = mapped_column(String(64), default=None)  # started from
    rule: Mapped[dict[str, Any]] = mapped_column(JsonDict)  # campaigns.rules.to_dict
    audience: Mapped[dict[str, Any]] = mapped_column(JsonDict, default=dict)  # audiences
    # The service the campaign sells: the booking page offers it, and a booking or visit
    # of it cancels a pending reminder (booked_early). None: any booking counts.
    service_type: Mapped[str | None] = mapped_column(String(64), default=None)
    template: Mapped[str] = mapped_column(Text)  # the SMS body (also the MMS fallback)
    # {"subject", "body", "image_media_id" | "image_url"}: sent as MMS when the provider
    # carries MMS, otherwise the SMS template goes instead.
    mms: Mapped[dict[str, Any] | None] = mapped_column(JsonDict, default=None)
    category: Mapped[str] = mapped_column(String(16), default="marketing")
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    version: Mapped[int] = mapped_column(default=1)
    activated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    paused_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # When the materializer last ran for it: yearly rules look for dates after this, so
    # an outage between two ticks does not drop an occurrence.
    materialized_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CampaignOccurrence(TimestampMixin, Base):
    """One due send of a campaign to one customer, on the local date its rule names.

    ``due_at`` is when to hand it to the outbox (a caught-up cadence reminder: when it
    was found, i.e. at once; a skipped one: when it was found too late). ``basis_at`` is
    what it was computed from (the last service or reminder for a cadence, the moment
    of computing for a yearly rule): a booking or visit of the service after it means
    the customer no longer needs the reminder.
    """

    __tablename__ = "campaign_occurrences"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", "local_date"),
        Index("ix_campaign_occurrences_due", "status", "due_at"),
        Index("ix_campaign_occurrences_tenant_due", "tenant_id", "due_at"),
        # The id is part of its message's idempotency key ("campaign:occurrence"): SQLite
        # must never hand a deleted row's id to a new one, or the new occurrence would find
        # the old message and send nothing (resuming after a pause recreates occurrences).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    local_date: Mapped[dt.date] = mapped_column(Date)
    due_at: Mapped[dt.datetime] = mapped_column()
    basis_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    campaign_version: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None
    )
    caught_up: Mapped[bool] = mapped_column(default=False)
    # Caught up: how late it was found. Skipped: how late the date was when found.
    late_by_days: Mapped[int] = mapped_column(default=0)


class PlumRainOnset(Base):
    """A company's 入梅 date for a region and year (the region as ``calendar.region_key``)."""

    __tablename__ = "plum_rain_onsets"
    __table_args__ = (UniqueConstraint("tenant_id", "region", "year"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    region: Mapped[str] = mapped_column(String(50))
    year: Mapped[int] = mapped_column()
    onset: Mapped[dt.date] = mapped_column(Date)
