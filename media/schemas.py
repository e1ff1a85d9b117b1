from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from huifang.settings import get_settings
from media.mms import MmsPayload
from media.models import Media, Rendition, Report, ResumableUpload, WatermarkTemplate


class RenditionRead(BaseModel):
    kind: str = Field(description="display (2048 px), mms (under the MMS byte budget), thumb "
                                  "(400 px) or before_after (the area's composite); for a "
                                  "clip video (H.264 MP4, at most 1280×720), poster and thumb.")
    url: str
    bytes: int
    width: int
    height: int
    content_type: str

    @classmethod
    def of(cls, rendition: Rendition) -> RenditionRead:
        return cls(kind=rendition.kind, url=rendition_url(rendition), bytes=rendition.bytes,
                   width=rendition.width, height=rendition.height,
                   content_type=rendition.content_type)


class MediaRead(BaseModel):
    id: int
    visit_id: int
    kind: Literal["photo", "clip"]
    phase: str
    phase_label: str
    area: str | None
    note: str | None
    status: Literal["processing", "ready", "failed"]
    failure_reason: str | None
    sha256: str = Field(description="SHA-256 of the original file as received.")
    bytes: int
    mime: str
    width: int | None
    height: int | None
    duration_seconds: float | None = Field(description="A clip's length, once processed.")
    trimmed_from_seconds: float | None = Field(
        description="A clip's length as uploaded, when it was cut to the company's "
                    "clip_max_seconds; null when nothing was cut.")
    trimmed_note: str | None = Field(description='e.g. "trimmed to 60 s of 95 s".')
    captured_at: dt.datetime | None
    received_at: dt.datetime
    verification_code: str
    verification_url: str
    renditions: list[RenditionRead]

    @classmethod
    def of(cls, media: Media) -> MediaRead:
        from media.service import format_code

        code = format_code(media.verification_code)
        return cls(
            id=media.id, visit_id=media.visit_id, kind=media.kind,
            phase=media.phase, phase_label=media.phase_label, area=media.area, note=media.note,
            status=media.status, failure_reason=media.failure_reason,
            sha256=media.sha256, bytes=media.bytes, mime=media.mime, width=media.width,
            height=media.height, duration_seconds=media.duration_seconds,
            trimmed_from_seconds=media.trimmed_from_seconds,
            trimmed_note=(f"trimmed to {media.duration_seconds or 0:.0f} s of "
                          f"{media.trimmed_from_seconds:.0f} s"
                          if media.trimmed_from_seconds is not None else None),
            captured_at=media.captured_at, received_at=media.received_at,
            verification_code=code, verification_url=f"{get_settings().public_url}/v/{code}",
            renditions=[RenditionRead.of(r) for r in media.renditions],
        )


class UploadRead(BaseModel):
    """A resumable upload (tus): how far it got and what became of it."""

    id: str = Field(description="The upload's token, as in its address /v1/uploads/{id}.")
    visit_id: int
    phase: str
    area: str | None
    note: str | None
    filename: str | None
    length: int = Field(description="Bytes announced at creation (Upload-Length).")
    received: int = Field(description="Bytes the server holds (Upload-Offset).")
    status: Literal["receiving", "done", "refused"]
    failure_reason: str | None = Field(description="Why it was refused, in a sentence.")
    media_id: int | None = Field(description="The media it became, once done (the same "
                                             "file sent before gives that media).")
    expires_at: dt.datetime = Field(description="An unfinished upload is removed after this.")
    created_at: dt.datetime

    @classmethod
    def of(cls, upload: ResumableUpload) -> UploadRead:
        return cls(id=upload.token, visit_id=upload.visit_id, phase=upload.phase,
                   area=upload.area, note=upload.note, filename=upload.filename,
                   length=upload.length, received=upload.received,
                   status=upload.status,
                   failure_reason=upload.failure_reason, media_id=upload.media_id,
                   expires_at=upload.expires_at, created_at=upload.created_at)


class PairRead(BaseModel):
    area: str | None
    before_media_id: int
    after_media_id: int
    composite: RenditionRead | None


class WatermarkTemplateRead(BaseModel):
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"]
    scale: float
    show_capture_time: bool
    has_logo: bool

    @classmethod
    def of(cls, template: WatermarkTemplate) -> WatermarkTemplateRead:
        return cls(position=template.position,
                   scale=template.scale, show_capture_time=template.show_capture_time,
                   has_logo=bool(template.logo_path))


class WatermarkTemplateUpdate(BaseModel):
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"] | None = None
    scale: float | None = Field(default=None, ge=0.5, le=2.5)
    show_capture_time: bool | None = None


def rendition_url(rendition: Rendition) -> str:
    extension = "mp4" if rendition.content_type == "video/mp4" else "jpg"
    return f"{get_settings().public_url}/m/{rendition.token}.{extension}"


