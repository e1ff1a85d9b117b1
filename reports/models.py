"""The visit report a customer receives, and each company's own wording for its cards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin

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
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), unique=True)
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

    # The recap video, when the visit has clips (reports.recap_video renders it; attach_recap
    # keeps it).
    recap_path: Mapped[str | None] = mapped_column(String(255), default=None)
    recap_bytes: Mapped[int | None] = mapped_column(default=None)
    recap_duration: Mapped[float | None] = mapped_column(default=None)
    recap_token: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    recap_poster_path: Mapped[str | None] = mapped_column(String(255), default=None)

    # When its media are deleted (reports.expiry): at ``media_expires_at`` (None: at
    # ``expires_at``), or ``media_after_view_days`` after ``first_viewed_at`` (阅后自动删除),
    # whichever comes first. Taken from the company at the first build; editable per report.
    media_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    media_after_view_days: Mapped[int | None] = mapped_column(default=None)
    first_viewed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    media_deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)


class ReportText(TimestampMixin, Base):
    """A company's own wording for a report card: care advice per service, offer per month.

    Absent rows mean the built-in defaults (reports.service); a row overrides one of them.
    """

    __tablename__ = "report_texts"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # CARE_ADVICE | OFFER
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(40), default=None)
    text: Mapped[str] = mapped_column(Text)


# ReportRating.score
GOOD, OK, BAD = "good", "ok", "bad"
SCORES = {GOOD: "满意", OK: "一般", BAD: "不满意"}
# ReportRating.problems: what went wrong, for 不满意
PROBLEMS = {
    "not_clean": "没打扫干净",
    "late": "迟到",
    "damage": "损坏物品",
    "attitude": "态度",
    "other": "其他",
}


class ReportRating(Base):
    """The customer's answer to 这次服务满意吗 on the report page: one per report.

    Rating again changes this row. A 不满意 opens one service-recovery ticket (an inbox
    complaint, ``ticket_id``) the first time; later answers never open a second. The staff
    member and service type are kept as they were at the visit, for the figures.
    """

    __tablename__ = "report_ratings"
    __table_args__ = (Index("ix_report_ratings_tenant_rated", "tenant_id", "rated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    report_id: Mapped[int] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), unique=True
    )
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None, index=True
    )
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL"), default=None
    )
    service_type: Mapped[str] = mapped_column(String(64))
    score: Mapped[str] = mapped_column(String(8))  # one of SCORES
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)  # keys of PROBLEMS
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    # The service-recovery ticket a 不满意 opened (an inbound_messages row, complaint).
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL"), default=None
    )
    rated_at: Mapped[dt.datetime] = mapped_column()  # the first answer
    changed_at: Mapped[dt.datetime] = mapped_column()  # the latest
    changes: Mapped[int] = mapped_column(default=0)  # answers after the first


class ReportViews(Base):
    """What the customer did on the report page, counted by our server (no tracker):
    opens (and the first), the recap started and watched to the end, the long image opened
    or saved, the Book button pressed."""

    __tablename__ = "report_views"

    report_id: Mapped[int] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    first_opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    opens: Mapped[int] = mapped_column(default=0)
    video_started: Mapped[int] = mapped_column(default=0)
    video_ended: Mapped[int] = mapped_column(default=0)
    long_image: Mapped[int] = mapped_column(default=0)
    book_pressed: Mapped[int] = mapped_column(default=0)
