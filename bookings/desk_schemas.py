"""Schemas of the office's booking desk: the queue, who is free, confirm and decline."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from bookings.schemas import BookingRead
from huifang.fields import Id, Instant
from messaging.thread_schemas import ResponseClock


class DeskBooking(BaseModel):
    """A booking request waiting for the office, with its customer and response clock."""

    booking: BookingRead
    customer_name: str
    phone: str
    service_label: str
    clock: ResponseClock


class StaffSlot(BaseModel):
    """Whether a staff member can take a visit at a time, and if not, what is in the way."""

    staff_id: int
    name: str
    free: bool
    busy: str | None = Field(default=None, description="What is in the way, in Chinese.")


class Opening(BaseModel):
    """A working-hour slot and the staff free for all of it."""

    start: dt.datetime
    end: dt.datetime
    free: list[StaffSlot]


class BookingConfirm(BaseModel):
    slot_start: Instant = Field(description="When the visit starts (within working hours).")
    staff_id: Id = Field(description="Who goes; they must be free then.")
    service_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Needed when the request did not say which service (a '1' reply).",
    )


class BookingDecline(BaseModel):
    reason: str = Field(
        min_length=1,
        max_length=200,
        examples=["师傅这周已排满"],
        description="Why; the customer is told in these words.",
    )


class DeskAnswer(BaseModel):
    """The booking as answered, and whether the customer is being told."""

    booking: BookingRead
    message_id: int | None = Field(
        description="The message to the customer (None: the same answer again, nothing new sent)."
    )
    customer_told: bool
    notice: str = Field(description="What happens next, in Chinese.")


class AnsweredBooking(BaseModel):
    """A booking the office answered: the visit made for it or the reason given, and what
    became of the message that told the customer."""

    booking_id: int
    customer_id: int
    customer_name: str
    status: str = Field(description="confirmed | proposed | declined")
    service_label: str
    slot_start: dt.datetime | None
    slot_end: dt.datetime | None
    staff_id: int | None
    staff_name: str | None
    visit_id: int | None
    decline_reason: str | None
    answered_at: dt.datetime
    message_id: int | None = Field(
        description="The message to the customer (None: none was sent; phone them)."
    )
    message_status: str | None
    customer_told: bool = Field(
        description="The message went or is going out; false: "
        "it was held or stopped, or none was sent."
    )
    notice: str = Field(description="Whether the customer heard, in Chinese.")


class BookingPropose(BaseModel):
    slot_start: Instant = Field(description="The time offered (within working hours).")
    staff_id: Id = Field(description="Who would go; they must be free then.")
