"""The day's counts and lists for the office's 今日 screen."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from messaging.thread_schemas import ResponseClock


class TodayCounts(BaseModel):
    bookings: int = Field(description="Booking requests waiting for an answer.")
    overdue_bookings: int
    tickets: int = Field(description="Open complaints and low ratings.")
    overdue_tickets: int = Field(description="Of those, unanswered past the response target.")
    replies: int = Field(description="Other replies waiting for a person.")
    overdue_replies: int
    reports_building: int = Field(description="Visits whose photos or clips are processing.")
    sends_today: int = Field(description="Campaign messages due today (company time zone).")
    sends_tomorrow: int


class TodayBooking(BaseModel):
    booking_id: int
    customer_id: int
    customer_name: str
    service_label: str
    slot_start: dt.datetime | None = Field(
        description="The time asked for (None: a '1' reply, call to agree one)."
    )
    channel: str
    clock: ResponseClock


class TodayTicket(BaseModel):
    kind: Literal["complaint", "low_rating"]
    reply_id: int
    customer_id: int | None
    customer_name: str | None
    body: str
    complaint_rule: str | None
    owner: str | None
    assignee_id: int | None
    clock: ResponseClock


class TodayReply(BaseModel):
    reply_id: int
    customer_id: int | None
    customer_name: str | None
    body: str
    route: str
    clock: ResponseClock


class TodayReport(BaseModel):
    visit_id: int
    customer_name: str
    processing: int = Field(description="Photos and clips still processing.")
    since: dt.datetime = Field(description="When the oldest of them arrived.")


class TodaySends(BaseModel):
    campaign_id: int
    campaign_name: str
    today: int
    tomorrow: int


class TodayRead(BaseModel):
    at: dt.datetime
    timezone: str
    today: dt.date
    tomorrow: dt.date
    complaint_target_minutes: int
    reply_target_minutes: int
    counts: TodayCounts
    bookings: list[TodayBooking] = Field(description="Longest-waiting first (at most 20).")
    tickets: list[TodayTicket] = Field(description="Longest-waiting first (at most 20).")
    replies: list[TodayReply] = Field(description="Longest-waiting first (at most 20).")
    reports: list[TodayReport] = Field(description="Oldest first (at most 20).")
    sends: list[TodaySends] = Field(description="Per campaign, today and tomorrow.")
