"""Photos and clips of a visit, and the images made from them.

A media row is created when an upload has been received and checked; processing
then moves it ``processing → ready`` or ``processing → failed`` with a reason. Photos
and clips go the same way: a clip is ready once its normalized, watermarked video, its
poster frame and its thumbnail exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin

PHASES = ("before", "during", "after", "staff_report")
PHASE_LABELS = {
    "before": "服务前", "during": "服务中", "after": "服务后", "staff_report": "工作汇报",
}

# Media.status
PROCESSING = "processing"  # received and checked; the media queue has not finished it yet
READY = "ready"  # renditions exist
FAILED = "failed"  # processing refused it; failure_reason says why in a sentence


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

    renditions: Mapped[list[Rendition]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="Rendition.id",
        back_populates="media", foreign_keys="Rendition.media_id",
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


# --- visit reports -----------------------------------------------------------------------
# Imported here rather than at the top: this part of the file belongs to the report.


JsonDict = JSON().with_variant(JSONB(), "postgresql")

# ReportText.kind
CARE_ADVICE = "care_advice"  # key: a service type code, the company's own codes included
OFFER = "offer"  # key: the month of the visit, "1" … "12"


class Report(TimestampMixin, Base):
    """What the customer receives after a visit: a public page, a long image, MMS parts.

    One per visit: building it again rebuilds this row in place and keeps ``token``, so a
    link already sent keeps working. ``snapshot`` holds what was assembled (texts, image
    tokens, the staff card) so the page renders without recomputing and stays as sent
    even when the company later edits its care advice or offers.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"),
                                          unique=True)
    # The public page is /r/{token}: unguessable, and the only key a customer holds.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    # After this the page answers 410 with how to reach the company (Tenant.report_valid_days).
    expires_at: Mapped[dt.datetime] = mapped_column()
    built_at: Mapped[dt.datetime] = mapped_column()
    snapshot: Mapped[dict[str, Any]] = mapped_column(JsonDict, default=dict)

    # The long image (one JPEG, 750 px wide), served under the report's token; its own
    # token changes with every build so the URL can be cached for ever.
    long_path: Mapped[str] = mapped_column(String(255))
    long_bytes: Mapped[int] = mapped_column()
    long_width: Mapped[int] = mapped_column()
    long_height: Mapped[int] = mapped_column()
    long_token: Mapped[str] = mapped_column(String(32), unique=True)

    # The recap video, when the visit has clips (media.recap renders it; attach_recap keeps it).
    recap_path: Mapped[str | None] = mapped_column(String(255), default=None)
    recap_bytes: Mapped[int | None] = mapped_column(default=None)
    recap_duration: Mapped[float | None] = mapped_column(default=None)
    recap_token: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    recap_poster_path: Mapped[str | None] = mapped_column(String(255), default=None)


class ReportText(TimestampMixin, Base):
    """A company's own wording for a report card: care advice per service, offer per month.

    Absent rows mean the built-in defaults (media.report); a row overrides one of them.
    """

    __tablename__ = "report_texts"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # CARE_ADVICE | OFFER
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(40), default=None)
    text: Mapped[str] = mapped_column(Text)
