from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from huifang.fields import Cents, Id, Instant


class StaffCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["李阿姨"])
    phone: str | None = Field(default=None, max_length=40)
    certificates: list[str] = Field(
        default_factory=list, max_length=20, examples=[["家政服务员（高级）"]]
    )
    years_experience: int | None = Field(default=None, ge=0, le=70)
    active: bool = True


class StaffUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    certificates: list[str] | None = Field(default=None, max_length=20)
    years_experience: int | None = Field(default=None, ge=0, le=70)
    active: bool | None = None


class StaffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    phone: str | None
    photo_path: str | None
    certificates: list[str]
    years_experience: int | None
    active: bool
    created_at: dt.datetime


class StaffPage(BaseModel):
    items: list[StaffRead]
    total: int
    limit: int
    offset: int


class VisitCreate(BaseModel):
    customer_id: Id
    staff_id: Id | None = None
    service_type: str = Field(min_length=1, max_length=64, examples=["ac_cleaning", "空调清洗"])
    areas: list[str] = Field(default_factory=list, max_length=30, examples=[["客厅", "厨房"]])
    scheduled_at: Instant | None = None
    finished_at: Instant | None = None
    amount_cents: Cents | None = None
    notes: str | None = Field(default=None, max_length=2000)


class VisitUpdate(BaseModel):
    staff_id: Id | None = None
    service_type: str | None = Field(default=None, min_length=1, max_length=64)
    areas: list[str] | None = Field(default=None, max_length=30)
    scheduled_at: Instant | None = None
    finished_at: Instant | None = None
    amount_cents: Cents | None = None
    notes: str | None = Field(default=None, max_length=2000)


class VisitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    staff_id: int | None
    service_type: str
    service_label: str
    areas: list[str]
    scheduled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    amount_cents: int | None
    notes: str | None
    created_at: dt.datetime


class VisitPage(BaseModel):
    items: list[VisitRead]
    total: int
    limit: int
    offset: int


# --- the staff member's day (staff.day) -------------------------------------------

MissingPart = Literal["before", "after", "clip"]


class AreaProgressRead(BaseModel):
    """One area of a visit (客厅, 厨房 …) and what it still needs."""

    area: str | None = Field(
        description="The room or place; null for photos of no area "
        "(the whole visit, when it names no areas)."
    )
    required: bool = Field(
        description="An area of the visit: finishing needs its before and "
        "after photos. False for an area only photos named."
    )
    before: int = Field(description="服务前 photos received and not refused.")
    after: int = Field(description="服务后 photos received and not refused.")
    clips: int = Field(description="Clips received and not refused.")
    processing: int = Field(description="Photos and clips still being processed.")
    failed: int = Field(description="Photos and clips refused by processing (see the media).")
    missing: list[MissingPart] = Field(
        description="What is still missing: before and after "
        "are needed to finish, a clip is welcome."
    )


class VisitProgressRead(BaseModel):
    visit_id: int
    status: Literal["scheduled", "started", "finished"]
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    areas: list[AreaProgressRead]
    staff_report: int = Field(
        description="工作汇报 photos (the staff member with the day's sheet)."
    )
    processing: int
    can_finish: bool = Field(
        description="Every area of the visit has its before and after "
        "photos and nothing is still processing."
    )


class ScheduledVisitRead(BaseModel):
    """A visit on a staff member's list, with what the phone shows of it."""

    visit_id: int
    customer_id: int
    customer_name: str
    customer_region: str | None = Field(description="Where the customer lives (区域).")
    service_type: str
    service_label: str
    areas: list[str]
    scheduled_at: dt.datetime
    local_date: dt.date = Field(description="The day in the company's time zone.")
    local_time: str = Field(description="HH:MM in the company's time zone.", examples=["09:30"])
    notes: str | None
    progress: VisitProgressRead


class StaffScheduleRead(BaseModel):
    staff_id: int
    staff_name: str
    timezone: str
    today: dt.date = Field(description="Today in the company's time zone.")
    days: int
    visits: list[ScheduledVisitRead]


class VisitFinishRead(BaseModel):
    visit: VisitRead
    report_id: int
    report_url: str = Field(description="The report page as the customer will see it.")
    review: bool = Field(
        description="The company reviews reports before they are sent: nothing was sent yet."
    )
    message_id: int | None = Field(
        description="The report's message to the customer, when it was sent at once."
    )
