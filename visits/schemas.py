from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from huifang.fields import Cents, Id, Instant


class StaffCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["李阿姨"])
    phone: str | None = Field(default=None, max_length=40)
    certificates: list[str] = Field(default_factory=list, max_length=20,
                                    examples=[["家政服务员（高级）"]])
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
