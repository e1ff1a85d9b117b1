"""The audit log: every change a person makes, with who made it.

Services call ``record`` in the transaction of the change itself, so a change and its entry
are committed together or not at all. ``actor`` is None for the system's own work (the
scheduler, a customer's reply), which the log names as such.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from access.actors import Actor
from access.models import AuditEntry
from huifang.db import utcnow

SYSTEM = "系统"


def record(
    session: Session,
    actor: Actor | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    *,
    tenant_id: int | None = None,
) -> AuditEntry:
    """Add one entry: ``action`` is a dotted name (``consent.recorded``), ``target`` what it
    touched (``customer:12``)."""
    if actor is None and tenant_id is None:
        raise ValueError("an entry without an actor needs the tenant_id")
    entry = AuditEntry(
        tenant_id=actor.tenant_id if actor else tenant_id,
        at=utcnow(),
        actor_kind=actor.kind if actor else "system",
        actor_id=actor.id if actor else None,
        actor_name=(actor.label if actor else SYSTEM)[:100],
        action=action[:64],
        target=target[:100],
        detail=detail or {},
    )
    session.add(entry)
    return entry
