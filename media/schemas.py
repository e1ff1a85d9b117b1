from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from huifang.settings import get_settings
from media.models import Media, Rendition, ResumableUpload, WatermarkTemplate


class RenditionRead(BaseModel):
    kind: str = Field(
        description="display (2048 px), mms (under the MMS byte budget), thumb "
        "(400 px) or before_after (the area's composite); for a "
        "clip video (H.264 MP4, at most 1280×720), poster and thumb."
    )
    url: str
    bytes: int
    width: int
    height: int
    content_type: str

    @classmethod
    def of(cls, rendition: Rendition) -> RenditionRead:
        return cls(
            kind=rendition.kind,
            url=rendition_url(rendition),
            bytes=rendition.bytes,
            width=rendition.width,
            height=rendition.height,
            content_type=rendition.content_type,
        )


class MediaRead(BaseModel):
    id: int
    visit_id: int
    kind: Literal["photo", "clip"]
    phase: str
    phase_label: str
    area: str | None
    note: str | None
    status: Literal["processing", "ready", "failed", "expired"] = Field(
        description="expired: the renditions were deleted when the report's media time ran out."
    )
    failure_reason: str | None
    renditions_deleted_at: dt.datetime | None = None
    original_deleted_at: dt.datetime | None = None
    sha256: str = Field(description="SHA-256 of the original file as received.")
    bytes: int
    mime: str
    width: int | None
    height: int | None
    duration_seconds: float | None = Field(description="A clip's length, once processed.")
    trimmed_from_seconds: float | None = Field(
        description="A clip's length as uploaded, when it was cut to the company's "
        "clip_max_seconds; null when nothing was cut."
    )
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
            id=media.id,
            visit_id=media.visit_id,
            kind=media.kind,
            phase=media.phase,
            phase_label=media.phase_label,
            area=media.area,
            note=media.note,
            status=media.status,
            failure_reason=media.failure_reason,
            renditions_deleted_at=media.renditions_deleted_at,
            original_deleted_at=media.original_deleted_at,
            sha256=media.sha256,
            bytes=media.bytes,
            mime=media.mime,
            width=media.width,
            height=media.height,
            duration_seconds=media.duration_seconds,
            trimmed_from_seconds=media.trimmed_from_seconds,
            trimmed_note=(
                f"trimmed to {media.duration_seconds or 0:.0f} s of "
                f"{media.trimmed_from_seconds:.0f} s"
                if media.trimmed_from_seconds is not None
                else None
            ),
            captured_at=media.captured_at,
            received_at=media.received_at,
            verification_code=code,
            verification_url=f"{get_settings().public_url}/v/{code}",
            renditions=(
                []
                if media.renditions_deleted_at
                else [RenditionRead.of(r) for r in media.renditions]
            ),
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
    media_id: int | None = Field(
        description="The media it became, once done (the same file sent before gives that media)."
    )
    expires_at: dt.datetime = Field(description="An unfinished upload is removed after this.")
    created_at: dt.datetime

    @classmethod
    def of(cls, upload: ResumableUpload) -> UploadRead:
        return cls(
            id=upload.token,
            visit_id=upload.visit_id,
            phase=upload.phase,
            area=upload.area,
            note=upload.note,
            filename=upload.filename,
            length=upload.length,
            received=upload.received,
            status=upload.status,
            failure_reason=upload.failure_reason,
            media_id=upload.media_id,
            expires_at=upload.expires_at,
            created_at=upload.created_at,
        )


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
        return cls(
            position=template.position,
            scale=template.scale,
            show_capture_time=template.show_capture_time,
            has_logo=bool(template.logo_path),
        )


class WatermarkTemplateUpdate(BaseModel):
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"] | None = None
    scale: float | None = Field(default=None, ge=0.5, le=2.5)
    show_capture_time: bool | None = None


def rendition_url(rendition: Rendition) -> str:
    extension = "mp4" if rendition.content_type == "video/mp4" else "jpg"
    return f"{get_settings().public_url}/m/{rendition.token}.{extension}"
