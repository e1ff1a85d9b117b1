from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.fields import Id, Instant
from huifang.openapi import refusals
from huifang.pagination import PageParams, page_params
from privacy import files as privacy_files
from visits import service
from visits.schemas import (
    StaffCreate,
    StaffPage,
    StaffRead,
    StaffUpdate,
    VisitCreate,
    VisitPage,
    VisitRead,
    VisitUpdate,
)

PageDep = Annotated[PageParams, Depends(page_params)]
staff_router = APIRouter(prefix="/staff", tags=["staff"])
visit_router = APIRouter(prefix="/visits", tags=["visits"])


@staff_router.post("", response_model=StaffRead, status_code=201)
def create_staff(body: StaffCreate, session: SessionDep, tenant: TenantDep) -> StaffRead:
    return StaffRead.model_validate(
        service.create_staff(session=session, tenant=tenant, **body.model_dump())
    )


@staff_router.get("", response_model=StaffPage)
def list_staff(
    session: SessionDep,
    tenant: TenantDep,
    page: PageDep,
    active: bool | None = None,
    q: str | None = None,
) -> StaffPage:
    items, total = service.list_staff(
        session=session, tenant_id=tenant.id, page=page, active=active, q=q
    )
    return StaffPage(
        items=[StaffRead.model_validate(s) for s in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@staff_router.get("/{staff_id}", response_model=StaffRead)
def read_staff(staff_id: Id, session: SessionDep, tenant: TenantDep) -> StaffRead:
    return StaffRead.model_validate(
        service.get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    )


@staff_router.patch("/{staff_id}", response_model=StaffRead)
def update_staff(
    staff_id: Id,
    body: StaffUpdate,
    session: SessionDep,
    tenant: TenantDep,
) -> StaffRead:
    return StaffRead.model_validate(
        service.update_staff(
            session=session,
            tenant=tenant,
            staff_id=staff_id,
            changes=body,
        )
    )


@staff_router.delete("/{staff_id}", status_code=204)
def delete_staff(staff_id: Id, session: SessionDep, tenant: TenantDep) -> Response:
    service.delete_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    return Response(status_code=204)


@visit_router.post("", response_model=VisitRead, status_code=201, responses=refusals(404))
def create_visit(body: VisitCreate, session: SessionDep, tenant: TenantDep) -> VisitRead:
    return VisitRead.model_validate(
        service.create_visit(session=session, tenant=tenant, **body.model_dump())
    )


@visit_router.get("", response_model=VisitPage)
def list_visits(
    session: SessionDep,
    tenant: TenantDep,
    page: PageDep,
    customer_id: Id | None = None,
    staff_id: Id | None = None,
    service_type: str | None = None,
    finished_after: Instant | None = None,
    finished_before: Instant | None = None,
) -> VisitPage:
    items, total = service.list_visits(
        session=session,
        tenant_id=tenant.id,
        page=page,
        customer_id=customer_id,
        staff_id=staff_id,
        service_type=service_type,
        finished_after=finished_after,
        finished_before=finished_before,
    )
    return VisitPage(
        items=[VisitRead.model_validate(v) for v in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@visit_router.get("/{visit_id}", response_model=VisitRead)
def read_visit(visit_id: Id, session: SessionDep, tenant: TenantDep) -> VisitRead:
    return VisitRead.model_validate(
        service.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    )


@visit_router.patch("/{visit_id}", response_model=VisitRead)
def update_visit(
    visit_id: Id,
    body: VisitUpdate,
    session: SessionDep,
    tenant: TenantDep,
) -> VisitRead:
    return VisitRead.model_validate(
        service.update_visit(
            session=session,
            tenant=tenant,
            visit_id=visit_id,
            changes=body,
        )
    )


@visit_router.delete("/{visit_id}", status_code=204)
def delete_visit(visit_id: Id, session: SessionDep, tenant: TenantDep) -> Response:
    """Delete a visit with its media and report, and their files from storage."""
    privacy_files.delete_visit(
        session=session, tenant_id=tenant.id, visit_id=visit_id, now=utcnow()
    )
    return Response(status_code=204)
