from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class ErasureRead(BaseModel):
    customer_id: int
    visits: int = Field(description="Visits kept (as counts), their files deleted.")
    messages: int = Field(description="Messages kept (as counts), their texts and numbers removed.")
    replies: int
    files: int = Field(description="Stored files deleted.")


class UpcomingRead(BaseModel):
    kind: str
    label: str
    keep_days: int | None
    count: int = Field(description="How many go within the period asked for (overdue included).")
    first_at: dt.datetime | None = Field(description="When the first of them goes.")
