"""Routes of a staff member's day (``staff.day``): what the phone page will call.

API-key auth for now; the staff sign-in replaces it, and then a staff member reaches only
their own visits.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.fields import Id
from huifang.openapi import refusals
from huifang.worker import enqueue
from messaging import service as outbox
from messaging import tasks as messaging_tasks
from messaging.providers import get_provider
from reports import service as reports
from staff import day as staff_day
from visits.schemas import StaffScheduleRead, VisitFinishRead, VisitProgressRead, VisitRead

router = APIRouter(tags=["staff day"])


@router.get("/staff/{staff_id}/schedule", response_model=StaffScheduleRead)
def read_schedule(
    staff_id: Id,
    session: SessionDep,
    tenant: TenantDep,
    days: Annotated[int, Query(ge=1, le=staff_day.MAX_DAYS)] = (staff_day.DEFAULT_DAYS),
) -> StaffScheduleRead:
    """The staff member's visits from today (company time) for ``days`` days: customer,
    region, service, areas, time, and what each visit still needs."""
    return staff_day.schedule(
        session=session, tenant=tenant, staff_id=staff_id, now=utcnow(), days=days
    )


@router.get("/visits/{visit_id}/progress", response_model=VisitProgressRead)
def read_progress(visit_id: Id, session: SessionDep, tenant: TenantDep) -> VisitProgressRead:
    """Per area of the visit: photos and clips received, processing, refused, and missing."""
    return staff_day.visit_progress(session=session, tenant_id=tenant.id, visit_id=visit_id)


@router.post("/visits/{visit_id}/start", response_model=VisitRead, responses=refusals(409))
def start_visit(visit_id: Id, session: SessionDep, tenant: TenantDep) -> VisitRead:
    """The staff member starts the visit (a second start changes nothing)."""
    return VisitRead.model_validate(
        staff_day.start_visit(session=session, tenant=tenant, visit_id=visit_id, now=utcnow())
    )


@router.post(
    "/visits/{visit_id}/finish",
    response_model=VisitFinishRead,
    responses={
        409: {
            "description": "An area lacks its before or after photo, a "
            "photo is still processing, or the visit is "
            "already finished."
        }
    },
)
def finish_visit(visit_id: Id, session: SessionDep, tenant: TenantDep) -> VisitFinishRead:
    """Finish the visit and build its report (完成并生成报告); sent to the customer at once
    unless the company reviews reports first (``report_review``)."""
    now = utcnow()
    done = staff_day.finish_visit(
        session=session, tenant=tenant, visit_id=visit_id, now=now, provider=get_provider()
    )
    if done.message is not None and done.new_message:
        for queued in outbox.queue_now(session=session, message_ids=[done.message.id], now=now):
            enqueue(session, messaging_tasks.send_message, message_id=queued)
    return VisitFinishRead(
        visit=VisitRead.model_validate(done.visit),
        report_id=done.report.id,
        report_url=reports.page_url(done.report),
        review=done.message is None,
        message_id=done.message.id if done.message is not None else None,
    )
