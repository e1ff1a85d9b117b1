"""Erasing one customer (PIPL, Art. 47): their personal information goes, the counts stay.

The customer row is kept, scrubbed, so the company's figures (visits, messages sent,
bookings, conversion) still add up; everything that could name or reach the person goes:
name, number, notes, tags, message texts and numbers, replies, consent evidence and
signatures, booking notes, and every photo, clip and report file of their visits from
storage. Free text elsewhere that mentions them (alerts, the audit log, import reports)
has the name and number blanked. The audit log records that it was done and by whom.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from access.models import AuditEntry
from alerts.models import Alert
from bookings.models import Booking
from campaigns.models import CampaignOccurrence
from compliance.models import (
    CaptureConsent,
    ComplianceDecision,
    ConsentRecord,
    MarketingSend,
    Suppression,
)
from customers import service as customers
from customers.models import DONE, FAILED, INTERRUPTED, Customer, ImportJob, ImportJobRow
from huifang import storage
from media.models import Media, ResumableUpload
from messaging.models import InboundMessage, Message, MessageEvent
from privacy import files
from reports.models import Report
from tenancy.models import Tenant
from visits.models import Visit

ERASED_NAME = "已删除客户"
BLANK = "[已删除]"


@dataclass(frozen=True)
class Erased:
    customer_id: int
    visits: int
    messages: int
    replies: int
    files: int


def placeholder(customer_id: int) -> str:
    """What stands for an erased customer's number: unique in the company, reaches no one."""
    return f"erased-{customer_id}"


def needles(customer: Customer) -> list[str]:
    """The spellings of the customer's name and number that free text may hold."""
    found = {customer.phone}
    try:
        number = phonenumbers.parse(customer.phone)
        found.add(str(number.national_number))
        found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    except phonenumbers.NumberParseException:
        pass
    if len(customer.name.strip()) >= 2:
        found.add(customer.name.strip())
    return sorted((n for n in found if n), key=len, reverse=True)


def scrub(value: Any, words: list[str]) -> Any:
    """``value`` (text, or JSON of lists and dicts) with each of ``words`` blanked."""
    if isinstance(value, str):
        for word in words:
            value = value.replace(word, BLANK)
        return value
    if isinstance(value, list):
        return [scrub(v, words) for v in value]
    if isinstance(value, dict):
        return {scrub(k, words): scrub(v, words) for k, v in value.items()}
    return value


