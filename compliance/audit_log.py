"""The audit log as the compliance screen reads it: who changed what, filtered and paged.

Rows are written by ``accounts.audit.record`` (the accounts package). Until it is on main,
``record`` here writes the same row, so the services of this screen can already say who
made each change; at merge it becomes a call to ``accounts.audit.record``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from accounts.models import AuditEntry
from huifang.db import utcnow
from huifang.errors import Invalid
from huifang.pagination import PageParams, paginate


class Actor(Protocol):
    """Who made a change: a signed-in person or an API key (``accounts.actors.Actor``)."""

    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> int | None: ...

    @property
    def name(self) -> str: ...

    @property
    def tenant_id(self) -> int: ...


def record(session: Session, actor: Actor | None, action: str, target: str,
           detail: dict[str, Any]) -> None:
    """Write one audit entry for a change ``actor`` made (nothing when no actor is known)."""
    if actor is None:
        return
    session.add(AuditEntry(tenant_id=actor.tenant_id, at=utcnow(), actor_kind=actor.kind,
                           actor_id=actor.id, actor_name=actor.name[:100], action=action[:64],
                           target=target[:200], detail=detail))
    session.flush()


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
            stmt = stmt.where(AuditEntry.actor_name.ilike(
                f"%{_escape_like(where.actor.strip())}%", escape="\\"))
    if where.action:
        if where.action.endswith("."):
            stmt = stmt.where(AuditEntry.action.startswith(where.action, autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == where.action)
    if where.target:
        if ":" in where.target:
            stmt = stmt.where(AuditEntry.target == where.target)
        else:
            stmt = stmt.where(AuditEntry.target.startswith(where.target + ":", autoescape=True)
                              | (AuditEntry.target == where.target))
    if where.since:
        stmt = stmt.where(AuditEntry.at >= where.since)
    if where.until:
        stmt = stmt.where(AuditEntry.at < where.until)
    return stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def list_audit(*, session: Session, tenant_id: int, page: PageParams,
               where: AuditFilter | None = None) -> tuple[list[AuditEntry], int]:
    """One page of the company's audit log (newest first) and how many entries match."""
    return paginate(session, audit_query(tenant_id=tenant_id, where=where or AuditFilter()),
                    page)
