"""Alert channels of a company, the alerts raised, and their deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId

WECOM, DINGTALK, WEBHOOK = "wecom", "dingtalk", "webhook"
KINDS = (WECOM, DINGTALK, WEBHOOK)

# What the office hears about. A channel takes all of them unless it names some.
EVENTS = {
    "booking.new": "新预约",
    "complaint": "投诉",
    "rating.low": "差评",
    "reply.waiting": "回复超时未处理",
    "campaign.finished": "营销活动已发完",
    "visit.reminder": "明日上门提醒",
    "provider.failing": "短信通道发送失败",
    "test": "测试消息",
}

PENDING, SENT, FAILED = "pending", "sent", "failed"


class AlertChannel(Base):
    __tablename__ = "alert_channels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(String(500))
    # DingTalk's signing secret (加签), or the key of a generic webhook's HMAC signature.
    secret: Mapped[str | None] = mapped_column(String(200), default=None)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every event
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column()


class Alert(Base):
    """One event the office should hear about, raised once per ``dedupe_key``."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dedupe_key"),
        Index("ix_alerts_tenant_newest", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500), default=None)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column()


class AlertDelivery(Base):
    """An alert on its way to one channel: tried until it is taken, or given up with the
    reason, which the console's delivery log shows."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("alert_channels.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(8), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
