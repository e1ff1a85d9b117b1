"""Everything held about one customer, as one ZIP a person can read (PIPL, Art. 45).

``index.html`` says in Chinese what is inside, kind by kind; ``data.json`` holds every
record whole; ``files/`` the photos and clips of the customer's visits (the originals, or
the display copies once the originals are gone), the report long images and the drawn
signatures of their capture consents. Another customer's records never enter: every
query is by this customer's id or number within the company.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import inspect, or_, select
from sqlalchemy.orm import Session

from access.models import AuditEntry
from bookings.models import Booking, ShortLink
from campaigns.models import CampaignOccurrence
from compliance.models import CaptureConsent, ComplianceDecision, ConsentRecord, Suppression
from customers import service as customers
from customers.models import Customer
from huifang import storage
from huifang.templating import render
from media.models import Media
from messaging.models import InboundMessage, Message
from reports.models import Report
from tenancy.models import Tenant
from visits.models import Visit

# (key in data.json, 中文 heading) in the order the index shows them.
KINDS = (
    ("customer", "客户资料"),
    ("consents", "短信营销同意记录"),
    ("capture_consents", "拍照录像授权"),
    ("suppressions", "退订记录"),
    ("messages", "发送的短信（含状态记录）"),
    ("replies", "客户回复"),
    ("bookings", "预约"),
    ("booking_links", "预约链接"),
    ("visits", "服务记录"),
    ("media", "照片和视频"),
    ("reports", "服务报告"),
    ("campaign_occurrences", "营销提醒"),
    ("decisions", "发送审核记录"),
    ("audit", "操作记录"),
)


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def row(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A model row as plain JSON values (every column)."""
    return {
        attr.key: _value(getattr(obj, attr.key))
        for attr in inspect(obj).mapper.column_attrs
        if attr.key not in skip
    }


@dataclass
class Gathered:
    customer: Customer
    records: dict[str, list[dict[str, Any]]]
    files: list[tuple[str, str]] = field(default_factory=list)  # (stored name, name in ZIP)


