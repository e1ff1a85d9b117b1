"""Staff and visits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from customers import service as customers
from customers.phones import normalize_phone
from huifang import storage
from huifang.dates import check_plausible
from huifang.db import as_utc, on_commit, utcnow
from huifang.errors import Invalid, NotFound
from huifang.pagination import PageParams, paginate
from tenancy.models import Tenant
from visits.models import Staff, Visit
from visits.schemas import StaffUpdate, VisitUpdate
from visits.service_types import normalize_service_type

MAX_AREA_LENGTH = 20  # an area is printed on the watermark; keep it a room name


def _clean_list(values: Sequence[str], *, what: str, max_length: int) -> list[str]:
    cleaned: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if not value:
            continue
        if len(value) > max_length:
            raise Invalid(f"The {what} {value[:20]!r} is longer than {max_length} characters.")
        cleaned.setdefault(value, None)
    return list(cleaned)


# --- staff -------------------------------------------------------------------------------


def create_staff(
    *,
    session: Session,
    tenant: Tenant,
    name: str,
    phone: str | None = None,
    certificates: Sequence[str] = (),
    years_experience: int | None = None,
    active: bool = True,
) -> Staff:
    """Add a staff member."""
    staff = Staff(
        tenant_id=tenant.id,
        name=name.strip(),
        phone=normalize_phone(phone, region=tenant.phone_region) if phone else None,
        certificates=_clean_list(certificates, what="certificate", max_length=100),
        years_experience=years_experience,
        active=active,
    )
    session.add(staff)
    session.flush()
    return staff


def get_staff(*, session: Session, tenant_id: int, staff_id: int) -> Staff:
    """The staff member, or NotFound when it does not exist in this tenant."""
    staff = session.get(Staff, staff_id)
    if staff is None or staff.tenant_id != tenant_id:
        raise NotFound(f"There is no staff member {staff_id} in this company.")
    return staff


def list_staff(
    *,
    session: Session,
    tenant_id: int,
    page: PageParams,
    active: bool | None = None,
    q: str | None = None,
) -> tuple[list[Staff], int]:
    stmt = select(Staff).where(Staff.tenant_id == tenant_id)
    if active is not None:
        stmt = stmt.where(Staff.active.is_(active))
    if q:
        stmt = stmt.where(Staff.name.ilike(f"%{q.strip()}%"))
    return paginate(session, stmt.order_by(Staff.id.desc()), page)


def update_staff(
    *,
    session: Session,
    tenant: Tenant,
    staff_id: int,
    changes: StaffUpdate,
) -> Staff:
    """Apply the fields set in ``changes``; phone and experience set to null are cleared."""
    staff = get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    given = changes.model_fields_set
    if "phone" in given:
        phone = changes.phone
        staff.phone = normalize_phone(phone, region=tenant.phone_region) if phone else None
    if changes.name is not None:
        staff.name = changes.name.strip()
    if changes.certificates is not None:
        staff.certificates = _clean_list(changes.certificates, what="certificate", max_length=100)
    if "years_experience" in given:
        staff.years_experience = changes.years_experience
    if changes.active is not None:
        staff.active = changes.active
    session.flush()
    return staff


def delete_staff(*, session: Session, tenant_id: int, staff_id: int) -> None:
    """Remove a staff member; their past visits stay, without a staff member."""
    staff = get_staff(session=session, tenant_id=tenant_id, staff_id=staff_id)
    photo = staff.photo_path
    session.delete(staff)
    session.flush()
    if photo:
        on_commit(session, lambda: storage.remove(photo))


# --- visits ------------------------------------------------------------------------------


def _check_times(scheduled_at: dt.datetime | None, finished_at: dt.datetime | None) -> None:
    now = utcnow()
    check_plausible(as_utc(scheduled_at), what="The visit's scheduled time", now=now)
    check_plausible(as_utc(finished_at), what="The visit's finish time", now=now)
    if scheduled_at and finished_at and finished_at < scheduled_at - dt.timedelta(days=1):
        raise Invalid("The visit cannot finish a day or more before it was scheduled to start.")


def create_visit(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    service_type: str,
    staff_id: int | None = None,
    areas: Sequence[str] = (),
    scheduled_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    amount_cents: int | None = None,
    notes: str | None = None,
) -> Visit:
    """Record a visit of a staff member to a customer."""
    customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    if staff_id is not None:
        staff = get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
        if not staff.active:
            raise Invalid(f"{staff.name} is no longer active; choose another staff member.")
    _check_times(scheduled_at, finished_at)
    visit = Visit(
        tenant_id=tenant.id,
        customer_id=customer_id,
        staff_id=staff_id,
        service_type=normalize_service_type(service_type),
        areas=_clean_list(areas, what="area", max_length=MAX_AREA_LENGTH),
        scheduled_at=as_utc(scheduled_at),
        finished_at=as_utc(finished_at),
        amount_cents=amount_cents,
        notes=notes,
    )
    session.add(visit)
    session.flush()
    return visit


def get_visit(*, session: Session, tenant_id: int, visit_id: int) -> Visit:
    """The visit, or NotFound when it does not exist in this tenant."""
    visit = session.get(Visit, visit_id)
    if visit is None or visit.tenant_id != tenant_id:
        raise NotFound(f"There is no visit {visit_id} in this company.")
    return visit


def list_visits(
    *,
    session: Session,
    tenant_id: int,
    page: PageParams,
    customer_id: int | None = None,
    staff_id: int | None = None,
    service_type: str | None = None,
    finished_after: dt.datetime | None = None,
    finished_before: dt.datetime | None = None,
) -> tuple[list[Visit], int]:
    """One page of visits, most recent first, and the total matching."""
    stmt = select(Visit).where(Visit.tenant_id == tenant_id)
    if customer_id is not None:
        stmt = stmt.where(Visit.customer_id == customer_id)
    if staff_id is not None:
        stmt = stmt.where(Visit.staff_id == staff_id)
    if service_type:
        stmt = stmt.where(Visit.service_type == normalize_service_type(service_type))
    if finished_after:
        stmt = stmt.where(Visit.finished_at >= finished_after)
    if finished_before:
        stmt = stmt.where(Visit.finished_at < finished_before)
    return paginate(session, stmt.order_by(Visit.id.desc()), page)


def update_visit(
    *,
    session: Session,
    tenant: Tenant,
    visit_id: int,
    changes: VisitUpdate,
) -> Visit:
    """Apply the fields set in ``changes``; service type and areas set to null keep their
    value, the others are cleared."""
    visit = get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    given = changes.model_fields_set
    if changes.staff_id is not None:
        get_staff(session=session, tenant_id=tenant.id, staff_id=changes.staff_id)
    if "staff_id" in given:
        visit.staff_id = changes.staff_id
    if changes.service_type is not None:
        visit.service_type = normalize_service_type(changes.service_type)
    if changes.areas is not None:
        visit.areas = _clean_list(changes.areas, what="area", max_length=MAX_AREA_LENGTH)
    for attr in ("scheduled_at", "finished_at"):
        if attr in given:
            setattr(visit, attr, as_utc(getattr(changes, attr)))
    for attr in ("amount_cents", "notes"):
        if attr in given:
            setattr(visit, attr, getattr(changes, attr))
    _check_times(visit.scheduled_at, visit.finished_at)
    session.flush()
    return visit


def delete_visit(*, session: Session, tenant_id: int, visit_id: int) -> None:
    session.delete(get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id))
    session.flush()
