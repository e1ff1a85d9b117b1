from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class MessageEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: str
    reason: str | None
    detail: str | None
    applied: bool
    at: dt.datetime


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int
    channel: str
    category: str
    source_type: str
    source_id: str
    body: str
    text: str | None
    media_urls: list[str]
    status: str
    status_reason: str | None
    status_detail: str | None
    due_at: dt.datetime
    attempts: int
    provider: str | None
    provider_message_id: str | None
    sent_at: dt.datetime | None
    events: list[MessageEventRead]
