"""The audit log's row (a minimal stand-in until the accounts package lands on main).

``accounts.audit.record`` writes these; ``compliance.audit_log`` lists them. The lead's
accounts package owns this model: reconcile at merge (same name, same columns).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId

JsonDict = JSON().with_variant(JSONB(), "postgresql")


class AuditEntry(Base):
    """One change a person (or an API key) made: who, what, to what, when, and the details."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    actor_kind: Mapped[str] = mapped_column(String(16))  # user | api_key | system
    actor_id: Mapped[int | None] = mapped_column(BigId, default=None)
    actor_name: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))  # consent.record, customer.opt_out, …
    target: Mapped[str] = mapped_column(String(200))  # customer:12, policy, import_job:3, …
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDict, default=dict)