def erase_customer(
    *, session: Session, tenant: Tenant, customer_id: int, now: dt.datetime, actor: Actor | None
) -> Erased:
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    tid, cid, phone = tenant.id, customer.id, customer.phone
    words = needles(customer)
    gone = placeholder(cid)

    # Files first: every photo, clip and report file of their visits, and the signatures.
    visit_ids = list(
        session.scalars(select(Visit.id).where(Visit.tenant_id == tid, Visit.customer_id == cid))
    )
    removed = 0
    for visit_id in visit_ids:
        removed += files.delete_visit_files(session=session, visit_id=visit_id, now=now)
    for visit in session.scalars(select(Visit).where(Visit.id.in_(visit_ids))):
        visit.notes = None
    for media in session.scalars(select(Media).where(Media.visit_id.in_(visit_ids))):
        media.note, media.original_name = None, None
    for upload in session.scalars(
        select(ResumableUpload).where(ResumableUpload.visit_id.in_(visit_ids))
    ):
        upload.note, upload.filename = None, None
    for report in session.scalars(select(Report).where(Report.visit_id.in_(visit_ids))):
        report.snapshot = scrub(report.snapshot, words)
    for capture in session.scalars(
        select(CaptureConsent).where(
            CaptureConsent.tenant_id == tid, CaptureConsent.customer_id == cid
        )
    ):
        if capture.signature_path:
            storage.remove(capture.signature_path)
            removed += 1
        capture.signature_path = None
        capture.evidence = BLANK
        capture.withdraw_evidence = None
        capture.withdrawn_at = capture.withdrawn_at or now

    # Messages: the counts stay, the words and numbers go.
    messages = list(
        session.scalars(select(Message).where(Message.tenant_id == tid, Message.customer_id == cid))
    )
    for message in messages:
        message.body, message.text, message.media_urls = "", None, []
        message.status_detail = scrub(message.status_detail, words)
    if messages:
        for event in session.scalars(
            select(MessageEvent).where(MessageEvent.message_id.in_([m.id for m in messages]))
        ):
            event.detail = scrub(event.detail, words)
    replies = list(
        session.scalars(
            select(InboundMessage).where(
                InboundMessage.tenant_id == tid,
                or_(InboundMessage.customer_id == cid, InboundMessage.phone == phone),
            )
        )
    )
    for reply in replies:
        reply.phone, reply.body, reply.normalized = gone, "", ""
        reply.resolution = scrub(reply.resolution, words)

    # The ledgers keep their rows (and so their counts), not the number or the evidence.
    for consent in session.scalars(
        select(ConsentRecord).where(
            ConsentRecord.tenant_id == tid,
            or_(ConsentRecord.customer_id == cid, ConsentRecord.phone == phone),
        )
    ):
        consent.phone, consent.evidence = gone, BLANK
        consent.revoke_evidence = None
        if consent.revoked_at is None:
            consent.revoked_at, consent.revoke_source = now, "api"
    for suppression in session.scalars(
        select(Suppression).where(Suppression.tenant_id == tid, Suppression.phone == phone)
    ):
        suppression.phone, suppression.detail = gone, None
    for sent in session.scalars(
        select(MarketingSend).where(MarketingSend.tenant_id == tid, MarketingSend.phone == phone)
    ):
        sent.phone = gone
    for decision in session.scalars(
        select(ComplianceDecision).where(
            ComplianceDecision.tenant_id == tid,
            or_(ComplianceDecision.customer_id == cid, ComplianceDecision.phone == phone),
        )
    ):
        decision.phone = gone
        decision.detail = scrub(decision.detail, words)
    for booking in session.scalars(
        select(Booking).where(Booking.tenant_id == tid, Booking.customer_id == cid)
    ):
        booking.note = None
        booking.decline_reason = scrub(booking.decline_reason, words)
    for occurrence in session.scalars(
        select(CampaignOccurrence).where(
            CampaignOccurrence.tenant_id == tid, CampaignOccurrence.customer_id == cid
        )
    ):
        occurrence.detail = scrub(occurrence.detail, words)

    # Imports: their report rows, and the uploaded file itself once the import is over.
    rows = list(
        session.scalars(
            select(ImportJobRow).where(
                ImportJobRow.tenant_id == tid,
                or_(ImportJobRow.customer_id == cid, ImportJobRow.phone == phone),
            )
        )
    )
    for import_row in rows:
        import_row.phone = None
        import_row.reason = scrub(import_row.reason, words)
    job_ids = {r.job_id for r in rows}
    if job_ids:
        for job in session.scalars(
            select(ImportJob).where(
                ImportJob.id.in_(job_ids), ImportJob.status.in_((DONE, FAILED, INTERRUPTED))
            )
        ):
            job.data = None

    # Free text that may mention them: alerts and earlier audit entries.
    for alert in session.scalars(select(Alert).where(Alert.tenant_id == tid)):
        alert.title = scrub(alert.title, words)
        alert.text = scrub(alert.text, words)
        alert.link = scrub(alert.link, words)
        alert.facts = scrub(alert.facts, words)
    for entry in session.scalars(
        select(AuditEntry).where(AuditEntry.tenant_id == tid).execution_options(yield_per=500)
    ):
        target = scrub(entry.target, words)
        detail = scrub(entry.detail, words)
        if target != entry.target or detail != entry.detail:
            entry.target, entry.detail = target, detail

    # Nothing more is sent to the row that stays: its placeholder is on the suppression list.
    session.add(
        Suppression(
            tenant_id=tid,
            phone=gone,
            signature=tenant.signature,
            reason="erased",
            detail=None,
            created_at=now,
        )
    )

    # The customer row last: kept for the counts, nothing left that names them.
    customer.name, customer.phone = ERASED_NAME, gone
    customer.region = customer.city = customer.notes = customer.language = None
    customer.tag_rows = []
    session.flush()
    result = Erased(
        customer_id=cid,
        visits=len(visit_ids),
        messages=len(messages),
        replies=len(replies),
        files=removed,
    )
    audit.record(
        session,
        actor,
        "customer.erased",
        f"customer:{cid}",
        {
            "visits": result.visits,
            "messages": result.messages,
            "replies": result.replies,
            "files_deleted": result.files,
        },
        tenant_id=tid,
    )
    return result


def delete_customer(
    *, session: Session, tenant: Tenant, customer_id: int, now: dt.datetime
) -> None:
    """Delete a customer with their visits, and the files of those visits from storage."""
    customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    for visit_id in session.scalars(
        select(Visit.id).where(Visit.tenant_id == tenant.id, Visit.customer_id == customer_id)
    ):
        files.delete_visit_files(session=session, visit_id=visit_id, now=now)
    for capture in session.scalars(
        select(CaptureConsent).where(
            CaptureConsent.tenant_id == tenant.id, CaptureConsent.customer_id == customer_id
        )
    ):
        storage.remove(capture.signature_path)
        capture.signature_path = None
    customers.delete_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)


__all__ = ["Erased", "delete_customer", "erase_customer", "needles", "scrub"]
