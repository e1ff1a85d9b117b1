from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from access.roles import Permission
from compliance import capture, registry, service
from compliance.console_api import LedgerFilterDep
from compliance.models import CompliancePolicy
from compliance.schemas import (
    CaptureConsentCreate,
    CaptureConsentRead,
    CaptureConsentWithdraw,
    ConsentCreate,
    ConsentRead,
    ConsentRevoke,
    OptOut,
    PolicyRead,
    PolicyUpdate,
)
from customers import service as customers
from huifang import storage
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.errors import Invalid, NotFound
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
        capture_consent_retention_days=policy.capture_consent_retention_days,
        original_media_days=policy.original_media_days,
        message_text_days=policy.message_text_days,
        reply_days=policy.reply_days,
        decision_log_days=policy.decision_log_days,
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


# --- capture consent (permission to photograph and film the home) ----------------------------


def _signature_bytes(encoded: str | None) -> bytes | None:
    if encoded is None:
        return None
    data = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("signature_png must be a base64-encoded PNG image.") from None


@router.post(
    "/customers/{customer_id}/capture-consents",
    response_model=CaptureConsentRead,
    status_code=201,
    responses=refusals(409),
)
def record_capture_consent(
    customer_id: Id,
    body: CaptureConsentCreate,
    session: SessionDep,
    tenant: TenantDep,
    actor: KeyActorDep,
) -> CaptureConsentRead:
    """Record the customer's permission to photograph / film the home (and use in marketing)."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    record = capture.record_capture_consent(
        session=session,
        tenant=tenant,
        customer=customer,
        source=body.source,
        evidence=body.evidence,
        scopes=list(body.scopes),
        granted_at=body.granted_at,
        signature_png=_signature_bytes(body.signature_png),
        now=utcnow(),
        actor=actor,
    )
    return CaptureConsentRead.of(record)


@router.get("/customers/{customer_id}/capture-consents", response_model=list[CaptureConsentRead])
def list_capture_consents(
    customer_id: Id, session: SessionDep, tenant: TenantDep
) -> list[CaptureConsentRead]:
    customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return [
        CaptureConsentRead.of(r)
        for r in capture.capture_consents(
            session=session, tenant_id=tenant.id, customer_id=customer_id
        )
    ]


@router.post(
    "/customers/{customer_id}/capture-consents/withdraw",
    response_model=list[CaptureConsentRead],
)
def withdraw_capture_consent(
    customer_id: Id,
    body: CaptureConsentWithdraw,
    session: SessionDep,
    tenant: TenantDep,
    actor: KeyActorDep,
) -> list[CaptureConsentRead]:
    """Withdraw the permission: new media of this customer's visits are refused from now."""
    customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    capture.withdraw_capture_consent(
        session=session,
        tenant_id=tenant.id,
        customer_id=customer_id,
        evidence=body.evidence,
        now=utcnow(),
        actor=actor,
    )
    return [
        CaptureConsentRead.of(r)
        for r in capture.capture_consents(
            session=session, tenant_id=tenant.id, customer_id=customer_id
        )
    ]


@router.get(
    "/customers/{customer_id}/capture-consents/{consent_id}/signature",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
)
def capture_signature(
    customer_id: Id, consent_id: Id, session: SessionDep, tenant: TenantDep
) -> FileResponse:
    """The signature the customer drew, kept as evidence (for the company only)."""
    customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    record = next(
        (
            r
            for r in capture.capture_consents(
                session=session, tenant_id=tenant.id, customer_id=customer_id
            )
            if r.id == consent_id
        ),
        None,
    )
    if record is None or record.signature_path is None:
        raise NotFound("This capture consent has no signature image.")
    return FileResponse(
        storage.resolve(record.signature_path),
        media_type="image/png",
        headers={"Cache-Control": "private, no-store"},
    )
