"""The visit report a customer receives, and each company's own wording for its cards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
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
