"""Tenants and API keys."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import zoneinfo
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from huifang import rls
from huifang.db import utcnow
from huifang.errors import Invalid, NotFound
from huifang.settings import get_settings
from tenancy.languages import LANGUAGES
from tenancy.models import ApiKey, Tenant

if TYPE_CHECKING:  # the schemas validate with this module's checks
    from tenancy.schemas import TenantUpdate

KEY_PREFIX = "hf_"
_SIGNATURE_BRACKETS = re.compile(r"^[【\[]?(?P<inner>[^【】\[\]]*)[】\]]?$")


def normalize_signature(raw: str) -> str:
    """The signature's inner text, from '【洁家家政】', '[洁家家政]' or '洁家家政'."""
    match = _SIGNATURE_BRACKETS.match(raw.strip())
    inner = match.group("inner").strip() if match else ""
    if not match or not 2 <= len(inner) <= 16:
        raise Invalid(
            f"The SMS signature {raw!r} must be 2–16 characters, written like 【洁家家政】, "
            "with no other 【】 inside it."
        )
    return inner


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    """``name`` when it is an IANA time zone, otherwise a 422 that says what is expected.

    Looked up in the tz database's list of names rather than by opening the zone: ``ZoneInfo``
    takes the name as a file path, and a long or odd one fails with ``OSError``.
    """
    if name not in _zone_names():
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise Invalid(
            f"{shown!r} is not a time zone we know; use an IANA name such as Asia/Shanghai."
        )
    return name


def hook_key(tenant_id: int) -> str:
    """The unguessable part of a company's provider webhook paths (Aliyun pushes).

    ``{id}.{mac}``: the MAC is HMAC-SHA256 of the id under ``HUIFANG_SECRET_KEY``, so it is
    never stored, cannot be guessed from the id, and changing the secret key changes
    every company's paths (then re-enter them in the provider's console).
    """
    mac = hmac.new(
        get_settings().secret_key.encode(), f"hooks:{tenant_id}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    return f"{tenant_id}.{mac}"


def is_hook_key(key: str) -> bool:
    """Whether a webhook path's key is one we made (its MAC checks out); no database needed,
    so a wrong path is refused before its body is read."""
    tenant_id, _, _mac = key.partition(".")
    if not (tenant_id.isascii() and tenant_id.isdigit() and len(tenant_id) < 19):
        return False
    return hmac.compare_digest(hook_key(int(tenant_id)).encode(), key.encode("utf-8", "replace"))


def tenant_for_hook_key(*, session: Session, key: str) -> Tenant | None:
    """The company a webhook path belongs to, or None for a key that is not one of ours.
    Found, it names the company: the rest of the transaction sees its rows only."""
    if not is_hook_key(key):
        return None
    tenant = session.get(Tenant, int(key.partition(".")[0]))
    if tenant is not None:
        rls.scope_to_tenant(session, tenant.id)
    return tenant


def update_tenant(
    *, session: Session, tenant: Tenant, changes: TenantUpdate, actor: Actor | None = None
) -> Tenant:
    """Change a company's settings: the fields set in ``changes``; ``None`` leaves one as it
    is. What changed goes into the audit log under ``actor`` (None: the system)."""
    changed: dict[str, Any] = {}
    for attr, value in changes.model_dump(exclude_unset=True).items():
        if value is None:
            continue
        if attr == "timezone":
            value = check_timezone(str(value))
        elif attr == "language":
            value = check_language(str(value))
        elif attr == "name":
            value = str(value).strip()
        elif attr == "signature":
            value = normalize_signature(str(value))
        elif attr == "work_days":
            value = "".join(sorted(set(str(value))))
        elif attr in ("report_media_days", "report_media_after_view_days"):
            value = value or None  # 0: not set
        if getattr(tenant, attr) != value:
            changed[attr] = {"from": getattr(tenant, attr), "to": value}
        setattr(tenant, attr, value)
    if tenant.work_start_minute + tenant.slot_minutes > tenant.work_end_minute:
        raise Invalid(
            "The working day must start before it ends and hold at least one visit "
            "slot (e.g. 08:00 to 18:00 with 120-minute slots)."
        )
    if changed:
        audit.record(
            session, actor, "tenant.updated", f"tenant:{tenant.id}", changed, tenant_id=tenant.id
        )
    session.flush()
    return tenant


def create_tenant(
    *,
    session: Session,
    name: str,
    signature: str,
    timezone: str = "Asia/Shanghai",
    phone_region: str = "CN",
) -> Tenant:
    """Create a company."""
    region = phone_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise Invalid(f"{phone_region!r} is not a phone region; use a code such as CN or US.")
    tenant = Tenant(
        name=name.strip(),
        signature=normalize_signature(signature),
        timezone=check_timezone(timezone),
        phone_region=region,
    )
    session.add(tenant)
    session.flush()
    return tenant


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    *, session: Session, tenant: Tenant, name: str = "api", role: str = "owner"
) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: the row, and the key itself, which is never stored.
    ``role`` is "owner" or "office" (access.roles.KEY_ROLES)."""
    if role not in ("owner", "office"):
        raise Invalid("An API key's role is 'owner' or 'office'.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant.id,
        name=name,
        prefix=key[:10],
        key_hash=hash_key(key),
        created_at=utcnow(),
        role=role,
    )
    session.add(row)
    session.flush()
    return row, key


def find_api_key(*, session: Session, key: str) -> ApiKey | None:
    """The unrevoked key row for ``key``, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).one_or_none()


