from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from huifang.errors import Invalid
from huifang.fields import TIMEZONE_MAX_LENGTH
from tenancy import service
from tenancy.languages import Language


def _known_zone(name: str) -> str:
    try:
        return service.check_timezone(name)
    except Invalid as exc:
        raise ValueError(exc.detail) from None


TimeZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TIMEZONE_MAX_LENGTH,
        examples=["Asia/Shanghai"],
        description="An IANA time zone name from the tz database.",
    ),
    AfterValidator(_known_zone),
]


class TenantCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["洁家家政"])
    signature: str = Field(
        min_length=1,
        max_length=20,
        examples=["【洁家家政】"],
        description="SMS signature, with or without the 【】 brackets; "
        "2–16 characters inside them.",
    )
    timezone: TimeZoneName = "Asia/Shanghai"
    phone_region: str = Field(default="CN", min_length=2, max_length=2, examples=["CN"])


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    signature: str
    sms_signature: str
    timezone: str
    phone_region: str
    clip_max_seconds: int
    report_valid_days: int
    work_days: str
    work_start_minute: int
    work_end_minute: int
    slot_minutes: int
    language: Language
    report_review: bool = Field(
        description="Whether the office reviews a visit's report "
        "before it is sent (true), or it goes to the customer as soon "
        "as staff finish the visit (false)."
    )
    capture_consent_required: bool = Field(
        default=True,
        description="Whether media of a customer's visits need their capture consent.",
    )
    report_media_days: int | None = Field(
        default=None,
        description="Days a report's media are kept (null: as long as the report is valid).",
    )
    report_media_after_view_days: int | None = Field(
        default=None,
        description="Days after the customer first opened a report that its media are deleted "
        "(阅后自动删除; null: not).",
    )
    created_at: dt.datetime
    webhooks: dict[str, str] = Field(
        default_factory=dict,
        description="Addresses to enter in providers' consoles (Aliyun SmsReport and SmsUp "
        "push). They are secret: anyone holding one can post receipts for this company.",
    )


class TenantUpdate(BaseModel):
    """Company settings; fields left out keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    signature: str | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        examples=["【洁家家政】"],
        description="SMS signature, with or without 【】; 2–16 characters inside them. "
        "Providers approve signatures: change it only to one approved for the company.",
    )
    timezone: TimeZoneName | None = None
    clip_max_seconds: int | None = Field(
        default=None, ge=5, le=600, description="Clips longer than this are trimmed at upload."
    )
    report_valid_days: int | None = Field(
        default=None, ge=1, le=3650, description="How long a report page stays open."
    )
    work_days: str | None = Field(
        default=None,
        pattern=r"^[1-7]{1,7}$",
        examples=["123456"],
        description="Working days as ISO weekday digits (1 = Monday … 7 = Sunday).",
    )
    work_start_minute: int | None = Field(
        default=None, ge=0, le=24 * 60, description="Start of the working day (minutes)."
    )
    work_end_minute: int | None = Field(
        default=None, ge=0, le=24 * 60, description="End of the working day (minutes)."
    )
    slot_minutes: int | None = Field(
        default=None, ge=30, le=12 * 60, description="Length of one bookable visit."
    )
    language: Language | None = Field(
        default=None,
        description="Language of automatic messages to customers who have "
        "none of their own: zh (Chinese, the default) or en.",
    )
    report_review: bool | None = Field(
        default=None,
        description="true: the office reviews each report staff finish before "
        "it is sent; false: it is sent to the customer at once.",
    )
    capture_consent_required: bool | None = Field(
        default=None,
        description="true: photos and clips of a customer's visits are refused until the "
        "customer's capture consent is recorded.",
    )
    report_media_days: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Keep report media this many days (0: as long as the report is valid).",
    )
    report_media_after_view_days: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Delete report media this many days after the first view (0: never).",
    )


class ApiKeyCreate(BaseModel):
    name: str = Field(default="api", min_length=1, max_length=100)
    role: Literal["owner", "office"] = Field(
        default="owner",
        description="owner: everything; office: the daily work, not keys, "
        "users, settings or compliance policy.",
    )


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. It is shown only in this answer; store it now.")
