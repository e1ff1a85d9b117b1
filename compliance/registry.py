"""The compliance screen's lists: the suppression list (read, add, lift) and the consent
ledger (read with filters, export), each a page at a time.

Adding and lifting go through ``compliance.service.opt_out`` / the same lifting as
``opt_in``, so the gate, the consent ledger and a customer's page agree with this list.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from compliance import audit_log
from compliance import service as compliance
from compliance.models import CONSENT_SOURCES, ConsentRecord, Suppression
from customers import service as customers
from customers.models import Customer
from customers.phones import normalize_phone
from huifang.errors import Conflict, Invalid, NotFound
from huifang.pagination import PageParams, paginate
from tenancy.models import Tenant

SuppressionState = Literal["active", "lifted", "all"]
ConsentState = Literal["active", "revoked", "all"]
SUPPRESSION_REASONS = ("reply_opt_out", "provider_opt_out", "manual", "unreachable")


def _phone_filter(phone: str | None, tenant: Tenant) -> str | None:
    """A whole number in any spelling, as stored (E.164); None when not asked."""
    if phone is None or not phone.strip():
        return None
    return normalize_phone(phone, region=tenant.phone_region)


# --- suppressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SuppressionRow:
    suppression: Suppression
    customer_id: int | None
    customer_name: str | None


def suppression_query(
    *,
    tenant: Tenant,
    phone: str | None = None,
    reason: str | None = None,
    state: SuppressionState = "active",
) -> Select[Any]:
    """The company's suppressions under its signature, newest first."""
    stmt: Select[Any] = cast(
        Select[Any],
        select(Suppression, Customer.id, Customer.name)
        .outerjoin(
            Customer,
            (Customer.tenant_id == Suppression.tenant_id) & (Customer.phone == Suppression.phone),
        )
        .where(Suppression.tenant_id == tenant.id, Suppression.signature == tenant.signature),
    )
    number = _phone_filter(phone, tenant)
    if number:
        stmt = stmt.where(Suppression.phone == number)
    if reason is not None:
        if reason not in SUPPRESSION_REASONS:
            raise Invalid(f"reason must be one of {', '.join(SUPPRESSION_REASONS)}.")
        stmt = stmt.where(Suppression.reason == reason)
    if state == "active":
        stmt = stmt.where(Suppression.lifted_at.is_(None))
    elif state == "lifted":
        stmt = stmt.where(Suppression.lifted_at.is_not(None))
    return stmt.order_by(Suppression.id.desc())


def list_suppressions(
    *,
    session: Session,
    tenant: Tenant,
    page: PageParams,
    phone: str | None = None,
    reason: str | None = None,
    state: SuppressionState = "active",
) -> tuple[list[SuppressionRow], int]:
    """One page of the suppression list (with the customer the number belongs to, if any)."""
    stmt = suppression_query(tenant=tenant, phone=phone, reason=reason, state=state)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = session.execute(stmt.limit(page.limit).offset(page.offset))
    return [SuppressionRow(s, cid, name) for s, cid, name in rows], int(total or 0)


def add_suppression(
    *,
    session: Session,
    tenant: Tenant,
    phone: str,
    detail: str | None,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> Suppression:
    """Stop every message to a number (a customer's or not), as a manual opt-out.

    Revokes the number's marketing consent, as any opt-out does. A number already on the
    list is a 409 naming since when.
    """
    number = normalize_phone(phone, region=tenant.phone_region)
    suppression_id, created = compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=number,
        reason="manual",
        detail=detail,
        now=now,
        actor=actor,
    )
    row = session.get(Suppression, suppression_id)
    assert row is not None
    if not created:
        raise Conflict(
            f"{number} is already on the suppression list since "
            f"{row.created_at:%Y-%m-%d} ({row.reason})."
        )
    return row


def get_suppression(*, session: Session, tenant: Tenant, suppression_id: int) -> Suppression:
    row = session.get(Suppression, suppression_id)
    if row is None or row.tenant_id != tenant.id or row.signature != tenant.signature:
        raise NotFound(f"There is no suppression {suppression_id} in this company.")
    return row


