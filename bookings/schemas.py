"""Bookings as the API shows them, and staff's answer to one."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict


class BookingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    service_type: str | None
    slot_start: dt.datetime | None
    slot_end: dt.datetime | None
    note: str | None
    address: str | None = None
    status: str
    channel: str
    link_id: int | None
    message_id: int | None
    inbound_id: int | None
    source_type: str | None
    source_id: str | None
    answered_at: dt.datetime | None
    created_at: dt.datetime
    staff_id: int | None = None
    visit_id: int | None = None
    decline_reason: str | None = None


class BookingAnswer(BaseModel):
    status: Literal["confirmed", "declined"]
