"""Schemas of the office's reply threads: a customer's replies and our messages in one line."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from huifang.fields import Id


class ResponseClock(BaseModel):
    """How long a reply (or booking) has waited for the office, against the company's target."""

    since: dt.datetime = Field(description="When it came in.")
    target_minutes: int = Field(description="The company's response target.")
    due_at: dt.datetime = Field(description="When the target runs out.")
    responded_at: dt.datetime | None = Field(
        description="When the customer first heard back (the clock stops there)."
    )
    minutes: int = Field(description="Minutes waited: until the response, or until now.")
    overdue: bool = Field(
        description="Waited past the target (answered late, or still unanswered after it)."
    )


class Routing(BaseModel):
    """What the keyword routing decided for a reply, and why, in the office's words."""

    route: str = Field(description="opt_out | opt_in | help | book | other")
    route_label: str
    rule: str | None = Field(description="The rule that matched (None: nothing did).")
    rule_label: str
    complaint: bool
    complaint_rule: str | None
    handled_automatically: bool = Field(
        description="Keyword replies are answered on arrival; the rest wait for a person."
    )


class ThreadItem(BaseModel):
    """One entry of a thread: the customer's reply (``in``) or our message (``out``)."""

    direction: Literal["in", "out"]
    id: int
    at: dt.datetime
    body: str
    # Replies
    routing: Routing | None = None
    state: str | None = None
    assignee_id: int | None = None
    owner: str | None = None
    assigned_at: dt.datetime | None = None
    first_response_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    clock: ResponseClock | None = None
    # Our messages
    category: str | None = None
    source_type: str | None = None
    status: str | None = None
    status_label: str | None = None
    status_reason: str | None = None
    reason_text: str | None = Field(
        default=None, description="Why it was held or stopped, in Chinese."
    )


class ThreadSummary(BaseModel):
    """A customer with replies, for the list of threads (latest reply first)."""

    customer_id: int
    customer_name: str
    phone: str
    last_reply_at: dt.datetime
    last_reply: str
    replies: int
    open_replies: int
    open_complaints: int


class Thread(BaseModel):
    customer_id: int
    customer_name: str
    phone: str
    items: list[ThreadItem] = Field(description="Oldest first.")


class AnswerCreate(BaseModel):
    """An answer typed in the console; it goes through the gate like any message."""

    body: str = Field(min_length=1, max_length=500, examples=["您好，明天上午师傅会联系您。"])
    reply_id: Id | None = Field(
        default=None,
        description="The reply being answered (its clock stops when the answer is accepted).",
    )
    category: Literal["service", "marketing"] = Field(
        default="service",
        description="service: about the customer's own visit or request; "
        "marketing: an offer (needs consent, counts against the cap).",
    )
    request_id: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The same id sent twice (a form posted twice) sends one message.",
    )


class AnswerRead(BaseModel):
    message_id: int
    status: str
    due_at: dt.datetime
    decision: str = Field(description="send | defer: what the gate says now.")
    notice: str = Field(description="What happens to it, in Chinese.")
    created: bool


class ReplyAssign(BaseModel):
    assignee_id: Id = Field(description="The office user (owner or office role) who handles it.")


class ReplyResolve(BaseModel):
    resolution: str = Field(
        min_length=1, max_length=2000, description="How it ended, in a sentence."
    )
