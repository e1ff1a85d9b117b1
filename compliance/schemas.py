from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from huifang.fields import Id, Instant

ConsentSource = Literal["in_person", "web_form", "reply", "import", "api"]


class ConsentCreate(BaseModel):
    source: ConsentSource = Field(description="How the customer agreed.")
    evidence: str = Field(
        min_length=1,
        max_length=2000,
        description="What proves it: form id, signed sheet, reply text.",
    )
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
    detail: str | None = Field(default=None, max_length=2000, examples=["客户来电要求不再发送短信"])


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    marketing_cap: int
    cap_window_days: int
    window_start: str
    window_end: str
    opt_out_footer: str
    consent_retention_days: int
    capture_consent_retention_days: int = 183
    original_media_days: int = 365
    message_text_days: int = 730
    reply_days: int = 730
    decision_log_days: int = 365


class PolicyUpdate(BaseModel):
    marketing_cap: int | None = Field(default=None, ge=0, le=30)
    cap_window_days: int | None = Field(default=None, ge=1, le=365)
    window_start: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"]
    )
    window_end: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$", examples=["21:00"]
    )
    opt_out_footer: str | None = Field(
        default=None, min_length=2, max_length=20, examples=["回复T退订", "拒收请回复R"]
    )
    consent_retention_days: int | None = Field(default=None, ge=1, le=3650)
    capture_consent_retention_days: int | None = Field(default=None, ge=1, le=3650)
    original_media_days: int | None = Field(default=None, ge=1, le=3650)
    message_text_days: int | None = Field(default=None, ge=1, le=3650)
    reply_days: int | None = Field(default=None, ge=1, le=3650)
    decision_log_days: int | None = Field(default=None, ge=1, le=3650)


# --- the compliance screen: bulk consent, suppression list, ledger, audit log --------------


class BulkConsentCreate(BaseModel):
    """Consent for many customers on one piece of evidence: name them, or one import."""

    customer_ids: list[Id] | None = Field(
        default=None, max_length=20_000, description="The customers (at most 20,000)."
    )
    import_job_id: Id | None = Field(
        default=None, description="Every customer a finished import imported or matched."
    )
    source: ConsentSource = Field(default="in_person", description="How they agreed.")
    evidence: str = Field(
        min_length=1,
        max_length=2000,
        examples=["2026年服务合同第5条（纸质原件存于门店档案柜）"],
        description="What proves it, shared by every customer named.",
    )
    granted_at: Instant | None = Field(
        default=None, description="When the evidence was signed; defaults to now."
    )


class BulkConsentRow(BaseModel):
    customer_id: int
    outcome: Literal[
        "recorded", "already_consented", "refused_opted_out", "refused_revoked_later", "not_found"
    ]
    consent_id: int | None = None
    reason: str | None = None


class BulkConsentReport(BaseModel):
    recorded: int
    already_consented: int
    refused_opted_out: int
    refused_revoked_later: int
    not_found: int
    rows: list[BulkConsentRow]


class ConsentPage(BaseModel):
    items: list[ConsentRead]
    total: int
    limit: int
    offset: int


class SuppressionCreate(BaseModel):
    phone: str = Field(
        min_length=1,
        max_length=40,
        examples=["138 0013 8000"],
        description="Any common spelling of the number.",
    )
    detail: str | None = Field(default=None, max_length=2000, examples=["客户来电要求不再发送短信"])


class SuppressionRead(BaseModel):
    id: int
    phone: str
    reason: str
    detail: str | None
    created_at: dt.datetime
    lifted_at: dt.datetime | None
    customer_id: int | None
    customer_name: str | None


class SuppressionPage(BaseModel):
    items: list[SuppressionRead]
    total: int
    limit: int
    offset: int


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    actor_kind: str
    actor_id: int | None
    actor_name: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    total: int
    limit: int
    offset: int


CaptureScope = Literal["photos", "clips", "marketing"]
CaptureSource = Literal["in_person", "signature", "web_form", "api"]


class CaptureConsentCreate(BaseModel):
    source: CaptureSource = Field(description="How the customer agreed.")
    evidence: str = Field(
        min_length=1,
        max_length=2000,
        description="What proves it: the signed sheet, the form id, who agreed and how.",
    )
    scopes: list[CaptureScope] = Field(
        min_length=1,
        max_length=3,
        description="photos, clips, and marketing (the photos may be used in campaigns).",
    )
    granted_at: Instant | None = Field(default=None, description="Defaults to now.")
    signature_png: str | None = Field(
        default=None,
        max_length=700_000,
        description="The customer's signature as a base64 PNG (needed for source=signature).",
    )


class CaptureConsentWithdraw(BaseModel):
    evidence: str | None = Field(default=None, max_length=2000)


class CaptureConsentRead(BaseModel):
    id: int
    customer_id: int | None
    source: str
    evidence: str
    scopes: list[str]
    has_signature: bool
    recorded_by: str | None
    granted_at: dt.datetime
    recorded_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdraw_evidence: str | None

    @classmethod
    def of(cls, record: Any) -> CaptureConsentRead:
        return cls(
            id=record.id,
            customer_id=record.customer_id,
            source=record.source,
            evidence=record.evidence,
            scopes=record.scope_list,
            has_signature=record.signature_path is not None,
            recorded_by=record.recorded_by,
            granted_at=record.granted_at,
            recorded_at=record.recorded_at,
            withdrawn_at=record.withdrawn_at,
            withdraw_evidence=record.withdraw_evidence,
        )
