"""Roles and what each may do. The console's pages and the API's routes ask for a
permission, never for a role by name, so that a role's reach is read here in one place."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    OFFICE = "office"
    STAFF = "staff"


class Permission(StrEnum):
    WORK = "work"  # customers, visits, reports, campaigns, inbox, bookings
    COMPLIANCE = "compliance"  # suppression list, consent ledger (reading)
    POLICY = "policy"  # caps, sending window, footer, retention; consent export; erasure
    SETTINGS = "settings"  # company profile, watermark, hours, keywords, provider
    USERS = "users"
    KEYS = "keys"
    OWN_VISITS = "own_visits"  # the staff phone page: one's own visits and uploads


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission) - {Permission.OWN_VISITS},
    Role.OFFICE: frozenset({Permission.WORK, Permission.COMPLIANCE}),
    Role.STAFF: frozenset({Permission.OWN_VISITS}),
}

# API keys act for programs of the office: they never take the staff role.
KEY_ROLES = (Role.OWNER, Role.OFFICE)


def may(role: Role | str, permission: Permission) -> bool:
    return permission in GRANTS[Role(role)]