def lift_suppression(
    *,
    session: Session,
    tenant: Tenant,
    suppression_id: int,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> Suppression:
    """Take a number off the list: service messages resume; marketing needs new consent.

    Lifting is for a customer who asked to hear from the company again (or a number that
    works again); the row stays, with when it was lifted.
    """
    row = get_suppression(session=session, tenant=tenant, suppression_id=suppression_id)
    if row.lifted_at is not None:
        raise Conflict(f"This suppression was already lifted on {row.lifted_at:%Y-%m-%d}.")
    row.lifted_at = now
    session.flush()
    audit_log.record(
        session,
        actor,
        "suppression.lifted",
        f"phone:{row.phone}",
        {"suppression_id": row.id, "reason": row.reason},
    )
    return row


# --- one customer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerCompliance:
    """What the customer page shows: can they be reached and why not, their consents with
    the evidence (newest first, revoked ones kept), and the opt-out in force, if any."""

    reach: dict[str, dict[str, object]]
    consents: list[ConsentRecord]
    suppression: Suppression | None


def customer_compliance(
    *, session: Session, tenant: Tenant, customer_id: int, now: dt.datetime
) -> CustomerCompliance:
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    records = compliance.consents(session=session, tenant_id=tenant.id, phone=customer.phone)
    return CustomerCompliance(
        reach=compliance.explain(session=session, tenant=tenant, customer=customer, now=now),
        consents=records[::-1],
        suppression=compliance.active_suppression(
            session=session, tenant=tenant, phone=customer.phone
        ),
    )


def opt_out_customer(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    detail: str | None,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> bool:
    """The office records that the customer asked to stop (a call, a visit): every message
    stops and marketing consent is revoked. True when it is new."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    _, created = compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=customer.phone,
        reason="manual",
        detail=detail,
        now=now,
        actor=actor,
    )
    return created


def opt_in_customer(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> bool:
    """The customer asked to hear from the company again: the opt-out is lifted (service
    messages resume); marketing needs a new consent. False when there was none."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return compliance.opt_in(
        session=session, tenant=tenant, phone=customer.phone, now=now, actor=actor
    )


# --- the consent ledger ---------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerFilter:
    """What the consent ledger narrows to; every field optional."""

    phone: str | None = None
    customer_id: int | None = None
    source: str | None = None
    state: ConsentState = "all"
    evidence: str | None = None  # part of the evidence text ("合同 2026-118")
    granted_from: dt.datetime | None = None  # granted at or after
    granted_until: dt.datetime | None = None  # granted before


def ledger_query(*, tenant: Tenant, where: LedgerFilter) -> Select[Any]:
    """The company's consent records matching ``where``, newest first."""
    stmt = select(ConsentRecord).where(ConsentRecord.tenant_id == tenant.id)
    number = _phone_filter(where.phone, tenant)
    if number:
        stmt = stmt.where(ConsentRecord.phone == number)
    if where.customer_id is not None:
        stmt = stmt.where(ConsentRecord.customer_id == where.customer_id)
    if where.source is not None:
        if where.source not in CONSENT_SOURCES:
            raise Invalid(f"source must be one of {', '.join(CONSENT_SOURCES)}.")
        stmt = stmt.where(ConsentRecord.source == where.source)
    if where.state == "active":
        stmt = stmt.where(ConsentRecord.revoked_at.is_(None))
    elif where.state == "revoked":
        stmt = stmt.where(ConsentRecord.revoked_at.is_not(None))
    if where.evidence and where.evidence.strip():
        stmt = stmt.where(ConsentRecord.evidence.contains(where.evidence.strip(), autoescape=True))
    if where.granted_from and where.granted_until and where.granted_from >= where.granted_until:
        raise Invalid("The start of the period must be before its end.")
    if where.granted_from:
        stmt = stmt.where(ConsentRecord.granted_at >= where.granted_from)
    if where.granted_until:
        stmt = stmt.where(ConsentRecord.granted_at < where.granted_until)
    return stmt.order_by(ConsentRecord.id.desc())


def list_ledger(
    *, session: Session, tenant: Tenant, page: PageParams, where: LedgerFilter | None = None
) -> tuple[list[ConsentRecord], int]:
    """One page of the consent ledger and how many records match."""
    return paginate(session, ledger_query(tenant=tenant, where=where or LedgerFilter()), page)


LEDGER_COLUMNS = (
    "id",
    "customer_id",
    "phone",
    "source",
    "evidence",
    "granted_at",
    "recorded_at",
    "revoked_at",
    "revoke_source",
    "revoke_evidence",
)


def export_ledger(*, session: Session, tenant: Tenant, where: LedgerFilter | None = None) -> str:
    """The matching records as CSV (with a BOM, for Excel), oldest first."""
    stmt = (
        ledger_query(tenant=tenant, where=where or LedgerFilter())
        .order_by(None)
        .order_by(ConsentRecord.id)
    )
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(LEDGER_COLUMNS)
    for r in session.scalars(stmt.execution_options(yield_per=1000)):
        writer.writerow(
            [
                r.id,
                r.customer_id or "",
                r.phone,
                r.source,
                r.evidence,
                r.granted_at.isoformat(),
                r.recorded_at.isoformat(),
                r.revoked_at.isoformat() if r.revoked_at else "",
                r.revoke_source or "",
                r.revoke_evidence or "",
            ]
        )
    return out.getvalue()
