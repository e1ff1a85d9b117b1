"""Staff and visits: who served which customer, what was done, where in the home, and when."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin
from visits.service_types import label

JsonList = JSON().with_variant(JSONB(), "postgresql")


class Staff(TimestampMixin, Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    # Where the staff card photo is kept under the media root (set by the media domain).
    photo_path: Mapped[str | None] = mapped_column(String(255), default=None)
    # Certificates as named on the card: 家政服务员（高级）, 养老护理员, …
    certificates: Mapped[list[str]] = mapped_column(JsonList, default=list)
    years_experience: Mapped[int | None] = mapped_column(default=None)
    # Former staff stay for the history of their visits but take no new ones.
    active: Mapped[bool] = mapped_column(default=True)


class Visit(TimestampMixin, Base):
    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_tenant_customer", "tenant_id", "customer_id"),
        Index("ix_visits_tenant_finished", "tenant_id", "finished_at"),
        Index("ix_visits_tenant_newest", "tenant_id", "id"),  # the list, newest first
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL"), index=True, default=None
    )
    # A code from visits.service_types (ac_cleaning, deep_cleaning, …) or the company's own.
    service_type: Mapped[str] = mapped_column(String(64))
    # Rooms and places worked on, in the words used on the watermark: 客厅, 厨房, 主卧 …
    areas: Mapped[list[str]] = mapped_column(JsonList, default=list)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Set when the staff member starts the visit on the phone (staff.day).
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # What the customer paid, in the currency's minor unit (分), for spend-based audiences.
    amount_cents: Mapped[int | None] = mapped_column(default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def service_label(self) -> str:
        return label(self.service_type)
