"""Photos and clips of a visit, and the images made from them.

A media row is created when an upload has been received and checked; processing
then moves it ``processing → ready`` or ``processing → failed`` with a reason. Photos
and clips go the same way: a clip is ready once its normalized, watermarked video, its
poster frame and its thumbnail exist.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin

PHASES = ("before", "during", "after", "staff_report")
PHASE_LABELS = {
    "before": "服务前",
    "during": "服务中",
    "after": "服务后",
    "staff_report": "工作汇报",
}

# Media.status
PROCESSING = "processing"  # received and checked; the media queue has not finished it yet
READY = "ready"  # renditions exist
FAILED = "failed"  # processing refused it; failure_reason says why in a sentence
EXPIRED = "expired"  # its renditions were deleted (the report's media time ran out)


class Media(TimestampMixin, Base):
    __tablename__ = "media"
    __table_args__ = (
        # The same file uploaded twice to a visit is one media (phones retry uploads).
        UniqueConstraint("visit_id", "sha256"),
        Index("ix_media_tenant_visit", "tenant_id", "visit_id"),
        Index("ix_media_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # photo | clip
    phase: Mapped[str] = mapped_column(String(16))  # one of PHASES
    area: Mapped[str | None] = mapped_column(String(20), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(16), default=PROCESSING)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)

    # The original is private: kept under a generated name, never served publicly.
    original_path: Mapped[str] = mapped_column(String(255))
    # What the phone called it, for people only; never used to build a path.
    original_name: Mapped[str | None] = mapped_column(String(255), default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column()
    mime: Mapped[str] = mapped_column(String(64))  # decided from the content, never the client
    # As shown, upright: of the photo, or of the normalized clip.
    width: Mapped[int | None] = mapped_column(default=None)
    height: Mapped[int | None] = mapped_column(default=None)
    # Clips only: the length of the normalized clip, and the length as uploaded when it was
    # cut to the company's ``clip_max_seconds`` (None when nothing was cut).
    duration_seconds: Mapped[float | None] = mapped_column(default=None)
    trimmed_from_seconds: Mapped[float | None] = mapped_column(default=None)
    # The phone's own capture time, when the file says it and it is plausible.
    captured_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # When our server received it: the time the watermark vouches for.
    received_at: Mapped[dt.datetime] = mapped_column()
    # Printed on the watermark; /v/{code} shows the facts behind it.
    verification_code: Mapped[str] = mapped_column(String(16), unique=True)
    # The record that the media existed after its files went: when the renditions were
    # deleted (status EXPIRED), and when the original was (the company's retention).
    renditions_deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    original_deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    renditions: Mapped[list[Rendition]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="Rendition.id",
        back_populates="media",
        foreign_keys="Rendition.media_id",
    )

    @property
    def phase_label(self) -> str:
        return PHASE_LABELS.get(self.phase, self.phase)


class Rendition(Base):
    """A file made from a media: display, mms, thumb, the before/after composite; for a
    clip, video (the normalized MP4), poster and thumb."""

    __tablename__ = "media_renditions"
    __table_args__ = (UniqueConstraint("media_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column()
    width: Mapped[int] = mapped_column()
    height: Mapped[int] = mapped_column()
    content_type: Mapped[str] = mapped_column(String(64), default="image/jpeg")
    # Renditions go to customers (report pages, MMS): served at /m/{token}, unguessable.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    # For a before/after composite: the before photo it was made with.
    source_media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column()

    media: Mapped[Media] = relationship(back_populates="renditions", foreign_keys=[media_id])


# ResumableUpload.status
RECEIVING = "receiving"  # bytes still arriving (or all arrived and not yet handed to ingest)
DONE = "done"  # handed to ingest: media_id is the media it became (or the same file's)
REFUSED = "refused"  # refused (type, size, damaged): failure_reason says why; bytes removed


class ResumableUpload(TimestampMixin, Base):
    """A file arriving in pieces (tus 1.0, media.resumable), bound to a company and a visit.

    ``received`` is the byte count kept on disk; a piece is on record only once its bytes
    are, so a client that asks for the offset can always go on from it. Unfinished uploads
    expire (``expires_at``) and the periodic sweep removes them.
    """

    __tablename__ = "resumable_uploads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # In the upload's address: unguessable, our own characters only.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    phase: Mapped[str] = mapped_column(String(16))  # one of PHASES
    area: Mapped[str | None] = mapped_column(String(20), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    filename: Mapped[str | None] = mapped_column(String(255), default=None)  # for people only
    length: Mapped[int] = mapped_column(BigInteger)  # Upload-Length, announced at creation
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # Upload-Offset
    # Decided from the first bytes, never from the client's metadata.
    kind: Mapped[str | None] = mapped_column(String(8), default=None)
    mime: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=RECEIVING)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), default=None
    )
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class WatermarkTemplate(TimestampMixin, Base):
    """A company's watermark layout; the facts on it always come from the server."""

    __tablename__ = "watermark_templates"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[str] = mapped_column(String(16), default="bottom-left")
    scale: Mapped[float] = mapped_column(default=1.0)
    show_capture_time: Mapped[bool] = mapped_column(default=True)
    logo_path: Mapped[str | None] = mapped_column(String(255), default=None)
