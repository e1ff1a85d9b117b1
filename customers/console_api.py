"""Routes of the customers screen: a customer's timeline and background imports.

(The list with its badges and filters is ``GET /v1/customers`` in ``customers.api``.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, UploadFile

from customers import import_jobs
from customers.models import ImportJob
from customers.schemas import (
    ImportJobPage,
    ImportJobRead,
    ImportRow,
    ImportRowPage,
    TimelineEntryRead,
    TimelinePage,
)
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep
from huifang.fields import Id
from huifang.openapi import refusals
from huifang.pagination import PageParams, page_params
from huifang.settings import get_settings
from office import customer_timeline as timeline

router = APIRouter(tags=["customers"])


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage)
def customer_timeline(
    customer_id: Id,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_LIMIT)] = timeline.DEFAULT_LIMIT,
    before: Annotated[
        str | None,
        Query(
            max_length=100,
            description=("The `cursor` of the last entry of the page before (or `next_before`)."),
        ),
    ] = None,
) -> TimelinePage:
    """The customer's visits, reports, bookings, messages and replies, newest first."""
    entries, next_before = timeline.timeline(
        session=session, tenant_id=tenant.id, customer_id=customer_id, limit=limit, before=before
    )
    return TimelinePage(
        items=[
            TimelineEntryRead(kind=e.kind, id=e.id, at=e.at, cursor=e.cursor, data=e.data)
            for e in entries
        ],
        next_before=next_before,
    )


def job_read(job: ImportJob) -> ImportJobRead:
    read = ImportJobRead.model_validate(job)
    read.stalled = import_jobs.stalled(job, now=utcnow())
    return read


@router.post(
    "/import-jobs", response_model=ImportJobRead, status_code=202, responses=refusals(413, 415)
)
def start_import(
    file: UploadFile, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ImportJobRead:
    """Import a CSV or XLSX list in the background; poll the job for progress and report."""
    limit = get_settings().import_max_bytes
    data = file.file.read(limit + 1)
    job = import_jobs.create_job(
        session=session, tenant=tenant, data=data, filename=file.filename, actor=actor
    )
    return job_read(job)


@router.get("/import-jobs", response_model=ImportJobPage)
def list_imports(
    session: SessionDep, tenant: TenantDep, page: Annotated[PageParams, Depends(page_params)]
) -> ImportJobPage:
    """The company's imports, newest first."""
    jobs, total = import_jobs.list_jobs(session=session, tenant_id=tenant.id, page=page)
    return ImportJobPage(
        items=[job_read(j) for j in jobs], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/import-jobs/{job_id}", response_model=ImportJobRead)
def read_import(job_id: Id, session: SessionDep, tenant: TenantDep) -> ImportJobRead:
    """An import's progress (rows_done of rows_total) and counts."""
    return job_read(import_jobs.get_job(session=session, tenant_id=tenant.id, job_id=job_id))


@router.get("/import-jobs/{job_id}/rows", response_model=ImportRowPage)
def import_rows(
    job_id: Id,
    session: SessionDep,
    tenant: TenantDep,
    page: Annotated[PageParams, Depends(page_params)],
    status: Literal["imported", "updated", "unchanged", "rejected"] | None = None,
) -> ImportRowPage:
    """The per-row report of an import, in file order (e.g. only the rejected rows)."""
    rows, total = import_jobs.job_rows(
        session=session, tenant_id=tenant.id, job_id=job_id, page=page, status=status
    )
    return ImportRowPage(
        items=[
            ImportRow(
                row=r.line,
                status=r.status,
                customer_id=r.customer_id,
                phone=r.phone,
                reason=r.reason,
            )
            for r in rows
        ],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
