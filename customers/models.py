"""A customer is a household a company serves, reached by one mobile number."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "phone"),
        # The list, newest first, a page at a time: read from the index, not sorted.
        Index("ix_customers_tenant_newest", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # E.164, normalised on the way in (customers.phones); the idempotency key of imports.
    phone: Mapped[str] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(50), default=None)
    city: Mapped[str | None] = mapped_column(String(50), default=None)
    # IANA zone used for quiet hours and local send times.
    timezone: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    # The language of automatic messages (confirmations, answers); None: the company's.
    language: Mapped[str | None] = mapped_column(String(8), default=None)

    tag_rows: Mapped[list[CustomerTag]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="CustomerTag.tag",
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class CustomerTag(Base):
    """One tag of one customer; a table rather than a JSON list so audiences can filter in SQL."""

    __tablename__ = "customer_tags"
    __table_args__ = (
        UniqueConstraint("customer_id", "tag"),
        Index("ix_customer_tags_tenant_tag", "tenant_id", "tag"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(50))
