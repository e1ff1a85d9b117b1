"""Conversion per report: GET /v1/reports/conversion from reports really sent, clicked, booked.

The data is made the way it happens: a report built from a processed photo and sent by
``send_report`` through the outbox (console provider), the Book button's link opened with
``GET /b/{report token}``, a time picked with ``POST /b/{token}``, a "1" reply simulated.
The routes read the clock through ``messaging.api.utcnow``, ``messaging.inbound.utcnow``
and ``bookings.pages.utcnow``, which the tests hold at a fixed daytime instant (quiet
hours are 21:00–08:00 in Shanghai).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from bookings import links
from bookings import pages as booking_pages
from bookings import service as booking
from bookings.models import Booking
from customers import service as customers
from huifang.errors import Invalid
from media import service as media_service
from messaging import api as messaging_api
from messaging import inbound
from messaging import service as outbox
from messaging.models import FAILED, PROVIDER_REFUSED, Message
from messaging.providers.console import ConsoleProvider
from reports import attribution
from reports import service as reports
from reports.sending import send_report
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg, upload
from visits import service as visits

MONDAY_10_CN = dt.datetime(2026, 11, 16, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai
URL = "/v1/reports/conversion"


class Clock:
    """The time the public routes see; tests move it forward."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fixed = Clock(MONDAY_10_CN)
    monkeypatch.setattr(messaging_api, "utcnow", fixed)
    monkeypatch.setattr(inbound, "utcnow", fixed)  # simulated replies (take_reply)
    monkeypatch.setattr(booking_pages, "utcnow", fixed)
    monkeypatch.setattr(booking, "HORIZON_DAYS", 3)  # a short booking page
    return fixed


@dataclass
class Sent:
    visit_id: int
    customer_id: int
    staff_id: int
    token: str  # the report's token: /r/{token}, and its Book button /b/{token}
    message_id: int


_phones = iter(range(13800138001, 13800139000))


def _send(
    client,
    session,
    account,
    *,
    at: dt.datetime,
    service_type: str = "ac_cleaning",
    deliver: bool = True,
) -> Sent:
    """A visit with one processed photo whose report is sent (and delivered) at ``at``."""
    tenant = account.tenant
    customer = create_consenting_customer(
        session=session, tenant=tenant, name="王女士", phone=str(next(_phones))
    )
    staff = visits.create_staff(session=session, tenant=tenant, name="李秀兰")
    visit = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        staff_id=staff.id,
        service_type=service_type,
        areas=["客厅"],
        finished_at=at - dt.timedelta(hours=1),
    )
    photo = upload(
        client, account, visit.id, phone_jpeg(size=(600, 800)), phase="staff_report", area=None
    )
    assert photo.status_code == 202, photo.text
    media_service.process_media(session=session, media_id=photo.json()["id"])
    message, new = send_report(
        session=session, tenant=tenant, visit_id=visit.id, provider=ConsoleProvider(), now=at
    )
    assert new
    if deliver:
        assert outbox.queue_now(session=session, message_ids=[message.id], now=at)
        assert outbox.claim_for_send(session=session, message_id=message.id, now=at)
        done = outbox.deliver(
            session=session, message_id=message.id, provider=ConsoleProvider(), now=at
        )
        assert done is not None and done.status == "sent", done and done.status_reason
    report = reports.get_report(session=session, tenant_id=tenant.id, visit_id=visit.id)
    session.flush()
    return Sent(visit.id, customer.id, staff.id, report.token, message.id)


def _open(client, clock: Clock, sent: Sent, at: dt.datetime) -> str:
    clock.now = at
    page = client.get(f"/b/{sent.token}")
    assert page.status_code == 200, page.text
    return page.text


def _book(client, clock: Clock, sent: Sent, at: dt.datetime) -> None:
    page = _open(client, clock, sent, at)
    slot = re.search(r'name="slot" value="([^"]+)"', page)
    assert slot is not None, "the booking page offers a time"
    done = client.post(
        f"/b/{sent.token}",
        data={"slot": slot.group(1), "note": "周末在家", "address": "徐汇区漕溪北路1号"},
    )
    assert done.status_code == 200 and "预约已提交" in done.text


