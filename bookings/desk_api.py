"""Routes of the office's booking desk (``bookings.desk``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from bookings import desk
from bookings.desk_schemas import (
    AnsweredBooking,
    BookingConfirm,
    BookingDecline,
    BookingPropose,
    DeskAnswer,
    DeskBooking,
    Opening,
    StaffSlot,
)
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep
from huifang.fields import Id, Instant
from huifang.openapi import refusals
from messaging.send_now import send_now

router = APIRouter(tags=["bookings"])


@router.get("/bookings/queue", response_model=list[DeskBooking])
def booking_queue(session: SessionDep, tenant: TenantDep) -> list[DeskBooking]:
    """Requests waiting for an answer, the longest-waiting first, with their clocks."""
    return desk.queue(session=session, tenant=tenant, now=utcnow())


@router.get("/bookings/answered", response_model=list[AnsweredBooking])
def answered_bookings(
    session: SessionDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> list[AnsweredBooking]:
    """The latest answered bookings: the visit made or the reason given, and whether the
    customer was told."""
    return desk.answered(session=session, tenant=tenant, limit=limit)


@router.get("/bookings/openings", response_model=list[Opening])
def booking_openings(
    session: SessionDep, tenant: TenantDep, days: Annotated[int, Query(ge=1, le=31)] = 7
) -> list[Opening]:
    """Working-hour slots of the coming days, each with the staff free for it."""
    return desk.openings(session=session, tenant=tenant, now=utcnow(), days=days)


@router.get("/bookings/{booking_id}/staff", response_model=list[StaffSlot])
def staff_for_booking(
    booking_id: Id, session: SessionDep, tenant: TenantDep, slot_start: Instant | None = None
) -> list[StaffSlot]:
    """Active staff, and whether each is free for a visit starting at ``slot_start`` (by
    default the time the customer asked for)."""
    return desk.staff_for(
        session=session, tenant=tenant, booking_id=booking_id, slot_start=slot_start, now=utcnow()
    )


@router.post("/bookings/{booking_id}/confirm", response_model=DeskAnswer, responses=refusals(409))
def confirm_booking(
    booking_id: Id, body: BookingConfirm, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> DeskAnswer:
    """Confirm with a time and a staff member: a visit is made, the customer is told."""
    now = utcnow()
    answer = desk.confirm(
        session=session,
        tenant=tenant,
        booking_id=booking_id,
        slot_start=body.slot_start,
        staff_id=body.staff_id,
        service_type=body.service_type,
        now=now,
        actor=actor,
    )
    if answer.message_id is not None:
        send_now(session=session, message_ids=[answer.message_id], now=now)
    return answer


@router.post("/bookings/{booking_id}/decline", response_model=DeskAnswer, responses=refusals(409))
def decline_booking(
    booking_id: Id, body: BookingDecline, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> DeskAnswer:
    """Decline with a reason; the customer is told in those words."""
    now = utcnow()
    answer = desk.decline(
        session=session,
        tenant=tenant,
        booking_id=booking_id,
        reason=body.reason,
        now=now,
        actor=actor,
    )
    if answer.message_id is not None:
        send_now(session=session, message_ids=[answer.message_id], now=now)
    return answer


@router.post("/bookings/{booking_id}/propose", response_model=DeskAnswer, responses=refusals(409))
def propose_booking(
    booking_id: Id, body: BookingPropose, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> DeskAnswer:
    """Offer another time with who would go; the customer accepts it on their booking page
    (the visit is then made), picks another time or cancels."""
    now = utcnow()
    answer = desk.propose(
        session=session,
        tenant=tenant,
        booking_id=booking_id,
        slot_start=body.slot_start,
        staff_id=body.staff_id,
        now=now,
        actor=actor,
    )
    if answer.message_id is not None:
        send_now(session=session, message_ids=[answer.message_id], now=now)
    return answer
