"""PIPL rights for one customer: the export ZIP holds all of theirs and nothing of another's;
erasure leaves no name, number, text or file of theirs anywhere, and the counts stand."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import secrets
import zipfile
from dataclasses import dataclass

import pytest
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from access.models import AuditEntry
from bookings.models import Booking
from bookings.service import book_from_reply
from compliance import service as compliance
from compliance.models import CaptureConsent, ConsentRecord, Suppression
from customers.models import Customer
from huifang import storage
from huifang.db import Base
from media import service as media_service
from media.models import Media
from messaging import inbound
from messaging import service as outbox
from messaging.models import InboundMessage, Message
from privacy import files
from reports.models import Report
from tests.factories import make_consent, make_customer, make_staff, make_visit
from tests.media.conftest import phone_jpeg, upload

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SECRET_NOTE = "门禁密码4321请勿外传"
SECRET_REPLY = "我家住幸福路88号3单元"


@dataclass
class Person:
    customer: Customer
    name: str
    phones: tuple[str, str]  # E.164 and national
    visit_id: int
    originals: list[bytes]
    signature: bytes


def _png(shade: int) -> bytes:
    image = Image.new("RGB", (320, 120), "white")
    image.paste((shade, shade, shade), (10, 60, 310, 66))
    image.putpixel((secrets.randbelow(320), 5), (secrets.randbelow(256), 0, 0))  # this run's
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _person(client, session, account, *, name: str, national: str, seed: int) -> Person:
    tenant = account.tenant
    customer = make_customer(
        session, tenant, name=name, phone=national, capture_consent=False, notes=SECRET_NOTE
    )
    signature = _png(seed)
    given = client.post(
        f"/v1/customers/{customer.id}/capture-consents",
        headers=account.headers,
        json={
            "source": "signature",
            "evidence": f"{name} 在手机上签名",
            "scopes": ["photos", "clips"],
            "signature_png": base64.b64encode(signature).decode(),
        },
    )
    assert given.status_code == 201, given.text
    make_consent(session, tenant, customer, now=NOW - dt.timedelta(days=1))
    visit = make_visit(
        session,
        tenant,
        customer=customer,
        staff=make_staff(session, tenant),
        areas=["客厅"],
        notes=f"{SECRET_NOTE} {name}",
    )
    originals = []
    for phase, color in (("before", (seed, 80, 60)), ("after", (200, seed, 240))):
        # A capture time of this run's own: no earlier test left the same bytes in storage.
        taken = dt.datetime(2026, 10, 1) + dt.timedelta(seconds=secrets.randbelow(2_400_000))
        data = phone_jpeg(color=color, taken=f"{taken:%Y:%m:%d %H:%M:%S}")
        sent = upload(client, account, visit.id, data, phase=phase, filename=f"{name}.jpg")
        assert sent.status_code == 202, sent.text
        media_service.process_media(session=session, media_id=sent.json()["id"])
        originals.append(data)
    session.flush()
    assert client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 201
    message, _ = outbox.schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=str(visit.id),
        body=f"{name}您好，您的服务报告已生成，如有问题请致电 {national}",
        due_at=NOW,
    )
    message.text = f"【测试家政】{message.body}"
    for text_, sid in ((SECRET_REPLY, "a"), ("1", "b"), ("T", "c")):
        inbound.receive(
            session=session,
            provider="console",
            provider_message_id=f"sm-{seed}-{sid}",
            on_book=book_from_reply,
            phone=customer.phone,
            text=text_,
            tenant=tenant,
            now=NOW,
        )
    session.flush()
    return Person(
        customer=customer,
        name=name,
        phones=(customer.phone, national),
        visit_id=visit.id,
        originals=originals,
        signature=signature,
    )


@pytest.fixture
def people(client, session, account):
    erased = _person(client, session, account, name="欧阳娜娜", national="13912345678", seed=30)
    kept = _person(client, session, account, name="司马相如", national="13787654321", seed=90)
    return erased, kept


def test_the_export_holds_every_kind_of_record_and_only_theirs(client, session, account, people):
    mine, other = people
    answer = client.get(f"/v1/customers/{mine.customer.id}/export", headers=account.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = archive.namelist()
    assert "index.html" in names and "data.json" in names
    data = json.loads(archive.read("data.json"))
    for kind in (
        "customer",
        "consents",
        "capture_consents",
        "suppressions",
        "messages",
        "replies",
        "bookings",
        "visits",
        "media",
        "reports",
    ):
        assert data[kind], f"the export has no {kind}"
    assert data["customer"][0]["name"] == mine.name
    assert any(m["history"] for m in data["messages"])
    assert {r["body"] for r in data["replies"]} >= {SECRET_REPLY, "1", "T"}
    assert len(data["media"]) == 2 and all("file" in m for m in data["media"])
    index = archive.read("index.html").decode()
    assert "个人信息导出" in index and mine.name in index and "照片和视频" in index

    # The files: both originals and the drawn signature, byte for byte.
    contents = {name: archive.read(name) for name in names}
    assert set(mine.originals) <= set(contents.values())
    assert mine.signature in contents.values()
    # Nothing of the other customer: no name, no number, no file.
    everything = b"".join(contents.values())
    for needle in (other.name, *other.phones):
        assert needle.encode() not in everything
        assert json.dumps(needle)[1:-1].encode() not in everything
    assert not (set(other.originals) | {other.signature}) & set(contents.values())


def test_only_an_owner_key_may_export_or_erase(client, session, account, people):
    from tenancy import service as tenancy

    mine, _ = people
    _, office_key = tenancy.create_api_key(session=session, tenant=account.tenant, role="office")
    session.flush()
    headers = {"Authorization": f"Bearer {office_key}"}
    assert (
        client.get(f"/v1/customers/{mine.customer.id}/export", headers=headers).status_code == 403
    )
    assert (
        client.post(f"/v1/customers/{mine.customer.id}/erase", headers=headers).status_code == 403
    )


def _dump(session: Session) -> str:
    """Every value of every row of every table, as text (JSON both escaped and not)."""
    parts: list[str] = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(text(f'SELECT * FROM "{table.name}"')):
            for value in row:
                if value is None:
                    continue
                if isinstance(value, bytes | memoryview):
                    parts.append(bytes(value).decode("utf-8", "replace"))
                elif isinstance(value, str):
                    parts.append(value)
                else:
                    parts.append(json.dumps(value, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _counts(session: Session, tenant_id: int) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(
            select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
        )
        or 0
        for model in (
            Customer,
            Message,
            InboundMessage,
            Booking,
            Media,
            Report,
            ConsentRecord,
            CaptureConsent,
            Suppression,
        )
    }


def _stored_hashes() -> set[str]:
    root = storage.root()
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_erasure_leaves_nothing_of_theirs(client, session, account, people):
    mine, other = people
    mine_files = files.visit_files(session=session, visit_id=mine.visit_id)
    other_files = files.visit_files(session=session, visit_id=other.visit_id)
    assert mine_files and all(storage.resolve(p).is_file() for p in mine_files)
    before = _counts(session, account.tenant.id)
    dump = _dump(session)
    for needle in (mine.name, *mine.phones, SECRET_REPLY):
        assert needle in dump, f"the test data should hold {needle} before erasure"

    answer = client.post(f"/v1/customers/{mine.customer.id}/erase", headers=account.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["files"] >= len(mine_files)

    dump = _dump(session)
    escaped = [json.dumps(n)[1:-1] for n in (mine.name,)]
    for needle in (mine.name, *mine.phones, *escaped):
        assert needle not in dump, f"{needle!r} is still in the database"
    # The other customer's record is whole (so the check above is not vacuous).
    assert other.name in dump and other.phones[0] in dump
    assert SECRET_REPLY in dump  # the other customer's reply

    assert not any(storage.resolve(p).exists() for p in mine_files)
    assert all(storage.resolve(p).is_file() for p in other_files)
    hashes = _stored_hashes()
    mine_hashes = {hashlib.sha256(b).hexdigest() for b in (*mine.originals, mine.signature)}
    assert not hashes & mine_hashes, "a file of the erased customer is still in storage"
    assert {hashlib.sha256(b).hexdigest() for b in other.originals} <= hashes

    after = _counts(session, account.tenant.id)
    # The row that stays is on the suppression list: nothing more is sent to it.
    assert after.pop("suppressions") == before.pop("suppressions") + 1
    assert after == before
    session.refresh(mine.customer)
    assert compliance.active_suppression(
        session=session, tenant=account.tenant, phone=mine.customer.phone
    )
    entry = session.scalars(
        select(AuditEntry).where(
            AuditEntry.tenant_id == account.tenant.id, AuditEntry.action == "customer.erased"
        )
    ).one()
    assert entry.target == f"customer:{mine.customer.id}"
    assert entry.actor_kind == "api_key"
    assert entry.detail["files_deleted"] >= len(mine_files)

    # The erased customer's number reaches no one, and their page still reads.
    read = client.get(f"/v1/customers/{mine.customer.id}", headers=account.headers)
    assert read.status_code == 200, read.text
    assert read.json()["name"] == "已删除客户"
