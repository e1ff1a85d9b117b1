"""Booking requests for staff: the list, and the answer the customer is told."""

from __future__ import annotations

from fastapi import APIRouter

from bookings import service as booking
from bookings.schemas import BookingAnswer, BookingRead
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.fields import Id
from huifang.openapi import refusals
from messaging.send_now import send_now

# Filed under "messages" and "bookings" in the API document, as before the move.
router = APIRouter(tags=["messages"])


@router.get("/bookings", response_model=list[BookingRead], tags=["bookings"])
def list_bookings(
    session: SessionDep, tenant: TenantDep, status: str | None = None
) -> list[BookingRead]:
    """Booking requests, newest first (``status=requested`` is what staff must answer)."""
    return [
        BookingRead.model_validate(b)
        for b in booking.list_bookings(session=session, tenant_id=tenant.id, status=status)
    ]


@router.patch(
    "/bookings/{booking_id}", response_model=BookingRead, tags=["bookings"], responses=refusals(409)
)
def answer_booking(
    booking_id: Id, body: BookingAnswer, session: SessionDep, tenant: TenantDep
) -> BookingRead:
    """Confirm or decline a request; the customer gets one message saying so."""
    now = utcnow()
    row, message_id = booking.answer(
        session=session, tenant=tenant, booking_id=booking_id, status=body.status, now=now
    )
    if message_id is not None:
        send_now(session=session, message_ids=[message_id], now=now)
    return BookingRead.model_validate(row)
