"""Each kind of data kept for the company's period (compliance policy), and no longer.

A daily job (privacy.tasks.enforce_retention) runs ``enforce`` for each company; the
console shows ``upcoming``: what goes in the next days, kind by kind, with the earliest date.

| kind | what goes | counted from |
|---|---|---|
| withdrawn message consents | the record | its revocation |
| withdrawn capture consents | the record and its signature image | its withdrawal |
| original photos and clips | the file (the media row says when) | its upload |
| message texts | body, text, pictures' links | the message's creation |
| replies | body | its arrival |
| the gate's decision log | the entry | the decision |

Report media have their own clock (reports.expiry) and are shown beside these.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.orm import Session

from compliance import service as compliance
from compliance.models import CaptureConsent, ComplianceDecision, ConsentRecord
from huifang import storage
from media.models import Media
from messaging.models import DEFERRED, QUEUED, SCHEDULED, SENDING, InboundMessage, Message
from reports import expiry
from reports.models import Report
from tenancy.models import Tenant

BATCH = 500
UNFINISHED = (SCHEDULED, QUEUED, SENDING, DEFERRED)  # a text still to go is never blanked


@dataclass(frozen=True)
class Upcoming:
    kind: str
    label: str  # 中文
    keep_days: int | None
    count: int
    first_at: dt.datetime | None


def _kinds(policy: Any) -> list[tuple[str, str, int, Any, Any, list[ColumnElement[bool]]]]:
    """(kind, 中文, days kept, model, the time it counts from, what is still there)."""
    return [
        (
            "consents",
            "撤回的短信营销同意记录",
            policy.consent_retention_days,
            ConsentRecord,
            ConsentRecord.revoked_at,
            [ConsentRecord.revoked_at.is_not(None)],
        ),
        (
            "capture_consents",
            "撤回的拍照录像授权（含签名）",
            policy.capture_consent_retention_days,
            CaptureConsent,
            CaptureConsent.withdrawn_at,
            [CaptureConsent.withdrawn_at.is_not(None)],
        ),
        (
            "originals",
            "照片和视频原件",
            policy.original_media_days,
            Media,
            Media.received_at,
            [Media.original_deleted_at.is_(None)],
        ),
        (
            "message_texts",
            "已发短信的内容",
            policy.message_text_days,
            Message,
            Message.created_at,
            [Message.body != "", Message.status.not_in(UNFINISHED)],
        ),
        (
            "replies",
            "客户回复的内容",
            policy.reply_days,
            InboundMessage,
            InboundMessage.received_at,
            [InboundMessage.body != ""],
        ),
        (
            "decisions",
            "发送审核记录",
            policy.decision_log_days,
            ComplianceDecision,
            ComplianceDecision.decided_at,
            [],
        ),
    ]


def _due(
    model: Any, since: Any, still: list[ColumnElement[bool]], tenant_id: int, before: dt.datetime
) -> Select[Any]:
    return select(model).where(model.tenant_id == tenant_id, since < before, *still)


def upcoming(
    *, session: Session, tenant_id: int, now: dt.datetime, within_days: int = 7
) -> list[Upcoming]:
    """What the daily job will delete in the next ``within_days`` days (overdue included)."""
    policy = compliance.policy_for(session=session, tenant_id=tenant_id)
    horizon = now + dt.timedelta(days=within_days)
    found = []
    for kind, label, days, model, since, still in _kinds(policy):
        cutoff = horizon - dt.timedelta(days=days)
        count, first = session.execute(
            select(func.count(), func.min(since)).where(
                model.tenant_id == tenant_id, since < cutoff, *still
            )
        ).one()
        found.append(
            Upcoming(
                kind=kind,
                label=label,
                keep_days=days,
                count=int(count),
                first_at=max(first + dt.timedelta(days=days), now) if first else None,
            )
        )
    reports = [
        r
        for r in session.scalars(
            select(Report).where(Report.tenant_id == tenant_id, Report.media_deleted_at.is_(None))
        )
        if expiry.media_due_at(r) < horizon
    ]
    found.append(
        Upcoming(
            kind="report_media",
            label="服务报告的照片、视频和长图",
            keep_days=None,
            count=len(reports),
            first_at=max(min(expiry.media_due_at(r) for r in reports), now) if reports else None,
        )
    )
    return found


def enforce(*, session: Session, tenant_id: int, now: dt.datetime) -> dict[str, int]:
    """Delete what has outlived the company's periods; how many of each kind (at most
    BATCH rows of the big kinds a day, so one run stays short)."""
    policy = compliance.policy_for(session=session, tenant_id=tenant_id)
    kinds = {kind[0]: kind for kind in _kinds(policy)}

    def due(kind: str, limit: int | None = BATCH) -> list[Any]:
        _, _, days, model, since, still = kinds[kind]
        stmt = _due(model, since, still, tenant_id, now - dt.timedelta(days=days))
        return list(session.scalars(stmt.limit(limit) if limit else stmt))

    done: dict[str, int] = {}
    done["consents"] = compliance.purge_expired_consents(
        session=session, now=now, tenant_id=tenant_id
    )
    captures = due("capture_consents", None)
    for capture in captures:
        storage.remove(capture.signature_path)
        session.delete(capture)
    done["capture_consents"] = len(captures)
    originals = due("originals")
    for media in originals:
        storage.remove(media.original_path)
        media.original_deleted_at = now
    done["originals"] = len(originals)
    messages = due("message_texts")
    for message in messages:
        message.body, message.text, message.media_urls = "", None, []
    done["message_texts"] = len(messages)
    replies = due("replies")
    for reply in replies:
        reply.body, reply.normalized = "", ""
    done["replies"] = len(replies)
    before = now - dt.timedelta(days=policy.decision_log_days)
    result: Any = session.execute(
        delete(ComplianceDecision).where(
            ComplianceDecision.tenant_id == tenant_id, ComplianceDecision.decided_at < before
        )
    )
    done["decisions"] = int(result.rowcount)
    session.flush()
    return done


def companies(*, session: Session) -> list[int]:
    return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
