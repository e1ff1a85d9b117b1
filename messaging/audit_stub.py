"""Stand-in for ``accounts.audit`` until the accounts package lands on main (issue 16).

Same signature as ``accounts.audit.record(session, actor, action, target, detail)``: the
services call it for every change a person makes. Until the audit table exists the entry is
logged and kept in ``session.info[ENTRIES]`` (tests read it there). At merge, replace the
imports of this module with ``accounts.audit`` / ``accounts.actors.Actor`` and delete it.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

ENTRIES = "huifang.audit_stub"
_log = structlog.get_logger("audit")


class Actor(Protocol):
    """Who made a change: a signed-in user or an API key (``accounts.actors.Actor``)."""

    kind: str
    id: int
    name: str
    tenant_id: int
    role: str


def record(session: Session, actor: Actor | None, action: str, target: str,
           detail: dict[str, Any]) -> None:
    """Note that ``actor`` did ``action`` to ``target`` (e.g. ``booking:12``)."""
    entry = {"actor": None if actor is None else f"{actor.kind}:{actor.id}",
             "action": action, "target": target, "detail": detail}
    session.info.setdefault(ENTRIES, []).append(entry)
    _log.info("audit", **entry)
