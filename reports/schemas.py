"""Request and response models of the visit report and its cards."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from huifang.settings import get_settings
from reports import service as reports
from reports.mms import MmsPayload
from reports.models import Report


class ReportImageRead(BaseModel):
    url: str
    bytes: int
    width: int
    height: int
    content_type: str = "image/jpeg"


class ReportVideoRead(BaseModel):
    url: str
    bytes: int
    duration_seconds: float
    poster_url: str | None
    content_type: str = "video/mp4"


class ReportHighlightRead(BaseModel):
    area: str | None
    image: ReportImageRead = Field(
        description="The before/after composite under the MMS "
        "photo budget, as the page and MMS show it."
    )


class ReportStaffRead(BaseModel):
    name: str
    years_experience: int | None
    certificates: list[str]


class ReportCardRead(BaseModel):
    title: str
    text: str


class MmsPartRead(BaseModel):
    kind: Literal["text", "image", "video"]
    name: str
    content_type: str
    bytes: int
    url: str | None
    text: str | None
    frame: int | None = Field(description="Aliyun: the frame (from 1) the part belongs to.")


class MmsDroppedRead(BaseModel):
    name: str
    bytes: int
    reason: str


class MmsRead(BaseModel):
    profile: str
    mode: Literal["mms", "sms"] = Field(
        description="sms: the profile or the limits leave only the text with the report link."
    )
    parts: list[MmsPartRead] = Field(description="In the order they are sent.")
    total_bytes: int
    max_total_bytes: int
    max_media: int
    dropped: list[MmsDroppedRead] = Field(description="What did not fit, and why.")
    smil: str | None = Field(description="Aliyun: the frames' order and pairing.")
    sms_text: str = Field(
        description="The SMS fallback: signature first, what was done, the report link, 回复1预约."
    )

    @classmethod
    def of(cls, payload: MmsPayload) -> MmsRead:
        return cls(
            profile=payload.profile,
            mode=payload.mode,
            total_bytes=payload.total_bytes,
            max_total_bytes=payload.max_total_bytes,
            max_media=payload.max_media,
            smil=payload.smil,
            sms_text=payload.sms_text,
            parts=[
                MmsPartRead(
                    kind=p.kind,
                    name=p.name,
                    content_type=p.content_type,
                    bytes=p.bytes,
                    url=p.url,
                    text=p.text,
                    frame=p.frame,
                )
                for p in payload.parts
            ],
            dropped=[
                MmsDroppedRead(name=d.name, bytes=d.bytes, reason=d.reason) for d in payload.dropped
            ],
        )


class RatingRead(BaseModel):
    """The customer's answer on their report (one per report, changeable)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    report_id: int
    visit_id: int
    customer_id: int | None
    staff_id: int | None
    service_type: str
    score: Literal["good", "ok", "bad"] = Field(description="满意 / 一般 / 不满意.")
    problems: list[Literal["not_clean", "late", "damage", "attitude", "other"]] = Field(
        description="For bad: 没打扫干净, 迟到, 损坏物品, 态度, 其他."
    )
    comment: str | None
    ticket_id: int | None = Field(
        description="The service-recovery ticket a bad rating opened (an inbox complaint)."
    )
    rated_at: dt.datetime
    changed_at: dt.datetime
    changes: int = Field(description="How many times the customer changed the answer.")


class ReportViewsRead(BaseModel):
    """What the report page saw, counted by our server (no third-party tracker)."""

    first_opened_at: dt.datetime | None
    last_opened_at: dt.datetime | None
    opens: int
    video_started: int
    video_ended: int = Field(description="The recap watched to its end.")
    long_image: int = Field(description="The long image opened (to look at or save).")
    book_pressed: int = Field(description="The Book button pressed on the page.")


class RatingGroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str = Field(description="The staff id (none: no staff), service code or YYYY-MM.")
    label: str
    ratings: int
    good: int
    ok: int
    bad: int
    satisfied_percent: float | None = Field(description="满意 out of all ratings, in percent.")
    tickets: int = Field(description="Service-recovery tickets the bad ratings opened.")
    open_tickets: int
    responded: int
    resolved: int
    median_minutes_to_first_response: float | None
    median_minutes_to_resolution: float | None


class RatingFiguresRead(BaseModel):
    by: Literal["staff", "service", "month"]
    since: dt.datetime
    until: dt.datetime
    groups: list[RatingGroupRead]