@pytest.fixture
def three(client, session, account, clock):
    """Sent, clicked twice and booked; sent and clicked once; sent only; and two that
    did not reach the customer (still waiting; failed by receipt)."""
    booked = _send(client, session, account, at=MONDAY_10_CN)
    clicked = _send(
        client,
        session,
        account,
        at=MONDAY_10_CN + dt.timedelta(hours=1),
        service_type="deep_cleaning",
    )
    quiet = _send(client, session, account, at=MONDAY_10_CN + dt.timedelta(hours=2))
    waiting = _send(
        client, session, account, at=MONDAY_10_CN + dt.timedelta(hours=3), deliver=False
    )
    _open(client, clock, booked, MONDAY_10_CN + dt.timedelta(minutes=20))
    _book(client, clock, booked, MONDAY_10_CN + dt.timedelta(minutes=90))
    _open(client, clock, clicked, MONDAY_10_CN + dt.timedelta(hours=4))
    _open(client, clock, waiting, MONDAY_10_CN + dt.timedelta(hours=5))  # never sent
    # Sent, then the provider's receipt said it failed: not a report the customer got.
    refused = _send(client, session, account, at=MONDAY_10_CN + dt.timedelta(hours=6))
    message = session.get(Message, refused.message_id)
    assert message is not None and message.sent_at is not None
    assert outbox.transition(
        session=session,
        message=message,
        status=FAILED,
        reason=PROVIDER_REFUSED,
        now=MONDAY_10_CN + dt.timedelta(hours=7),
    )
    return booked, clicked, quiet


