from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tenancy.languages import Language
from tenancy.schemas import TimeZoneName

Tag = str


class Reachability(BaseModel):
    can_receive: bool
    reasons: list[str] = Field(description="Why not, when it cannot.")
    later: list[str] = Field(description="What delays a message now without stopping it.")


class CustomerCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["王女士"])
    phone: str = Field(
        min_length=1, max_length=40, examples=["138 0013 8000"],
        description="Any common spelling: spaces, dashes, +86/0086/86, full-width digits.",
    )
    region: str | None = Field(default=None, max_length=50, examples=["上海"])
    city: str | None = Field(default=None, max_length=50, examples=["浦东新区"])
    timezone: TimeZoneName | None = Field(
        default=None,
        description="An IANA time zone name. Defaults to the phone's country when it has one "
        "zone, else the company's.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, examples=[["老客户", "有宠物"]])
    notes: str | None = Field(default=None, max_length=2000)
    language: Language | None = Field(
        default=None, description="Language of automatic messages; unset: the company's.")


class CustomerUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    region: str | None = Field(default=None, max_length=50)
    city: str | None = Field(default=None, max_length=50)
    timezone: TimeZoneName | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=2000)
    language: Language | None = None


class CustomerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    phone: str = Field(description="E.164")
    region: str | None
    city: str | None
    timezone: str
    tags: list[str]
    notes: str | None
    language: Language | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CustomerDetail(CustomerRead):
    messaging: dict[str, Reachability] = Field(
        description="Whether the customer can receive marketing and service messages, and why not.")


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    total: int
    limit: int
    offset: int


class ImportRow(BaseModel):
    row: int = Field(description="Line in the file, counting the header as line 1.")
    status: Literal["imported", "updated", "unchanged", "rejected"]
    customer_id: int | None = None
    phone: str | None = Field(default=None, description="E.164 when the number was accepted.")
    reason: str | None = None


class ImportReport(BaseModel):
    imported: int
    updated: int
    unchanged: int
    rejected: int
    rows: list[ImportRow]
