"""A staff member's working days, as the phone shows them: the visits ahead, what each area
of a visit still needs, starting and finishing a visit.

"Today" is the company's calendar day in its time zone. A visit is finished when every area
it names has a 服务前 and a 服务后 photo; finishing builds the report, and sends it at once
unless the company reviews reports first (``Tenant.report_review``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from customers.models import Customer
from huifang.errors import Conflict, HuifangError, Invalid
from media.models import FAILED, PROCESSING, Media
from messaging.models import Message
from messaging.providers.base import Provider
from reports import sending as report_messages
from reports import service as reports
from reports.models import Report
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Visit
from visits.schemas import (
    AreaProgressRead,
    MissingPart,
    ScheduledVisitRead,
    StaffScheduleRead,
    VisitProgressRead,
)

DEFAULT_DAYS = 3  # today and the next two
MAX_DAYS = 14
REQUIRED: tuple[MissingPart, ...] = ("before", "after")


class NotYours(HuifangError):
    """A signed-in staff member asked for a visit that is not theirs."""

    status_code = 403


def own_visit(*, session: Session, tenant_id: int, staff_id: int, visit_id: int) -> Visit:
    """The visit, if it is this staff member's (403 otherwise; 404 when it does not exist in
    the company, as for anyone)."""
    visit = visits.get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    if visit.staff_id != staff_id:
        raise NotYours(
            "This visit is another staff member's; you can open and upload to your own visits only."
        )
    return visit


# --- progress ----------------------------------------------------------------------------

_Counts = dict[tuple[int, str | None, str, str, str], int]  # visit, area, phase, kind, status


def _counts(session: Session, visit_ids: Sequence[int]) -> _Counts:
    """Media per visit, area, phase, kind and status: one query for a whole list of visits."""
    if not visit_ids:
        return {}
    rows = session.execute(
        select(Media.visit_id, Media.area, Media.phase, Media.kind, Media.status, func.count())
        .where(Media.visit_id.in_(visit_ids))
        .group_by(Media.visit_id, Media.area, Media.phase, Media.kind, Media.status)
    )
    return {(v, a, p, k, s): n for v, a, p, k, s, n in rows}


def _status(visit: Visit) -> str:
    if visit.finished_at is not None:
        return "finished"
    return "started" if visit.started_at is not None else "scheduled"


def _progress(visit: Visit, counts: _Counts) -> VisitProgressRead:
    per_area: dict[str | None, Counter[str]] = {}
    staff_report = processing = 0
    for (visit_id, area, phase, kind, status), n in counts.items():
        if visit_id != visit.id:
            continue
        if status == PROCESSING:
            processing += n
        if phase == "staff_report":
            staff_report += n if status != FAILED else 0
            continue
        tally = per_area.setdefault(area, Counter())
        if status == FAILED:
            tally["failed"] += n
            continue
        if status == PROCESSING:
            tally["processing"] += n
        if kind == "clip":
            tally["clips"] += n
        elif phase in ("before", "after"):
            tally[phase] += n
    required: list[str | None] = list(visit.areas) or [None]
    names = required + sorted(
        (a for a in per_area if a not in required), key=lambda a: (a is None, a or "")
    )
    areas = []
    for name in names:
        tally = per_area.get(name, Counter())
        missing: list[MissingPart] = [p for p in REQUIRED if not tally[p]]
        if not tally["clips"]:
            missing.append("clip")
        areas.append(
            AreaProgressRead(
                area=name,
                required=name in required,
                before=tally["before"],
                after=tally["after"],
                clips=tally["clips"],
                processing=tally["processing"],
                failed=tally["failed"],
                missing=missing,
            )
        )
    complete = all(not (set(a.missing) & set(REQUIRED)) for a in areas if a.required)
    return VisitProgressRead(
        visit_id=visit.id,
        status=_status(visit),
        started_at=visit.started_at,
        finished_at=visit.finished_at,
        areas=areas,
        staff_report=staff_report,
        processing=processing,
        can_finish=complete and processing == 0 and visit.finished_at is None,
    )


def visit_progress(*, session: Session, tenant_id: int, visit_id: int) -> VisitProgressRead:
    """Per area of the visit, what was received and what is still missing."""
    visit = visits.get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    return _progress(visit, _counts(session, [visit.id]))


# --- the days ahead ------------------------------------------------------------------------


def schedule(
    *, session: Session, tenant: Tenant, staff_id: int, now: dt.datetime, days: int = DEFAULT_DAYS
) -> StaffScheduleRead:
    """The staff member's visits from the start of today (company time) for ``days`` days,
    earliest first, each with its customer and its progress."""
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"Ask for 1 to {MAX_DAYS} days of visits.")
    staff = visits.get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    zone = ZoneInfo(tenant.timezone)
    today = now.astimezone(zone).date()
    start = dt.datetime.combine(today, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=days), dt.time(), zone).astimezone(dt.UTC)
    rows = session.execute(
        select(Visit, Customer)
        .join(Customer, Customer.id == Visit.customer_id)
        .where(
            Visit.tenant_id == tenant.id,
            Visit.staff_id == staff.id,
            Visit.scheduled_at >= start,
            Visit.scheduled_at < end,
        )
        .order_by(Visit.scheduled_at, Visit.id)
    ).all()
    counts = _counts(session, [visit.id for visit, _ in rows])
    planned = []
    for visit, customer in rows:
        assert visit.scheduled_at is not None
        local = visit.scheduled_at.astimezone(zone)
        planned.append(
            ScheduledVisitRead(
                visit_id=visit.id,
                customer_id=customer.id,
                customer_name=customer.name,
                customer_region=customer.region,
                service_type=visit.service_type,
                service_label=visit.service_label,
                areas=list(visit.areas),
                scheduled_at=visit.scheduled_at,
                local_date=local.date(),
                local_time=local.strftime("%H:%M"),
                notes=visit.notes,
                progress=_progress(visit, counts),
            )
        )
    return StaffScheduleRead(
        staff_id=staff.id,
        staff_name=staff.name,
        timezone=tenant.timezone,
        today=today,
        days=days,
        visits=planned,
    )


# --- start and finish ----------------------------------------------------------------------


def start_visit(*, session: Session, tenant: Tenant, visit_id: int, now: dt.datetime) -> Visit:
    """The staff member is at the door: the visit starts (again is a no-op)."""
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    if visit.finished_at is not None:
        raise Conflict("This visit is already finished; its report was built when it was.")
    if visit.started_at is None:
        visit.started_at = now
        session.flush()
    return visit


def _what_is_missing(progress: VisitProgressRead) -> str:
    words = {"before": "a before photo", "after": "an after photo"}
    parts = []
    for area in progress.areas:
        lacking = [words[m] for m in area.missing if m in words]
        if area.required and lacking:
            parts.append(f"{area.area or 'the visit'} needs {' and '.join(lacking)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Finished:
    visit: Visit
    report: Report
    message: Message | None  # the report's message, when sent at once
    new_message: bool


def finish_visit(
    *, session: Session, tenant: Tenant, visit_id: int, now: dt.datetime, provider: Provider
) -> Finished:
    """Finish the visit once every area has its before and after photos, and build its
    report; send it at once unless the company reviews reports first.

    Refused (409) while an area lacks a photo or a photo is still processing (the report
    would go without it). A visit finished before is refused too: rebuilding and sending is
    the office's (``POST /v1/visits/{id}/report``).
    """
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    if visit.finished_at is not None:
        raise Conflict("This visit is already finished; the office can rebuild or send its report.")
    progress = _progress(visit, _counts(session, [visit.id]))
    missing = _what_is_missing(progress)
    if missing:
        raise Conflict(f"Not every area has its photos yet: {missing}.")
    visit.started_at = visit.started_at or now
    visit.finished_at = now
    session.flush()
    report, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id, now=now)
    message: Message | None = None
    new = False
    if not tenant.report_review:
        message, new = report_messages.send_report(
            session=session, tenant=tenant, visit_id=visit.id, provider=provider, now=now
        )
    return Finished(visit=visit, report=report, message=message, new_message=new)
