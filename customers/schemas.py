from __future__ import annotations

import datetime as dt
from typing import Any, Literal

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
        min_length=1,
        max_length=40,
        examples=["138 0013 8000"],
        description="Any common spelling: spaces, dashes, +86/0086/86, full-width digits.",
    )
    region: str | None = Field(default=None, max_length=50, examples=["上海"])
    city: str | None = Field(default=None, max_length=50, examples=["浦东新区"])
    address: str | None = Field(
        default=None, max_length=200, examples=["浦东新区张杨路500号3栋1201室"]
    )
    timezone: TimeZoneName | None = Field(
        default=None,
        description="An IANA time zone name. Defaults to the phone's country when it has one "
        "zone, else the company's.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, examples=[["老客户", "有宠物"]])
    notes: str | None = Field(default=None, max_length=2000)
    language: Language | None = Field(
        default=None, description="Language of automatic messages; unset: the company's."
    )


class CustomerUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    region: str | None = Field(default=None, max_length=50)
    city: str | None = Field(default=None, max_length=50)
    address: str | None = Field(default=None, max_length=200)
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
    address: str | None = Field(default=None, description="Where visits go.")
    timezone: str
    tags: list[str]
    notes: str | None
    language: Language | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CustomerDetail(CustomerRead):
    messaging: dict[str, Reachability] = Field(
        description="Whether the customer can receive marketing and service messages, and why not."
    )


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


# --- the customers screen: list badges, timeline, background imports ----------------------


class CustomerListItem(CustomerRead):
    """A customer in the list, with what its badges show."""

    reachable: bool = Field(
        description="Marketing can reach them: consent on record and no active suppression."
    )
    consented: bool = Field(description="An unrevoked marketing consent is on record.")
    opted_out: bool = Field(description="They asked to stop (an active suppression they chose).")
    suppressed: bool = Field(
        description="Any active suppression: opted out, or the number cannot take SMS."
    )
    last_visit_at: dt.datetime | None = Field(description="When their last visit finished.")
    churn_risk: bool = Field(
        description="Overdue: last visit longer ago than 1.5 × the "
        "company's usual interval, and nothing booked."
    )


class CustomerListPage(BaseModel):
    items: list[CustomerListItem]
    total: int
    limit: int
    offset: int
    usual_interval_days: int = Field(
        description="The company's usual days between two visits of a customer (churn risk)."
    )


class TimelineEntryRead(BaseModel):
    kind: Literal["visit", "report", "booking", "message", "reply"]
    id: int
    at: dt.datetime
    cursor: str = Field(description="Pass as `before` to get the entries after this one.")
    data: dict[str, Any] = Field(
        description="visit: service_type, service_label, staff_id, staff_name, areas, "
        "scheduled_at, finished_at, amount_cents; report: visit_id, page, expires_at, "
        "has_recap; booking: status, service_type, slot_start, slot_end, channel, note, "
        "answered_at; message: channel, category, source_type, source_id, text, status, "
        "status_reason, due_at, sent_at; reply: text, route, complaint, state, in_reply_to_id."
    )


class TimelinePage(BaseModel):
    items: list[TimelineEntryRead]
    next_before: str | None = Field(description="The cursor of the next page; null at the end.")


class ImportJobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: Literal["queued", "running", "done", "failed", "interrupted"]
    filename: str | None
    file_bytes: int
    rows_total: int | None = Field(description="Data rows in the file, once it has been read.")
    rows_done: int
    imported: int
    updated: int
    unchanged: int
    rejected: int
    error: str | None = Field(description="Why the job failed or was interrupted.")
    attempts: int
    stalled: bool = Field(
        default=False,
        description="Waiting or running, but not heard of "
        "for two minutes: it is picked up again within a minute or two.",
    )
    created_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class ImportJobPage(BaseModel):
    items: list[ImportJobRead]
    total: int
    limit: int
    offset: int


class ImportRowPage(BaseModel):
    items: list[ImportRow]
    total: int
    limit: int
    offset: int