def gather(*, session: Session, tenant: Tenant, customer_id: int) -> Gathered:
    """Every record of the customer in the company, and the files that go with them."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    tid, cid, phone = tenant.id, customer.id, customer.phone
    records: dict[str, list[dict[str, Any]]] = {}
    files: list[tuple[str, str]] = []
    records["customer"] = [row(customer) | {"tags": list(customer.tags)}]

    def all_of(stmt: Any) -> list[Any]:
        return list(session.scalars(stmt))

    def rows_of(model: Any, *where: Any) -> list[dict[str, Any]]:
        """The company's rows of ``model`` matching ``where``, oldest first, as JSON."""
        return [
            row(r)
            for r in all_of(select(model).where(model.tenant_id == tid, *where).order_by(model.id))
        ]

    records["consents"] = rows_of(
        ConsentRecord, or_(ConsentRecord.customer_id == cid, ConsentRecord.phone == phone)
    )
    captures = all_of(
        select(CaptureConsent)
        .where(CaptureConsent.tenant_id == tid, CaptureConsent.customer_id == cid)
        .order_by(CaptureConsent.id)
    )
    records["capture_consents"] = []
    for capture in captures:
        item = row(capture)
        if capture.signature_path:
            name = f"files/signatures/capture-consent-{capture.id}.png"
            files.append((capture.signature_path, name))
            item["signature_file"] = name
        records["capture_consents"].append(item)
    records["suppressions"] = rows_of(Suppression, Suppression.phone == phone)
    messages = all_of(
        select(Message)
        .where(Message.tenant_id == tid, Message.customer_id == cid)
        .order_by(Message.id)
    )
    records["messages"] = [row(m) | {"history": [row(e) for e in m.events]} for m in messages]
    records["replies"] = rows_of(
        InboundMessage, or_(InboundMessage.customer_id == cid, InboundMessage.phone == phone)
    )
    records["bookings"] = rows_of(Booking, Booking.customer_id == cid)
    records["booking_links"] = rows_of(ShortLink, ShortLink.customer_id == cid)
    visits = all_of(
        select(Visit).where(Visit.tenant_id == tid, Visit.customer_id == cid).order_by(Visit.id)
    )
    visit_ids = [v.id for v in visits]
    records["visits"] = [row(v) for v in visits]
    records["media"] = []
    media_rows = (
        all_of(select(Media).where(Media.visit_id.in_(visit_ids)).order_by(Media.id))
        if visit_ids
        else []
    )
    for media in media_rows:
        item = row(media, skip=("original_path",))
        item["renditions"] = [row(r, skip=("path", "token")) for r in media.renditions]
        source = None
        if media.original_path and media.original_deleted_at is None:
            source = media.original_path
        else:
            display = next((r for r in media.renditions if r.kind in ("display", "video")), None)
            if display is not None and media.renditions_deleted_at is None:
                source = display.path
        if source is not None:
            name = f"files/visit-{media.visit_id}/media-{media.id}{PurePosixPath(source).suffix}"
            files.append((source, name))
            item["file"] = name
        records["media"].append(item)
    reports = (
        all_of(select(Report).where(Report.visit_id.in_(visit_ids)).order_by(Report.id))
        if visit_ids
        else []
    )
    records["reports"] = []
    for report in reports:
        item = row(report, skip=("snapshot", "long_path", "recap_path", "recap_poster_path"))
        if report.media_deleted_at is None and report.long_path:
            name = f"files/visit-{report.visit_id}/report-long-image.jpg"
            files.append((report.long_path, name))
            item["long_image_file"] = name
        records["reports"].append(item)
    records["campaign_occurrences"] = rows_of(
        CampaignOccurrence, CampaignOccurrence.customer_id == cid
    )
    records["decisions"] = rows_of(
        ComplianceDecision,
        or_(ComplianceDecision.customer_id == cid, ComplianceDecision.phone == phone),
    )
    records["audit"] = rows_of(AuditEntry, AuditEntry.target == f"customer:{cid}")
    return Gathered(customer=customer, records=records, files=files)


def _present(files: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stored files that are there (a deleted one is listed in data.json, not zipped)."""
    found = []
    for stored, name in files:
        try:
            there = storage.exists(stored)
        except ValueError:  # not a stored file name
            continue
        if there:
            found.append((stored, name))
    return found


def write_zip(
    *, session: Session, tenant: Tenant, customer_id: int, now: dt.datetime
) -> tuple[Path, str]:
    """The export as a ZIP in a temporary file (the caller removes it) and its file name.

    Files are copied in from storage one by one (no clip is held in memory whole)."""
    gathered = gather(session=session, tenant=tenant, customer_id=customer_id)
    present = _present(gathered.files)
    included = {name for _, name in present}
    counts = [(key, label, len(gathered.records[key])) for key, label in KINDS]
    index = render(
        "privacy",
        "export_index.html",
        company=tenant.name,
        customer=gathered.customer,
        generated=now,
        counts=counts,
        records=gathered.records,
        files=sorted(included),
    )
    document = {
        "format": "huifang-customer-export/1",
        "company": tenant.name,
        "generated_at": now.isoformat(),
        "customer_id": gathered.customer.id,
        "counts": {key: n for key, _, n in counts},
        **gathered.records,
    }
    fd, tmp = tempfile.mkstemp(prefix="huifang-export-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("index.html", index)
            archive.writestr(
                "data.json", json.dumps(document, ensure_ascii=False, indent=2, default=str)
            )
            for stored, name in present:  # streamed from storage (local disk or bucket)
                with archive.open(zipfile.ZipInfo(name, now.timetuple()[:6]), "w") as member:
                    for chunk in storage.backend().open(stored):
                        member.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    filename = f"customer-{gathered.customer.id}-{now:%Y%m%d}.zip"
    return Path(tmp), filename
