from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class ReplyRead(BaseModel):
    """A customer's reply with the rule that routed it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: int | None
    phone: str
    body: str
    provider: str
    received_at: dt.datetime
    in_reply_to_id: int | None
    route: str
    rule: str | None
    complaint: bool
    complaint_rule: str | None
    state: str
    owner: str | None
    assignee_id: int | None = None
    assigned_at: dt.datetime | None = None
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolution: str | None


class ReplySimulate(BaseModel):
    """A customer's reply, typed in by hand (embedded mode and the console provider only)."""

    phone: str = Field(min_length=3, max_length=32, examples=["13800138000"])
    text: str = Field(min_length=1, max_length=1600, examples=["T"])


class ReplyUpdate(BaseModel):
    """Work on an inbox item; fields left out stay as they are."""

    state: Literal["open", "handled"] | None = None
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Who is handling it (a complaint's owner).",
    )
    responded: bool | None = Field(
        default=None,
        description="True once the customer has heard back (starts no clock "
        "twice: the first time is kept).",
    )
    resolution: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="How it ended; setting it closes the item.",
    )


class RecoveryFigures(BaseModel):
    """Service recovery over a period: complaints and how fast they were handled."""

    since: dt.datetime
    until: dt.datetime
    complaints: int
    responded: int
    resolved: int
    open: int
    median_minutes_to_first_response: float | None
    median_minutes_to_resolution: float | None
    rebooked: int = Field(description="Complaining customers who booked again afterwards.")


class KeywordRuleCreate(BaseModel):
    route: Literal["opt_out", "opt_in", "help", "book", "other"]
    kind: Literal["exact", "pattern"] = "exact"
    value: str = Field(min_length=1, max_length=100, examples=["退"])


class KeywordRuleRead(KeywordRuleCreate):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: dt.datetime


# --- the settings screen: keyword tester and provider ---------------------------------------


class KeywordTest(BaseModel):
    """A reply to try; ``proposed`` is a rule not yet saved, tried after the saved ones."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000, examples=["帮我约下周三上午"])
    proposed: KeywordRuleCreate | None = None


class KeywordTestRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    text: str
    normalized: str = Field(description="The reply as the rules read it.")
    route: str
    route_label: str
    rule: str | None = Field(
        description="The deciding rule; tenant:<id> is the company's, "
        "proposed the rule being tried."
    )
    rule_label: str
    complaint: bool
    complaint_rule: str | None
    answer: str | None = Field(description="The automatic answer the customer would get.")
    what_happens: str


class ProviderAddressRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    purpose: str
    where: str
    url: str
    secret: bool


class ProviderCredentialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    variable: str
    is_set: bool


class ProviderSetupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    label: str
    supports_mms: bool
    max_body_chars: int
    rate_per_second: int | None
    credentials: list[ProviderCredentialRead] = Field(
        description="Whether each setting is present; values are never shown."
    )
    addresses: list[ProviderAddressRead] = Field(
        description="What to paste into the provider's console."
    )
    warnings: list[str]


class SmsTemplateCreate(BaseModel):
    code: str = Field(max_length=32, description="Aliyun's template code, e.g. SMS_123456789.")
    kind: str = Field(description="notification or marketing, as Aliyun approved it.")
    purpose: str = Field(
        description="What the template is for: one of the purposes GET /sms-templates lists."
    )
    text: str = Field(
        max_length=600, description="The approved text exactly, variables as ${name}."
    )
    signature: str | None = Field(
        default=None,
        max_length=16,
        description="The signature (签名) to send under, without 【】; default: the company's.",
    )


class SmsTemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    kind: str
    purpose: str
    label: str
    text: str
    signature: str
    variables: list[str]
    chars: int = Field(description="With the 【signature】 and every variable at 35 characters.")
    segments: int = Field(description="SMS billed: 70 characters in one, else 67 per segment.")
    created_at: dt.datetime


class SmsPurposeRead(BaseModel):
    purpose: str
    kind: str
    label: str
    variables: list[str]
    recorded: bool
    suggested: str = Field(description="A text to submit to Aliyun for approval (campaigns: ''.")


class SmsTemplatesRead(BaseModel):
    templates: list[SmsTemplateRead]
    purposes: list[SmsPurposeRead]
    required: bool = Field(description="Whether the configured provider sends only templates.")
