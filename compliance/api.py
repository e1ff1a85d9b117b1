from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Response

from access.roles import Permission
from compliance import service
from compliance.models import CompliancePolicy
from compliance.schemas import (
    ConsentCreate,
    ConsentRead,
    ConsentRevoke,
    OptOut,
    PolicyRead,
    PolicyUpdate,
)
from customers import service as customers
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep, key_may
from huifang.fields import Id
from huifang.openapi import refusals

router = APIRouter(tags=["compliance"])


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _policy_read(policy: CompliancePolicy) -> PolicyRead:
    return PolicyRead(
        marketing_cap=policy.marketing_cap, cap_window_days=policy.cap_window_days,
        window_start=_hhmm(policy.window_start_minute), window_end=_hhmm(policy.window_end_minute),
        opt_out_footer=policy.opt_out_footer, consent_retention_days=policy.consent_retention_days)


@router.post("/customers/{customer_id}/consents", response_model=ConsentRead, status_code=201,
             responses=refusals(409))
def record_consent(customer_id: Id, body: ConsentCreate, session: SessionDep,
                   tenant: TenantDep) -> ConsentRead:
    """Record the customer's consent to marketing messages, with its evidence."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id,
                                      customer_id=customer_id)
    now = utcnow()
    record = service.record_consent(session=session, tenant_id=tenant.id, customer=customer,
                                    source=body.source, evidence=body.evidence,
                                    granted_at=body.granted_at or now, now=now)
    return ConsentRead.model_validate(record)


@router.post("/customers/{customer_id}/consents/revoke", response_model=list[ConsentRead])
def revoke_consent(customer_id: Id, body: ConsentRevoke, session: SessionDep,
                   tenant: TenantDep) -> list[ConsentRead]:
    """Revoke marketing consent; the record is kept as evidence for the retention period."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id,
                                      customer_id=customer_id)
    service.revoke_consent(session=session, tenant_id=tenant.id, phone=customer.phone,
                           source=body.source, evidence=body.evidence, now=utcnow())
    return [ConsentRead.model_validate(r) for r in
            service.consents(session=session, tenant_id=tenant.id, phone=customer.phone)]


@router.get("/customers/{customer_id}/consents", response_model=list[ConsentRead])
def list_consents(customer_id: Id, session: SessionDep, tenant: TenantDep) -> list[ConsentRead]:
    customer = customers.get_customer(session=session, tenant_id=tenant.id,
                                      customer_id=customer_id)
    return [ConsentRead.model_validate(r) for r in
            service.consents(session=session, tenant_id=tenant.id, phone=customer.phone)]


@router.post("/customers/{customer_id}/opt-out", status_code=204)
def opt_out(customer_id: Id, body: OptOut, session: SessionDep, tenant: TenantDep) -> Response:
    """Stop every message to this customer (e.g. they called to ask); revokes consent."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id,
                                      customer_id=customer_id)
    service.opt_out(session=session, tenant=tenant, phone=customer.phone, reason="manual",
                    detail=body.detail, now=utcnow())
    return Response(status_code=204)


@router.post("/customers/{customer_id}/opt-in", status_code=204)
def opt_in(customer_id: Id, session: SessionDep, tenant: TenantDep) -> Response:
    """Lift an opt-out: service messages resume; marketing needs a new consent."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id,
                                      customer_id=customer_id)
    service.opt_in(session=session, tenant=tenant, phone=customer.phone, now=utcnow())
    return Response(status_code=204)


@router.get("/consents/export", response_class=Response, dependencies=[key_may(Permission.POLICY)],
            responses={200: {"content": {"text/csv": {}}}})
def export_consents(session: SessionDep, tenant: TenantDep) -> Response:
    """Every consent record of the company as CSV (for an audit or a regulator's request)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "customer_id", "phone", "source", "evidence", "granted_at",
                     "recorded_at", "revoked_at", "revoke_source", "revoke_evidence"])
    for r in service.consents(session=session, tenant_id=tenant.id):
        writer.writerow([r.id, r.customer_id or "", r.phone, r.source, r.evidence,
                         r.granted_at.isoformat(), r.recorded_at.isoformat(),
                         r.revoked_at.isoformat() if r.revoked_at else "",
                         r.revoke_source or "", r.revoke_evidence or ""])
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="consents.csv"'})


@router.get("/compliance/policy", response_model=PolicyRead)
def read_policy(session: SessionDep, tenant: TenantDep) -> PolicyRead:
    return _policy_read(service.policy_for(session=session, tenant_id=tenant.id))


@router.put("/compliance/policy", response_model=PolicyRead,
            dependencies=[key_may(Permission.POLICY)])
def update_policy(body: PolicyUpdate, session: SessionDep, tenant: TenantDep) -> PolicyRead:
    """Frequency cap, sending window (customer's local time), opt-out footer, retention."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("window_start", "window_end"):
        if changes.get(name):
            changes[f"{name}_minute"] = _minutes(changes.pop(name))
        else:
            changes.pop(name, None)
    return _policy_read(service.update_policy(session=session, tenant_id=tenant.id,
                                              changes=changes))
