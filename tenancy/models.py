"""A tenant is one company; every business row in every other domain points at one."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The text between 【】 that Chinese carriers require at the front of every SMS.
    signature: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    # ISO 3166 region used to read phone numbers written without a country code.
    phone_region: Mapped[str] = mapped_column(String(2), default="CN")
    # Clips longer than this are trimmed at ingest (the media says so).
    clip_max_seconds: Mapped[int] = mapped_column(default=60, server_default="60")
    # How long a report's public page and links stay open.
    report_valid_days: Mapped[int] = mapped_column(default=180, server_default="180")
    # Working hours, offered as booking slots: ISO weekdays ("123456" = Monday–Saturday),
    # minutes after local midnight, and the length of one visit slot.
    work_days: Mapped[str] = mapped_column(String(7), default="123456", server_default="123456")
    work_start_minute: Mapped[int] = mapped_column(default=8 * 60, server_default="480")
    work_end_minute: Mapped[int] = mapped_column(default=18 * 60, server_default="1080")
    slot_minutes: Mapped[int] = mapped_column(default=120, server_default="120")
    # The language of automatic messages to customers who have none of their own.
    language: Mapped[str] = mapped_column(String(8), default="zh", server_default="zh")
    # How soon the office means to answer, in minutes: a complaint or low rating, and any
    # other reply or booking request. The console's clocks run against these.
    complaint_target_minutes: Mapped[int] = mapped_column(default=120, server_default="120")
    reply_target_minutes: Mapped[int] = mapped_column(default=240, server_default="240")
    # When staff finish a visit its report is built; True: the office reviews it and sends
    # it, False: it goes to the customer at once.
    report_review: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Media of a visit only with the customer's permission to photograph the home
    # (compliance.capture). New companies: on; companies from before it: off until turned on.
    capture_consent_required: Mapped[bool] = mapped_column(default=True, server_default=true())
    # How long a report's photos, clips, recap and long image are kept: days after the
    # build (None: as long as the report is valid), or days after the customer first opened
    # it (阅后自动删除; None: not after viewing). Each report may override both.
    report_media_days: Mapped[int | None] = mapped_column(default=None)
    report_media_after_view_days: Mapped[int | None] = mapped_column(default=None)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")

    @property
    def sms_signature(self) -> str:
        return f"【{self.signature}】"


class ApiKey(Base):
    """A bearer key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # First characters of the key, so a person can tell keys apart in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    # Keys carry 256 random bits, so a fast hash is enough and allows lookup by hash.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # What the key may do (access.roles): "owner" (everything) or "office" (the daily work:
    # not keys, users, settings or compliance policy). Keys made before roles are owners'.
    role: Mapped[str] = mapped_column(String(8), default="owner", server_default="owner")

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys")
