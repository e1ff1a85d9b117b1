"""Who is acting: a signed-in person or an API key of a company."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from access.roles import Permission, Role, may


@dataclass(frozen=True)
class Actor:
    kind: Literal["user", "api_key"]
    id: int
    name: str
    tenant_id: int
    role: Role
    staff_id: int | None = None

    def may(self, permission: Permission) -> bool:
        return may(self.role, permission)

    @property
    def label(self) -> str:
        """How the audit log names this actor."""
        return self.name if self.kind == "user" else f"API key {self.name}"
