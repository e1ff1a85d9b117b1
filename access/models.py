"""The audit log's table."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId


class AuditEntry(Base):
    """One change a person (or a program with an API key) made, and who made it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_newest", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    actor_kind: Mapped[str] = mapped_column(String(8))  # user | api_key | system
    actor_id: Mapped[int | None] = mapped_column(BigId, default=None)
    actor_name: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
