"""Routes of the compliance screen: bulk consent, the suppression list, the consent ledger
and the audit log. (Policy is ``/v1/compliance/policy`` in ``compliance.api``.)"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from access.roles import Permission
from compliance import audit_log, bulk, registry
from compliance.schemas import (
    AuditEntryRead,
    AuditPage,
    BulkConsentCreate,
    BulkConsentReport,
    BulkConsentRow,
    ConsentPage,
    ConsentRead,
    ConsentSource,
    SuppressionCreate,
    SuppressionPage,
    SuppressionRead,
)
from customers import import_jobs
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.errors import Invalid
from huifang.fields import Id, Instant
from huifang.openapi import refusals
from huifang.pagination import PageParams, page_params

router = APIRouter(tags=["compliance"])


@router.post("/consents/bulk", response_model=BulkConsentReport, responses=refusals(409))
def record_bulk_consent(
    body: BulkConsentCreate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> BulkConsentReport:
    """Record consent for many customers on one piece of evidence; an outcome per customer.

    Customers who opted out, or withdrew consent after the evidence was signed, are refused
    (their own later word stands); those already consenting are left as they are.
    """
    if (body.customer_ids is None) == (body.import_job_id is None):
        raise Invalid("Name the customers: give customer_ids or import_job_id (one of them).")
    ids = (
        body.customer_ids
        if body.customer_ids is not None
        else import_jobs.job_customer_ids(
            session=session, tenant_id=tenant.id, job_id=body.import_job_id or 0
        )
    )
    now = utcnow()
    outcomes = bulk.record_bulk_consent(
        session=session,
        tenant=tenant,
        customer_ids=ids,
        source=body.source,
        evidence=body.evidence,
        granted_at=body.granted_at or now,
        now=now,
        actor=actor,
    )
    return BulkConsentReport(
        **bulk.count(outcomes),
        rows=[
            BulkConsentRow(
                customer_id=o.customer_id,
                outcome=o.outcome,
                consent_id=o.consent_id,
                reason=o.reason,
            )
            for o in outcomes
        ],
    )


def ledger_filter(
    phone: Annotated[str | None, Query(max_length=40, description="A whole number.")] = None,
    customer_id: Id | None = None,
    source: ConsentSource | None = None,
    state: Literal["active", "revoked", "all"] = "all",
    evidence: Annotated[
        str | None, Query(max_length=200, description="Part of the evidence text.")
    ] = None,
    granted_from: Annotated[Instant | None, Query(description="Granted at or after.")] = None,
    granted_until: Annotated[Instant | None, Query(description="Granted before.")] = None,
) -> registry.LedgerFilter:
    return registry.LedgerFilter(
        phone=phone,
        customer_id=customer_id,
        source=source,
        state=state,
        evidence=evidence,
        granted_from=granted_from,
        granted_until=granted_until,
    )


LedgerFilterDep = Annotated[registry.LedgerFilter, Depends(ledger_filter)]


@router.get("/consents", response_model=ConsentPage, dependencies=[key_may(Permission.COMPLIANCE)])
def list_consents(
    session: SessionDep,
    tenant: TenantDep,
    where: LedgerFilterDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> ConsentPage:
    """The consent ledger, newest first, with its evidence (revoked records included)."""
    records, total = registry.list_ledger(session=session, tenant=tenant, page=page, where=where)
    return ConsentPage(
        items=[ConsentRead.model_validate(r) for r in records],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


def _suppression_read(row: registry.SuppressionRow) -> SuppressionRead:
    s = row.suppression
    return SuppressionRead(
        id=s.id,
        phone=s.phone,
        reason=s.reason,
        detail=s.detail,
        created_at=s.created_at,
        lifted_at=s.lifted_at,
        customer_id=row.customer_id,
        customer_name=row.customer_name,
    )


@router.get(
    "/suppressions", response_model=SuppressionPage, dependencies=[key_may(Permission.COMPLIANCE)]
)
def list_suppressions(
    session: SessionDep,
    tenant: TenantDep,
    page: Annotated[PageParams, Depends(page_params)],
    phone: Annotated[str | None, Query(max_length=40, description="A whole number.")] = None,
    reason: Literal["reply_opt_out", "provider_opt_out", "manual", "unreachable"] | None = None,
    state: Literal["active", "lifted", "all"] = "active",
) -> SuppressionPage:
    """Numbers that get nothing more from the company (active ones unless asked)."""
    rows, total = registry.list_suppressions(
        session=session, tenant=tenant, page=page, phone=phone, reason=reason, state=state
    )
    return SuppressionPage(
        items=[_suppression_read(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/suppressions", response_model=SuppressionRead, status_code=201, responses=refusals(409)
)
def add_suppression(
    body: SuppressionCreate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> SuppressionRead:
    """Put a number on the list (e.g. the person called to ask); revokes its consent."""
    row = registry.add_suppression(
        session=session,
        tenant=tenant,
        phone=body.phone,
        detail=body.detail,
        now=utcnow(),
        actor=actor,
    )
    rows, _ = registry.list_suppressions(
        session=session, tenant=tenant, page=PageParams(limit=1), phone=row.phone
    )
    return _suppression_read(rows[0])


@router.delete(
    "/suppressions/{suppression_id}", response_model=SuppressionRead, responses=refusals(409)
)
def lift_suppression(
    suppression_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> SuppressionRead:
    """Take a number off the list: service messages resume; marketing needs new consent."""
    row = registry.lift_suppression(
        session=session, tenant=tenant, suppression_id=suppression_id, now=utcnow(), actor=actor
    )
    return _suppression_read(registry.SuppressionRow(row, None, None))


@router.get("/audit-log", response_model=AuditPage, dependencies=[key_may(Permission.POLICY)])
def list_audit(
    session: SessionDep,
    tenant: TenantDep,
    page: Annotated[PageParams, Depends(page_params)],
    actor: Annotated[
        str | None,
        Query(
            max_length=100,
            description=("Part of the name of who made the change, or user:ID / api_key:ID."),
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            description=(
                "An action (consent.bulk_recorded), or a prefix ending in a dot (consent.)."
            ),
        ),
    ] = None,
    target: Annotated[
        str | None,
        Query(
            max_length=200,
            description=("What was changed (customer:12), or a kind of thing (customer)."),
        ),
    ] = None,
    since: Annotated[Instant | None, Query(description="At or after.")] = None,
    until: Annotated[Instant | None, Query(description="Before.")] = None,
) -> AuditPage:
    """Who changed what and when, newest first."""
    entries, total = audit_log.list_audit(
        session=session,
        tenant_id=tenant.id,
        page=page,
        where=audit_log.AuditFilter(
            actor=actor, action=action, target=target, since=since, until=until
        ),
    )
    return AuditPage(
        items=[AuditEntryRead.model_validate(e) for e in entries],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
