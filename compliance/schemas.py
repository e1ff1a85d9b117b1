from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from huifang.fields import Instant

ConsentSource = Literal["in_person", "web_form", "reply", "import", "api"]


class ConsentCreate(BaseModel):
    source: ConsentSource = Field(description="How the customer agreed.")
    evidence: str = Field(min_length=1, max_length=2000,
                          description="What proves it: form id, signed sheet, reply text.")
    granted_at: Instant | None = Field(default=None, description="Defaults to now.")


class ConsentRevoke(BaseModel):
    source: ConsentSource = "api"
    evidence: str | None = Field(default=None, max_length=2000)


class ConsentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int | None
    phone: str
    source: str
    evidence: str
    granted_at: dt.datetime
    recorded_at: dt.datetime
    revoked_at: dt.datetime | None
    revoke_source: str | None
    revoke_evidence: str | None


class OptOut(BaseModel):
    detail: str | None = Field(default=None, max_length=2000,
                               examples=["客户来电要求不再发送短信"])


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    marketing_cap: int
    cap_window_days: int
    window_start: str
    window_end: str
    opt_out_footer: str
    consent_retention_days: int


class PolicyUpdate(BaseModel):
    marketing_cap: int | None = Field(default=None, ge=0, le=30)
    cap_window_days: int | None = Field(default=None, ge=1, le=365)
    window_start: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                                     examples=["08:00"])
    window_end: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$",
                                   examples=["21:00"])
    opt_out_footer: str | None = Field(default=None, min_length=2, max_length=20,
                                       examples=["回复T退订", "拒收请回复R"])
    consent_retention_days: int | None = Field(default=None, ge=1, le=3650)
