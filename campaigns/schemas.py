from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from huifang.fields import Id


class MmsVariant(BaseModel):
    """The MMS version of the message; sent when the provider carries MMS and a picture is set."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=40, examples=["空调滤网该清洗了"])
    body: str = Field(min_length=1, max_length=4000)
    image_media_id: Id | None = Field(
        default=None, description="A photo uploaded to a visit; its MMS rendition is sent."
    )
    image_url: str | None = Field(
        default=None, max_length=500, description="Or an https:// picture the provider fetches."
    )


class CampaignCreate(BaseModel):
    """A campaign from scratch (rule and template) or from a preset (the rest overrides it)."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    preset: str | None = Field(default=None, max_length=64, examples=["ac_filter_quarterly"])
    rule: dict[str, Any] | None = Field(
        default=None,
        examples=[
            {
                "kind": "cadence",
                "service_type": "ac_cleaning",
                "every_days": 90,
                "catch_up_days": 14,
            }
        ],
    )
    audience: dict[str, Any] | None = Field(
        default=None, examples=[{"regions": ["上海"], "service_types": ["ac_cleaning"]}]
    )
    template: str | None = Field(default=None, max_length=4000)
    mms: MmsVariant | None = None
    service_type: str | None = Field(default=None, max_length=64)


class CampaignUpdate(BaseModel):
    """Fields left out stay as they are; a new rule, audience or text makes a new version."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    rule: dict[str, Any] | None = None
    audience: dict[str, Any] | None = None
    template: str | None = Field(default=None, max_length=4000)
    mms: MmsVariant | None = None
    service_type: str | None = Field(default=None, max_length=64)


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    preset: str | None
    rule: dict[str, Any]
    rule_text: str = Field(description="The rule in one line.")
    audience: dict[str, Any]
    service_type: str | None
    template: str
    mms: dict[str, Any] | None
    category: str
    status: str
    version: int
    activated_at: dt.datetime | None
    paused_at: dt.datetime | None
    materialized_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CampaignPage(BaseModel):
    items: list[CampaignRead]
    total: int
    limit: int
    offset: int


class PresetMms(BaseModel):
    subject: str
    body: str
    image_hint: str


class PresetRead(BaseModel):
    name: str
    title: str
    description: str
    rule: dict[str, Any]
    rule_text: str
    service_types: list[str]
    regions: list[str] = Field(description="Where it makes sense; a suggestion for the audience.")
    audience: str
    category: str
    sms_body: str
    mms: PresetMms


class PreviewRequest(BaseModel):
    customer_ids: list[Id] = Field(
        default_factory=list,
        max_length=10,
        description="Customers to preview; by default a few the campaign reaches.",
    )


class SampleCustomerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    phone: str
    region: str | None
    reachable: bool
    why_not: str | None


class AudienceCounts(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    matched: int = Field(description="Customers the filters and the rule select.")
    opted_out: int = Field(description="Of those, opted out: nothing may be sent.")
    without_consent: int = Field(description="Not opted out, but no marketing consent.")
    reachable: int = Field(description="Who will be scheduled.")
    sample: list[SampleCustomerRead]
    held: int = Field(
        0,
        description="Of the reachable, held now by an open complaint or low rating: "
        "the gate holds their marketing until the office resolves it.",
    )


class LintFindingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    part: str = Field(description="sms (the template) or mms (the MMS variant)")
    code: str
    severity: str
    message: str
    hint: str


class RenderedRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    body: str = Field(description="The template filled in for the customer.")
    text: str = Field(description="What the customer receives: signature, body, footer.")
    chars: int


class MessagePreviewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: int
    name: str
    sms: RenderedRead | None
    mms: RenderedRead | None
    problem: str | None


class OccurrenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    local_date: dt.date
    due_at: dt.datetime
    basis: str
    late_by_days: int
    caught_up: bool
    skipped: int
    reason: str | None


class ScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: int
    name: str
    timezone: str
    occurrences: list[OccurrenceRead]


class CampaignPreviewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    audience: AudienceCounts
    lint: list[LintFindingRead]
    can_activate: bool
    messages: list[MessagePreviewRead]
    schedules: list[ScheduleRead]


class LintRefusal(BaseModel):
    """422 from activation: the sentence, and every finding with what to do about it."""

    detail: str
    findings: list[LintFindingRead]


class CampaignResultsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    campaign_id: int
    name: str
    status: str
    version: int
    occurrences: dict[str, int]
    cancelled: dict[str, int]
    scheduled: int
    waiting: int
    sent: int
    delivered: int
    failed: int
    deferred: int
    unknown: int
    suppressed: dict[str, int]
    held_for_complaints: int = Field(
        0,
        description="Messages the gate held because the customer had an open complaint "
        "or low rating (suppressed: complaint_hold).",
    )
    customers_sent: int
    clicked: int
    clicks: int
    booked: int
    customers_booked: int
    conversion: float | None = Field(description="Customers who booked per customer sent to, %.")


class RetentionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    since: dt.date
    until: dt.date
    lookback_days: int
    active_at_start: int
    lost: int
    retained: int
    retention_rate: float | None
    served: int
    repeat_customers: int
    repeat_purchase_rate: float | None
    new_customers: int
    second_service: int
    second_service_conversion: float | None


class ReportConversionRowRead(BaseModel):
    """One report sent in the period; the booking is its first, ``bookings`` counts all."""

    model_config = ConfigDict(from_attributes=True)

    report_id: int | None
    visit_id: int
    customer_id: int
    service_type: str
    staff_id: int | None
    staff_name: str | None
    sent_at: dt.datetime
    clicks: int
    first_clicked_at: dt.datetime | None
    bookings: int
    booking_id: int | None
    booking_status: str | None
    booked_at: dt.datetime | None
    opens: int = Field(0, description="Times the report page was opened (counted by us).")
    first_opened_at: dt.datetime | None = None
    video_started: int = Field(0, description="Times the recap video was started.")
    video_ended: int = Field(0, description="Times the recap was watched to its end.")
    long_image: int = Field(0, description="Times the long image was opened (to save it).")
    book_pressed: int = Field(0, description="Times the page's Book button was pressed.")


class ReportConversionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    since: dt.date
    until: dt.date
    sent: int = Field(description="Reports first sent in the period.")
    clicked: int = Field(description="Reports whose booking link was opened at least once.")
    clicks: int
    bookings: int = Field(description="Bookings made from these reports (link or reply).")
    booked: int = Field(description="Reports with at least one booking.")
    conversion: float | None = Field(description="Reports booked per report sent, %.")
    reports: list[ReportConversionRowRead]
    opened: int = Field(0, description="Reports whose page was opened at least once.")
    opens: int = Field(0, description="Openings of these reports' pages in all.")
    video_started: int = Field(0, description="Reports whose recap video was started.")
    video_ended: int = Field(0, description="Reports whose recap was watched to the end.")
    long_image: int = Field(0, description="Reports whose long image was opened.")
    book_pressed: int = Field(0, description="Reports whose Book button was pressed.")


class PlumRainTable(BaseModel):
    """入梅 dates by region and year, e.g. {"上海": {"2026": "2026-06-15"}}."""

    table: dict[str, dict[int, dt.date]]


class PlumRainRead(PlumRainTable):
    fallback: str = Field(description="Where the table has no date: the almanac rule.")
    traditional: dict[int, dt.date] = Field(
        description="The almanac rule's dates, this year and next."
    )


# --- the campaign editor's lint and the charts' figures ----------------------------------------


class DraftMms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=40)
    body: str = Field(default="", max_length=4000)


class DraftLintRequest(BaseModel):
    """Texts being typed; nothing is saved."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        max_length=4000, examples=["{{ customer_name }}您好，空调该清洗了：{{ booking_link }}"]
    )
    mms: DraftMms | None = None
    category: Literal["marketing", "service"] | None = Field(
        default=None, description="By default the preset's, or marketing."
    )
    rule: dict[str, Any] | None = None
    preset: str | None = Field(default=None, max_length=64)


class TextEditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    start: int = Field(description="Offset in code points, line ends as \\n.")
    end: int
    old: str
    new: str


class FixRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    label: str = Field(description="What the fix does, in Chinese (a button's words).")
    edits: list[TextEditRead]
    result: str = Field(description="The whole text (template, or the MMS body) after it.")


class ExplainedFindingRead(LintFindingRead):
    sentence: str = Field(description="What is wrong and what to do, in Chinese.")
    fix: FixRead | None = Field(
        description="Edits that correct the text; none when the "
        "fix is elsewhere (e.g. the signature setting)."
    )


class DraftLintRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    findings: list[ExplainedFindingRead]
    errors: int
    warnings: int
    can_activate: bool
    rule_text: str | None


class WeekRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    start: dt.date = Field(description="The week's Monday, company's local date.")
    sent: int
    delivered: int = Field(description="Of the messages sent that week, delivered.")
    clicked: int = Field(description="Links first opened that week.")
    booked: int = Field(description="Bookings made that week from the campaign.")
    opted_out: int = Field(description="Opt-out replies to the campaign's messages.")


class WeeklyResultsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    campaign_id: int
    name: str
    timezone: str
    weeks: list[WeekRead]


class TrendPointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    month: dt.date
    since: dt.date
    until: dt.date
    retention_rate: float | None
    repeat_purchase_rate: float | None
    second_service_conversion: float | None
    active_at_start: int
    new_customers: int


class CompanyTrendRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    window_days: int
    lookback_days: int
    points: list[TrendPointRead]


class DraftAudienceRequest(BaseModel):
    """A draft's audience filters with its rule (or preset); nothing is saved."""

    model_config = ConfigDict(extra="forbid")

    audience: dict[str, Any] | None = Field(
        default=None, examples=[{"regions": ["上海"], "service_types": ["ac_cleaning"]}]
    )
    rule: dict[str, Any] | None = None
    preset: str | None = Field(default=None, max_length=64)