def _at(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_figures_and_rows_follow_each_report_from_send_to_booking(client, session, account, three):
    booked, clicked, quiet = three
    answer = client.get(
        URL, headers=account.headers, params={"since": "2026-11-16", "until": "2026-11-16"}
    )
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert {
        k: found[k]
        for k in ("since", "until", "sent", "clicked", "clicks", "bookings", "booked", "conversion")
    } == {
        "since": "2026-11-16",
        "until": "2026-11-16",
        "sent": 3,
        "clicked": 2,
        "clicks": 3,
        "bookings": 1,
        "booked": 1,
        "conversion": 33.3,
    }
    rows = found["reports"]
    assert [r["visit_id"] for r in rows] == [booked.visit_id, clicked.visit_id, quiet.visit_id]

    first, second, third = rows
    made = session.scalars(select(Booking).where(Booking.tenant_id == account.tenant.id)).one()
    assert (first["customer_id"], first["staff_id"], first["staff_name"]) == (
        booked.customer_id,
        booked.staff_id,
        "李秀兰",
    )
    assert first["service_type"] == "ac_cleaning" and second["service_type"] == "deep_cleaning"
    assert (
        first["report_id"]
        == reports.get_report(
            session=session, tenant_id=account.tenant.id, visit_id=booked.visit_id
        ).id
    )
    assert _at(first["sent_at"]) == MONDAY_10_CN
    assert first["clicks"] == 2  # opened, then opened again more than an hour later to book
    assert _at(first["first_clicked_at"]) == MONDAY_10_CN + dt.timedelta(minutes=20)
    assert (first["bookings"], first["booking_id"], first["booking_status"]) == (
        1,
        made.id,
        "requested",
    )
    assert _at(first["booked_at"]) == made.created_at
    assert made.note == "周末在家" and made.source_id == str(booked.visit_id)

    assert _at(second["sent_at"]) == MONDAY_10_CN + dt.timedelta(hours=1)
    assert (second["clicks"], second["bookings"], second["booking_id"]) == (1, 0, None)
    assert _at(second["first_clicked_at"]) == MONDAY_10_CN + dt.timedelta(hours=4)
    assert (third["clicks"], third["first_clicked_at"], third["bookings"], third["booked_at"]) == (
        0,
        None,
        0,
        None,
    )


def test_a_one_reply_to_the_report_counts_as_its_booking(client, session, account, clock):
    sent = _send(client, session, account, at=MONDAY_10_CN)
    customer = customers.get_customer(
        session=session, tenant_id=account.tenant.id, customer_id=sent.customer_id
    )
    clock.now = MONDAY_10_CN + dt.timedelta(hours=2)
    replied = client.post(
        "/v1/replies/simulate", headers=account.headers, json={"phone": customer.phone, "text": "1"}
    )
    assert replied.status_code == 201, replied.text
    found = attribution.report_conversion(session=session, tenant=account.tenant, now=MONDAY_10_CN)
    assert (found.sent, found.clicked, found.booked, found.conversion) == (1, 0, 1, 100.0)
    [row] = found.reports
    by_reply = session.get(Booking, row.booking_id)
    assert by_reply is not None and by_reply.channel == "reply"
    assert by_reply.message_id == sent.message_id

    # Booking again from the page: two bookings, the row keeps the first one.
    _book(client, clock, sent, MONDAY_10_CN + dt.timedelta(hours=3))
    found = attribution.report_conversion(session=session, tenant=account.tenant, now=MONDAY_10_CN)
    assert (found.sent, found.clicked, found.bookings, found.booked) == (1, 1, 2, 1)
    [row] = found.reports
    assert (row.bookings, row.booking_id, row.booked_at) == (2, by_reply.id, by_reply.created_at)


def test_another_companys_reports_never_appear(
    client, session, account, other_account, clock, three
):
    booked, _, quiet = three
    theirs = _send(client, session, other_account, at=MONDAY_10_CN)
    _book(client, clock, theirs, MONDAY_10_CN + dt.timedelta(minutes=5))
    # Even a link and a booking of theirs naming one of our visits (ids are global, so
    # only a bug could make one) must not count for us.
    customer = customers.get_customer(
        session=session, tenant_id=other_account.tenant.id, customer_id=theirs.customer_id
    )
    stray = links.link_for(
        session=session,
        tenant=other_account.tenant,
        customer=customer,
        source_type="visit_report",
        source_id=str(quiet.visit_id),
        now=MONDAY_10_CN,
    )
    links.click(session=session, link=stray, visitor="phone", now=MONDAY_10_CN)
    session.add(
        Booking(
            tenant_id=other_account.tenant.id,
            customer_id=theirs.customer_id,
            channel="page",
            source_type="visit_report",
            source_id=str(quiet.visit_id),
        )
    )
    # And a message of theirs naming our visit must not show our visit to them.
    stray_message, _ = outbox.schedule(
        session=session,
        tenant=other_account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=str(quiet.visit_id),
        body="服务报告",
        due_at=MONDAY_10_CN,
    )
    assert outbox.queue_now(session=session, message_ids=[stray_message.id], now=MONDAY_10_CN)
    assert outbox.claim_for_send(session=session, message_id=stray_message.id, now=MONDAY_10_CN)
    outbox.deliver(
        session=session, message_id=stray_message.id, provider=ConsoleProvider(), now=MONDAY_10_CN
    )
    assert stray_message.status == "sent"
    session.flush()

    params = {"since": "2026-11-16", "until": "2026-11-16"}
    ours = client.get(URL, headers=account.headers, params=params).json()
    assert (ours["sent"], ours["clicked"], ours["clicks"], ours["bookings"]) == (3, 2, 3, 1)
    assert theirs.visit_id not in {r["visit_id"] for r in ours["reports"]}
    quiet_row = next(r for r in ours["reports"] if r["visit_id"] == quiet.visit_id)
    assert (quiet_row["clicks"], quiet_row["bookings"]) == (0, 0)
    assert theirs.customer_id not in {r["customer_id"] for r in ours["reports"]}

    other = client.get(URL, headers=other_account.headers, params=params).json()
    assert (other["sent"], other["clicked"], other["booked"]) == (1, 1, 1)
    assert [r["visit_id"] for r in other["reports"]] == [theirs.visit_id]
    assert booked.visit_id not in {r["visit_id"] for r in other["reports"]}


def test_the_period_selects_reports_by_the_local_day_they_were_sent(
    client, session, account, clock
):
    today = _send(client, session, account, at=MONDAY_10_CN)
    earlier = _send(client, session, account, at=MONDAY_10_CN - dt.timedelta(days=10))
    long_ago = _send(client, session, account, at=MONDAY_10_CN - dt.timedelta(days=95))
    # A click today on a report sent ten days ago belongs to that report.
    _open(client, clock, earlier, MONDAY_10_CN)

    def visits_in(**params: str) -> list[int]:
        answer = client.get(URL, headers=account.headers, params=params)
        assert answer.status_code == 200, answer.text
        return [r["visit_id"] for r in answer.json()["reports"]]

    assert visits_in(since="2026-11-06", until="2026-11-06") == [earlier.visit_id]
    assert visits_in(since="2026-11-07", until="2026-11-15") == []
    assert visits_in(since="2026-08-01", until="2026-11-16") == [
        long_ago.visit_id,
        earlier.visit_id,
        today.visit_id,
    ]
    assert visits_in(since="2026-11-17") == []

    # By default: the last 90 days up to today in the company's zone.
    found = attribution.report_conversion(
        session=session, tenant=account.tenant, now=MONDAY_10_CN + dt.timedelta(days=1)
    )
    assert (found.since, found.until) == (dt.date(2026, 8, 20), dt.date(2026, 11, 17))
    assert (found.until - found.since).days + 1 == attribution.DEFAULT_DAYS
    assert [r.visit_id for r in found.reports] == [earlier.visit_id, today.visit_id]
    assert (found.sent, found.clicked, found.clicks) == (2, 1, 1)

    wrong = client.get(
        URL, headers=account.headers, params={"since": "2026-11-16", "until": "2026-11-15"}
    )
    assert wrong.status_code == 422 and "until" in wrong.json()["detail"]
    with pytest.raises(Invalid, match="366 days"):
        attribution.report_conversion(
            session=session, tenant=account.tenant, now=MONDAY_10_CN, since=dt.date(2025, 1, 1)
        )


def test_nothing_sent_is_no_conversion_rather_than_zero(client, account):
    found = client.get(
        URL, headers=account.headers, params={"since": "2026-11-16", "until": "2026-11-16"}
    ).json()
    assert (found["sent"], found["conversion"], found["reports"]) == (0, None, [])


@pytest.mark.parametrize("how", ["query", "accept"])
def test_csv_has_the_totals_then_a_line_per_report(client, account, three, how):
    booked, clicked, quiet = three
    params = {"since": "2026-11-16", "until": "2026-11-16"}
    headers = dict(account.headers)
    if how == "query":
        params["format"] = "csv"
    else:
        headers["Accept"] = "text/csv"
    answer = client.get(URL, headers=headers, params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert (
        'filename="report-conversion-2026-11-16-2026-11-16.csv"'
        in (answer.headers["content-disposition"])
    )
    text = answer.content.decode("utf-8")
    assert text.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    blank = lines.index([])
    totals = dict(lines[1:blank])
    assert lines[0] == ["metric", "value"]
    assert (
        totals["sent"],
        totals["clicked"],
        totals["clicks"],
        totals["bookings"],
        totals["booked"],
        totals["conversion_percent"],
    ) == ("3", "2", "3", "1", "1", "33.3")
    header, *rows = lines[blank + 1 :]
    assert header == list(attribution.TABLE_COLUMNS)
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [int(r["visit_id"]) for r in table] == [
        booked.visit_id,
        clicked.visit_id,
        quiet.visit_id,
    ]
    first = table[0]
    assert first["sent_at"] == "2026-11-16T10:00:00+08:00"  # the company's local time
    assert first["first_clicked_at"] == "2026-11-16T10:20:00+08:00"
    assert (first["staff_name"], first["clicks"], first["bookings"]) == ("李秀兰", "2", "1")
    assert first["booking_status"] == "requested" and first["booked_at"]
    assert (table[2]["clicks"], table[2]["booking_id"], table[2]["booked_at"]) == ("0", "", "")


def test_what_the_report_pages_saw_is_counted_per_report_and_for_the_company(
    client, account, three
):
    booked, clicked, quiet = three
    for _ in range(3):
        assert client.get(f"/r/{booked.token}").status_code == 200
    assert client.get(f"/r/{clicked.token}").status_code == 200
    for event in ("video_started", "video_ended", "book_pressed"):
        assert client.post(f"/r/{booked.token}/events", data={"event": event}).status_code == 204
    assert (
        client.post(f"/r/{clicked.token}/events", data={"event": "video_started"}).status_code
        == 204
    )
    long = client.get(f"/r/{clicked.token}/-/long-image", follow_redirects=False)
    assert long.status_code == 303
    found = client.get(
        URL, headers=account.headers, params={"since": "2026-11-16", "until": "2026-11-16"}
    ).json()
    assert {
        k: found[k]
        for k in ("opened", "opens", "video_started", "video_ended", "long_image", "book_pressed")
    } == {
        "opened": 2,
        "opens": 4,
        "video_started": 2,
        "video_ended": 1,
        "long_image": 1,
        "book_pressed": 1,
    }
    rows = {r["visit_id"]: r for r in found["reports"]}
    first = rows[booked.visit_id]
    assert (first["opens"], first["video_ended"], first["book_pressed"]) == (3, 1, 1)
    assert first["first_opened_at"] is not None
    assert (rows[clicked.visit_id]["opens"], rows[clicked.visit_id]["long_image"]) == (1, 1)
    assert rows[quiet.visit_id]["opens"] == 0 and rows[quiet.visit_id]["first_opened_at"] is None
    csv_text = client.get(
        URL,
        headers=account.headers,
        params={"since": "2026-11-16", "until": "2026-11-16", "format": "csv"},
    ).content.decode("utf-8")
    assert "\nopens,4" in csv_text.replace("\r\n", "\n")