# A key's use is recorded at most once a minute: authentication must not turn every read
# into a write.
KEY_USE_RESOLUTION = dt.timedelta(minutes=1)


def key_use_due(api_key: ApiKey, *, now: dt.datetime) -> bool:
    """Whether the key's last use on record is older than the resolution we keep."""
    return api_key.last_used_at is None or now - api_key.last_used_at > KEY_USE_RESOLUTION


def record_key_use(*, session: Session, api_key_id: int, now: dt.datetime) -> None:
    """The key was used ``now`` (unless a use within the resolution is already on record)."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == api_key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - KEY_USE_RESOLUTION),
        )
        .values(last_used_at=now)
    )


def list_api_keys(*, session: Session, tenant_id: int) -> list[ApiKey]:
    """Every key of the tenant, newest first, revoked ones included."""
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.id.desc())
        )
    )


def get_api_key(*, session: Session, tenant_id: int, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"There is no API key {key_id} in this company.")
    return row


def revoke_api_key(*, session: Session, tenant_id: int, key_id: int) -> ApiKey:
    """Revoke a key; it stops working at once. Revoking twice is harmless."""
    row = get_api_key(session=session, tenant_id=tenant_id, key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def find_tenant(*, session: Session, ref: str | int | None) -> Tenant:
    """A tenant by id or exact name; the only tenant when ``ref`` is None and there is one."""
    if ref is None:
        tenants = list(session.scalars(select(Tenant).order_by(Tenant.id).limit(2)))
        if len(tenants) == 1:
            return tenants[0]
        if not tenants:
            raise NotFound("There is no company yet; create one with `huifang tenant create`.")
        raise Invalid("There are several companies; say which one with --tenant ID or NAME.")
    if isinstance(ref, int) or str(ref).isdigit():
        tenant = session.get(Tenant, int(ref))
    else:
        tenant = session.scalars(select(Tenant).where(Tenant.name == ref)).first()
    if tenant is None:
        raise NotFound(f"There is no company {ref!r}.")
    return tenant


def check_language(language: str) -> str:
    """``language`` when automatic messages can be written in it; otherwise a 422."""
    if language not in LANGUAGES:
        raise Invalid(
            f"{language!r} is not a language we write messages in; use one of "
            f"{', '.join(LANGUAGES)}."
        )
    return language
