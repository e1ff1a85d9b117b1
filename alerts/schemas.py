from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.models import EVENTS

Event = Literal[
    "booking.new",
    "complaint",
    "rating.low",
    "reply.waiting",
    "campaign.finished",
    "provider.failing",
    "visit.reminder",
]
assert set(Event.__args__) == set(EVENTS) - {"test"}  # type: ignore[attr-defined]


class ChannelCreate(BaseModel):
    kind: Literal["wecom", "dingtalk", "webhook"] = Field(
        description="wecom: a WeCom group robot's address; dingtalk: a DingTalk robot's "
        "address (with its 加签 secret); webhook: any HTTPS endpoint, signed."
    )
    name: str = Field(default="", max_length=50)
    url: str = Field(min_length=8, max_length=500)
    secret: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "DingTalk's signing secret (SEC…), or the generic webhook's HMAC key (made for you "
            "when left out)."
        ),
    )
    events: list[Event] = Field(
        default_factory=list,
        max_length=10,
        description=("The events this channel takes; empty: all of them."),
    )


class ChannelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    name: str
    url: str
    secret: str | None
    events: list[str]
    active: bool
    created_at: dt.datetime


class DeliveryRead(BaseModel):
    id: int
    alert_id: int
    event: str
    title: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
