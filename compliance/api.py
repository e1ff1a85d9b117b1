from __future__ import annotations

from fastapi import APIRouter, Response

from access.roles import Permission
from compliance import registry, service
from compliance.console_api import LedgerFilterDep
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
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.fields import Id
from huifang.openapi import refusals

router = APIRouter(tags=["compliance"])


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _policy_read(policy: CompliancePolicy) -> PolicyRead:
    return PolicyRead(
        marketing_cap=policy.marketing_cap,
        cap_window_days=policy.cap_window_days,
        window_start=_hhmm(policy.window_start_minute),
        window_end=_hhmm(policy.window_end_minute),
        opt_out_footer=policy.opt_out_footer,
        consent_retention_days=policy.consent_retention_days,
    )


@router.post(
    "/customers/{customer_id}/consents",
    response_model=ConsentRead,
    status_code=201,
    responses=refusals(409),
)
def record_consent(
    customer_id: Id, body: ConsentCreate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ConsentRead:
    """Record the customer's consent to marketing messages, with its evidence."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    now = utcnow()
    record = service.record_consent(
        session=session,
        tenant_id=tenant.id,
        customer=customer,
        source=body.source,
        evidence=body.evidence,
        granted_at=body.granted_at or now,
        now=now,
        actor=actor,
    )
    return ConsentRead.model_validate(record)


@router.post("/customers/{customer_id}/consents/revoke", response_model=list[ConsentRead])
def revoke_consent(
    customer_id: Id, body: ConsentRevoke, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> list[ConsentRead]:
    """Revoke marketing consent; the record is kept as evidence for the retention period."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    service.revoke_consent(
        session=session,
        tenant_id=tenant.id,
        phone=customer.phone,
        source=body.source,
        evidence=body.evidence,
        now=utcnow(),
        actor=actor,
    )
    return [
        ConsentRead.model_validate(r)
        for r in service.consents(session=session, tenant_id=tenant.id, phone=customer.phone)
    ]


@router.get("/customers/{customer_id}/consents", response_model=list[ConsentRead])
def list_consents(customer_id: Id, session: SessionDep, tenant: TenantDep) -> list[ConsentRead]:
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return [
        ConsentRead.model_validate(r)
        for r in service.consents(session=session, tenant_id=tenant.id, phone=customer.phone)
    ]


@router.post("/customers/{customer_id}/opt-out", status_code=204)
def opt_out(
    customer_id: Id, body: OptOut, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> Response:
    """Stop every message to this customer (e.g. they called to ask); revokes consent."""
    registry.opt_out_customer(
        session=session,
        tenant=tenant,
        customer_id=customer_id,
        detail=body.detail,
        now=utcnow(),
        actor=actor,
    )
    return Response(status_code=204)


@router.post("/customers/{customer_id}/opt-in", status_code=204)
def opt_in(customer_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep) -> Response:
    """Lift an opt-out: service messages resume; marketing needs a new consent."""
    registry.opt_in_customer(
        session=session, tenant=tenant, customer_id=customer_id, now=utcnow(), actor=actor
    )
    return Response(status_code=204)


@router.get(
    "/consents/export",
    response_class=Response,
    dependencies=[key_may(Permission.POLICY)],
    responses={200: {"content": {"text/csv": {}}}},
)
def export_consents(session: SessionDep, tenant: TenantDep, where: LedgerFilterDep) -> Response:
    """The company's consent records as CSV, oldest first (for an audit or a regulator's
    request); every record unless filtered as ``GET /v1/consents`` is."""
    text_ = registry.export_ledger(session=session, tenant=tenant, where=where)
    return Response(
        text_,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="consents.csv"'},
    )


@router.get("/compliance/policy", response_model=PolicyRead)
def read_policy(session: SessionDep, tenant: TenantDep) -> PolicyRead:
    return _policy_read(service.policy_for(session=session, tenant_id=tenant.id))


@router.put(
    "/compliance/policy", response_model=PolicyRead, dependencies=[key_may(Permission.POLICY)]
)
def update_policy(
    body: PolicyUpdate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> PolicyRead:
    """Frequency cap, sending window (customer's local time), opt-out footer, retention."""
    return _policy_read(
        service.update_policy(session=session, tenant_id=tenant.id, changes=body, actor=actor)
    )
