"""Short links put in messages, who opened them, and the bookings made through them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin


class ShortLink(Base):
    """A link we put in a message (``/b/{token}``): who it was for and why; clicks counted."""

    __tablename__ = "short_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    # What it was sent for: a visit report, a campaign, … (attribution of bookings).
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    service_type: Mapped[str | None] = mapped_column(String(64), default=None)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column()
    clicks: Mapped[int] = mapped_column(default=0)
    first_clicked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_clicked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class LinkVisitor(Base):
    """When a visitor's opening of a link last counted as a click (one per visitor an hour).

    ``visitor`` is a keyed hash of the client address and user agent
    (``bookings.links.visitor_of``): enough to tell visitors apart, no address kept.
    """

    __tablename__ = "link_visitors"

    link_id: Mapped[int] = mapped_column(
        ForeignKey("short_links.id", ondelete="CASCADE"), primary_key=True
    )
    visitor: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    counted_at: Mapped[dt.datetime] = mapped_column()


# Booking.status::
#
#     requested ─► confirmed ─► cancelled
#      │ ▲  ▲          │
#      │ │  └──────────┘  (the customer moved the time: staff confirm the new one)
#      │ └── proposed ─► confirmed (the customer accepts the office's time)
#      ├──► declined
#      └──► cancelled   (from proposed too)
REQUESTED = "requested"  # the customer asked; staff have not answered yet
CONFIRMED = "confirmed"
# The office offered another time (and who would go); the customer accepts it, picks
# another time (back to requested) or cancels, on the booking page.
PROPOSED = "proposed"
DECLINED = "declined"  # staff could not take it; the customer is told
CANCELLED = "cancelled"  # the customer called it off on the booking page
BOOKING_STATES = (REQUESTED, PROPOSED, CONFIRMED, DECLINED, CANCELLED)
OPEN_BOOKING_STATES = (REQUESTED, PROPOSED, CONFIRMED)


class Booking(TimestampMixin, Base):
    """A customer's request for a visit: from the booking page or a "1" reply.

    Attribution rides along: the link clicked, the message that prompted it, the reply.
    A link holds at most one open booking (``open_link_id`` is unique): the page shows
    it, to change or cancel, instead of taking another.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_tenant_slot", "tenant_id", "slot_start"),
        Index("ix_bookings_tenant_status", "tenant_id", "status"),
        # The reminder tick: confirmed bookings by time, across companies.
        Index("ix_bookings_status_slot", "status", "slot_start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    service_type: Mapped[str | None] = mapped_column(String(64), default=None)
    # Empty for a "1" reply: staff call to agree a time.
    slot_start: Mapped[dt.datetime | None] = mapped_column(default=None)
    slot_end: Mapped[dt.datetime | None] = mapped_column(default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # Where to go, as the customer gave it on the page (also kept on the customer).
    address: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16), default=REQUESTED)
    channel: Mapped[str] = mapped_column(String(16))  # page | reply
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("short_links.id", ondelete="SET NULL"), default=None
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None
    )
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL"), default=None
    )
    # What the message was sent for (a visit report, a campaign), for conversion figures.
    source_type: Mapped[str | None] = mapped_column(String(32), default=None)
    source_id: Mapped[str | None] = mapped_column(String(64), default=None)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Confirmed by the office: who goes, and the visit made for it; declined: why (the
    # customer is told).
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL"), default=None, index=True
    )
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visits.id", ondelete="SET NULL"), default=None
    )
    decline_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # The link while this booking is open on it (requested or confirmed, its time ahead);
    # unique, so two posts at once cannot both book through one link. Emptied when it is
    # cancelled or declined, or when its time has passed and the customer books again.
    open_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("short_links.id", ondelete="SET NULL"), default=None, unique=True
    )
    # When the day-before reminders (customer and staff member) were raised for the
    # confirmed time; emptied when the booking is confirmed again for another time.
    reminded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
