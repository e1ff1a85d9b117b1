"""The audit log as the compliance screen reads it: who changed what, filtered and paged.

Rows are written by ``access.audit.record``; the compliance and customer services of
the office screens write theirs through ``record`` below.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from access.models import AuditEntry
from huifang.errors import Invalid
from huifang.pagination import PageParams, paginate


def record(
    session: Session, actor: Actor | None, action: str, target: str, detail: dict[str, Any]
) -> None:
    """``access.audit.record`` for a change a person (or an API key) made.

    Nothing is written without an actor: the system's own work on these records (a
    customer's "T" reply, a number the provider reports dead) is recorded where it happens
    (the reply in the inbox, the suppression's reason), and the STOP path stays as short
    as it is.
    """
    if actor is not None:
        audit.record(session, actor, action, target, detail)


@dataclass(frozen=True)
class AuditFilter:
    """What the audit log listing narrows to; every field optional."""

    actor: str | None = None  # part of the actor's name, or "user:12" / "api_key:3"
    action: str | None = None  # exact, or a prefix ending in "." ("consent." for all of them)
    target: str | None = None  # exact ("customer:12"), or a kind ("customer")
    since: dt.datetime | None = None  # at or after
    until: dt.datetime | None = None  # before

    def check(self) -> None:
        if self.since and self.until and self.since >= self.until:
            raise Invalid("The start of the period must be before its end.")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def audit_query(*, tenant_id: int, where: AuditFilter) -> Select[Any]:
    """The company's audit entries matching ``where``, newest first."""
    where.check()
    stmt = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if where.actor:
        kind, _, ident = where.actor.partition(":")
        if ident.isdigit() and kind in ("user", "api_key", "system"):
            stmt = stmt.where(AuditEntry.actor_kind == kind, AuditEntry.actor_id == int(ident))
        else:
            stmt = stmt.where(
                AuditEntry.actor_name.ilike(f"%{_escape_like(where.actor.strip())}%", escape="\\")
            )
    if where.action:
        if where.action.endswith("."):
            stmt = stmt.where(AuditEntry.action.startswith(where.action, autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == where.action)
    if where.target:
        if ":" in where.target:
            stmt = stmt.where(AuditEntry.target == where.target)
        else:
            stmt = stmt.where(
                AuditEntry.target.startswith(where.target + ":", autoescape=True)
                | (AuditEntry.target == where.target)
            )
    if where.since:
        stmt = stmt.where(AuditEntry.at >= where.since)
    if where.until:
        stmt = stmt.where(AuditEntry.at < where.until)
    return stmt.order_by(AuditEntry.id.desc())  # entries are added in time order


def list_audit(
    *, session: Session, tenant_id: int, page: PageParams, where: AuditFilter | None = None
) -> tuple[list[AuditEntry], int]:
    """One page of the company's audit log (newest first) and how many entries match."""
    return paginate(session, audit_query(tenant_id=tenant_id, where=where or AuditFilter()), page)