class ReportRead(BaseModel):
    id: int
    visit_id: int
    url: str = Field(description="The public page, /r/{token}.")
    book_url: str = Field(description="Where the page's Book button leads, /b/{token}.")
    expires_at: dt.datetime
    expired: bool
    built_at: dt.datetime
    long_image: ReportImageRead
    recap: ReportVideoRead | None = Field(
        description="The recap video, when the visit has clips and it has been rendered."
    )
    highlights: list[ReportHighlightRead]
    staff_report: ReportImageRead | None
    staff: ReportStaffRead | None
    care_advice: ReportCardRead
    offer: ReportCardRead
    summary: str
    mms: MmsRead
    rating: RatingRead | None = Field(
        default=None, description="The customer's satisfaction answer, once given."
    )
    views: ReportViewsRead | None = Field(
        default=None, description="Opens, recap plays, long image, Book presses."
    )

    @classmethod
    def of(cls, report: Report, payload: MmsPayload) -> ReportRead:
        base = get_settings().public_url
        snap = report.snapshot
        assets = snap["assets"]

        def image(name: str) -> ReportImageRead:
            entry = assets[name]
            return ReportImageRead(
                url=base + reports.asset_path(report, name),
                bytes=entry["bytes"],
                width=entry["width"],
                height=entry["height"],
                content_type=entry["content_type"],
            )

        recap = None
        if report.recap_path:
            poster = reports.poster_name(report)
            recap = ReportVideoRead(
                url=base + reports.asset_path(report, reports.recap_name(report) or ""),
                bytes=report.recap_bytes or 0,
                duration_seconds=report.recap_duration or 0.0,
                poster_url=base + reports.asset_path(report, poster) if poster else None,
            )
        staff = snap["staff"]
        return cls(
            id=report.id,
            visit_id=report.visit_id,
            url=reports.page_url(report),
            book_url=base + reports.book_path(report),
            expires_at=report.expires_at,
            expired=reports.is_expired(report),
            built_at=report.built_at,
            long_image=ReportImageRead(
                url=base + reports.asset_path(report, reports.long_name(report)),
                bytes=report.long_bytes,
                width=report.long_width,
                height=report.long_height,
            ),
            recap=recap,
            highlights=[
                ReportHighlightRead(area=h["area"], image=image(h["asset"]))
                for h in snap["highlights"]
            ],
            staff_report=image(snap["staff_report"]["asset"]) if snap["staff_report"] else None,
            staff=ReportStaffRead(
                name=staff["name"],
                years_experience=staff["years_experience"],
                certificates=staff["certificates"],
            )
            if staff
            else None,
            care_advice=ReportCardRead(**snap["care_advice"]),
            offer=ReportCardRead(**snap["offer"]),
            summary=snap["summary"],
            mms=MmsRead.of(payload),
        )


class CareAdviceRead(BaseModel):
    service_type: str
    label: str = Field(description="The words customers read for the service type.")
    title: str
    text: str
    customized: bool = Field(description="false: the built-in advice.")


class CareAdviceUpdate(BaseModel):
    text: str = Field(
        min_length=1, max_length=300, examples=["真皮沙发建议每 3 个月护理一次，避免阳光直晒。"]
    )


class ReportOfferRead(BaseModel):
    month: int = Field(description="Reports of visits in this month (1–12) show this offer.")
    title: str
    text: str
    customized: bool = Field(description="false: the built-in offer.")


class ReportOfferUpdate(BaseModel):
    title: str = Field(min_length=1, max_length=20, examples=["春节前深度保洁"])
    text: str = Field(
        min_length=1,
        max_length=120,
        examples=["年前保洁预约紧张，提前约好深度保洁，干干净净过大年。"],
    )


class ReportMediaExpiryUpdate(BaseModel):
    keep_days: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Keep the media this many days after the build "
        "(null: while the report is valid).",
    )
    after_view_days: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Delete the media this many days after the customer first opened the report "
        "(阅后自动删除; null: not).",
    )


class ReportMediaExpiryRead(BaseModel):
    report_id: int
    media_due_at: dt.datetime = Field(
        description="When the media will be deleted, as things stand."
    )
    media_expires_at: dt.datetime | None
    media_after_view_days: int | None
    first_viewed_at: dt.datetime | None
    media_deleted_at: dt.datetime | None