# --- visit reports -----------------------------------------------------------------------
# Imported here rather than at the top: this part of the file belongs to the report.


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
    image: ReportImageRead = Field(description="The before/after composite under the MMS "
                                               "photo budget, as the page and MMS show it.")


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
    mode: Literal["mms", "sms"] = Field(description="sms: the profile or the limits leave only "
                                                    "the text with the report link.")
    parts: list[MmsPartRead] = Field(description="In the order they are sent.")
    total_bytes: int
    max_total_bytes: int
    max_media: int
    dropped: list[MmsDroppedRead] = Field(description="What did not fit, and why.")
    smil: str | None = Field(description="Aliyun: the frames' order and pairing.")
    sms_text: str = Field(description="The SMS fallback: signature first, what was done, the "
                                      "report link, 回复1预约.")

    @classmethod
    def of(cls, payload: MmsPayload) -> MmsRead:
        return cls(
            profile=payload.profile, mode=payload.mode, total_bytes=payload.total_bytes,
            max_total_bytes=payload.max_total_bytes, max_media=payload.max_media,
            smil=payload.smil, sms_text=payload.sms_text,
            parts=[MmsPartRead(kind=p.kind, name=p.name, content_type=p.content_type,
                               bytes=p.bytes, url=p.url, text=p.text, frame=p.frame)
                   for p in payload.parts],
            dropped=[MmsDroppedRead(name=d.name, bytes=d.bytes, reason=d.reason)
                     for d in payload.dropped],
        )


class ReportRead(BaseModel):
    id: int
    visit_id: int
    url: str = Field(description="The public page, /r/{token}.")
    book_url: str = Field(description="Where the page's Book button leads, /b/{token}.")
    expires_at: dt.datetime
    expired: bool
    built_at: dt.datetime
    long_image: ReportImageRead
    recap: ReportVideoRead | None = Field(description="The recap video, when the visit has "
                                                      "clips and it has been rendered.")
    highlights: list[ReportHighlightRead]
    staff_report: ReportImageRead | None
    staff: ReportStaffRead | None
    care_advice: ReportCardRead
    offer: ReportCardRead
    summary: str
    mms: MmsRead

    @classmethod
    def of(cls, report: Report, payload: MmsPayload) -> ReportRead:
        from media import report as reports

        base = get_settings().public_url
        snap = report.snapshot
        assets = snap["assets"]

        def image(name: str) -> ReportImageRead:
            entry = assets[name]
            return ReportImageRead(url=base + reports.asset_path(report, name),
                                   bytes=entry["bytes"], width=entry["width"],
                                   height=entry["height"], content_type=entry["content_type"])

        recap = None
        if report.recap_path:
            poster = reports.poster_name(report)
            recap = ReportVideoRead(
                url=base + reports.asset_path(report, reports.recap_name(report) or ""),
                bytes=report.recap_bytes or 0, duration_seconds=report.recap_duration or 0.0,
                poster_url=base + reports.asset_path(report, poster) if poster else None)
        staff = snap["staff"]
        return cls(
            id=report.id, visit_id=report.visit_id, url=reports.page_url(report),
            book_url=base + reports.book_path(report), expires_at=report.expires_at,
            expired=reports.is_expired(report), built_at=report.built_at,
            long_image=ReportImageRead(
                url=base + reports.asset_path(report, reports.long_name(report)),
                bytes=report.long_bytes, width=report.long_width, height=report.long_height),
            recap=recap,
            highlights=[ReportHighlightRead(area=h["area"], image=image(h["asset"]))
                        for h in snap["highlights"]],
            staff_report=image(snap["staff_report"]["asset"]) if snap["staff_report"] else None,
            staff=ReportStaffRead(name=staff["name"], years_experience=staff["years_experience"],
                                  certificates=staff["certificates"]) if staff else None,
            care_advice=ReportCardRead(**snap["care_advice"]),
            offer=ReportCardRead(**snap["offer"]), summary=snap["summary"],
            mms=MmsRead.of(payload),
        )


class CareAdviceRead(BaseModel):
    service_type: str
    label: str = Field(description="The words customers read for the service type.")
    title: str
    text: str
    customized: bool = Field(description="false: the built-in advice.")


class CareAdviceUpdate(BaseModel):
    text: str = Field(min_length=1, max_length=300,
                      examples=["真皮沙发建议每 3 个月护理一次，避免阳光直晒。"])


class ReportOfferRead(BaseModel):
    month: int = Field(description="Reports of visits in this month (1–12) show this offer.")
    title: str
    text: str
    customized: bool = Field(description="false: the built-in offer.")


class ReportOfferUpdate(BaseModel):
    title: str = Field(min_length=1, max_length=20, examples=["春节前深度保洁"])
    text: str = Field(min_length=1, max_length=120,
                      examples=["年前保洁预约紧张，提前约好深度保洁，干干净净过大年。"])
