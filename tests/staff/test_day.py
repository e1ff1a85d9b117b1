"""A staff member's day through /v1, on SQLite and PostgreSQL: the visits ahead in the
company's time zone, what each area still needs, starting and finishing a visit."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from media import service as media_service
from messaging.models import Message
from staff import day as staff_day
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg, upload
from visits import service as visits


@pytest.fixture
def people(session, account):
    customer = create_consenting_customer(
        session=session,
        tenant=account.tenant,
        name="王女士",
        phone="13800138000",
        region="浦东新区",
    )
    staff = visits.create_staff(session=session, tenant=account.tenant, name="李秀兰")
    other = visits.create_staff(session=session, tenant=account.tenant, name="张师傅")
    return customer, staff, other


def _visit(session, account, customer, staff, at: dt.datetime | None, **kwargs):
    kwargs.setdefault("areas", ["客厅", "厨房"])
    return visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        staff_id=staff.id,
        service_type="deep_cleaning",
        scheduled_at=at,
        **kwargs,
    )


def test_the_days_ahead_follow_the_company_calendar(session, account, people):
    customer, staff, other = people
    # 17:00 UTC is 01:00 the next day in Shanghai: "today" is 7 December there.
    now = dt.datetime(2026, 12, 6, 17, 0, tzinfo=dt.UTC)
    just_after_midnight = _visit(
        session, account, customer, staff, dt.datetime(2026, 12, 6, 16, 30, tzinfo=dt.UTC)
    )
    tomorrow = _visit(
        session,
        account,
        customer,
        staff,
        dt.datetime(2026, 12, 8, 6, 0, tzinfo=dt.UTC),
        notes="带梯子",
    )
    _visit(
        session, account, customer, staff, dt.datetime(2026, 12, 6, 15, 30, tzinfo=dt.UTC)
    )  # 23:30 on the 6th: yesterday
    _visit(
        session, account, customer, staff, dt.datetime(2026, 12, 10, 1, 0, tzinfo=dt.UTC)
    )  # the 10th: past three days
    _visit(
        session, account, customer, other, dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
    )  # someone else's
    _visit(session, account, customer, staff, None)  # not scheduled

    day = staff_day.schedule(session=session, tenant=account.tenant, staff_id=staff.id, now=now)
    assert day.today == dt.date(2026, 12, 7) and day.timezone == "Asia/Shanghai"
    assert [v.visit_id for v in day.visits] == [just_after_midnight.id, tomorrow.id]
    first, second = day.visits
    assert (first.local_date, first.local_time) == (dt.date(2026, 12, 7), "00:30")
    assert (second.local_date, second.local_time) == (dt.date(2026, 12, 8), "14:00")
    assert (first.customer_name, first.customer_region) == ("王女士", "浦东新区")
    assert first.service_label == "深度保洁" and second.notes == "带梯子"
    assert [a.area for a in first.progress.areas] == ["客厅", "厨房"]
    assert first.progress.areas[0].missing == ["before", "after", "clip"]

    week = staff_day.schedule(
        session=session, tenant=account.tenant, staff_id=staff.id, now=now, days=7
    )
    assert len(week.visits) == 3


def test_the_schedule_route_and_its_bounds(client, session, account, people):
    customer, staff, _ = people
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    visit = _visit(session, account, customer, staff, soon)
    response = client.get(f"/v1/staff/{staff.id}/schedule?days=14", headers=account.headers)
    assert response.status_code == 200, response.text
    assert visit.id in [v["visit_id"] for v in response.json()["visits"]]
    too_many = client.get(f"/v1/staff/{staff.id}/schedule?days=15", headers=account.headers)
    assert too_many.status_code == 422 and "days" in too_many.json()["detail"]


def test_progress_says_what_each_area_still_needs(client, session, account, people):
    customer, staff, _ = people
    visit = _visit(session, account, customer, staff, dt.datetime.now(dt.UTC))
    before = upload(client, account, visit.id, phone_jpeg(color=(10, 20, 30)), area="客厅")
    upload(client, account, visit.id, phone_jpeg(color=(40, 50, 60)), phase="after", area="客厅")
    upload(client, account, visit.id, phone_jpeg(color=(70, 80, 90)), area="阳台")
    upload(client, account, visit.id, phone_jpeg(color=(1, 2, 3)), phase="staff_report", area=None)
    assert before.status_code == 202

    progress = client.get(f"/v1/visits/{visit.id}/progress", headers=account.headers).json()
    areas = {a["area"]: a for a in progress["areas"]}
    assert list(areas) == ["客厅", "厨房", "阳台"]
    assert areas["客厅"]["missing"] == ["clip"] and areas["客厅"]["processing"] == 2
    assert areas["厨房"]["missing"] == ["before", "after", "clip"]
    assert areas["阳台"]["required"] is False and areas["阳台"]["before"] == 1
    assert progress["staff_report"] == 1 and progress["processing"] == 4
    assert progress["can_finish"] is False and progress["status"] == "scheduled"


def _photos_for_every_area(client, session, account, visit) -> None:
    for n, area in enumerate(visit.areas):
        for phase in ("before", "after"):
            answer = upload(
                client,
                account,
                visit.id,
                phone_jpeg(size=(640, 480), color=(20 * n, 90, 60 if phase == "before" else 160)),
                phase=phase,
                area=area,
            )
            assert answer.status_code == 202, answer.text
            media_service.process_media(session=session, media_id=answer.json()["id"])
    session.flush()


def test_a_visit_finishes_once_every_area_has_before_and_after(client, session, account, people):
    customer, staff, _ = people
    visit = _visit(session, account, customer, staff, dt.datetime.now(dt.UTC))
    started = client.post(f"/v1/visits/{visit.id}/start", headers=account.headers)
    assert started.status_code == 200 and started.json()["started_at"]
    again = client.post(f"/v1/visits/{visit.id}/start", headers=account.headers)
    assert again.json()["started_at"] == started.json()["started_at"]

    answer = upload(client, account, visit.id, phone_jpeg(), area="客厅")
    media_service.process_media(session=session, media_id=answer.json()["id"])
    refused = client.post(f"/v1/visits/{visit.id}/finish", headers=account.headers)
    assert refused.status_code == 409
    assert "客厅 needs an after photo" in refused.json()["detail"]
    assert "厨房 needs a before photo and an after photo" in refused.json()["detail"]

    _photos_for_every_area(client, session, account, visit)
    progress = client.get(f"/v1/visits/{visit.id}/progress", headers=account.headers).json()
    assert progress["can_finish"] is True
    finished = client.post(f"/v1/visits/{visit.id}/finish", headers=account.headers)
    assert finished.status_code == 200, finished.text
    body = finished.json()
    assert body["review"] is True and body["message_id"] is None  # the office reviews first
    assert "/r/" in body["report_url"] and body["visit"]["finished_at"]
    assert not session.scalars(
        select(Message).where(
            Message.source_type == "visit_report", Message.source_id == str(visit.id)
        )
    ).all()
    page = client.get("/" + body["report_url"].split("://", 1)[1].split("/", 1)[1])
    assert page.status_code == 200 and "深度保洁" in page.text

    twice = client.post(f"/v1/visits/{visit.id}/finish", headers=account.headers)
    assert twice.status_code == 409 and "already finished" in twice.json()["detail"]
    late_start = client.post(f"/v1/visits/{visit.id}/start", headers=account.headers)
    assert late_start.status_code == 409


def test_a_company_that_does_not_review_sends_the_report_at_once(client, session, account, people):
    customer, staff, _ = people
    changed = client.patch("/v1/tenant", headers=account.headers, json={"report_review": False})
    assert changed.status_code == 200 and changed.json()["report_review"] is False
    visit = _visit(session, account, customer, staff, dt.datetime.now(dt.UTC), areas=["厨房"])
    _photos_for_every_area(client, session, account, visit)
    finished = client.post(f"/v1/visits/{visit.id}/finish", headers=account.headers)
    assert finished.status_code == 200, finished.text
    body = finished.json()
    assert body["review"] is False and body["message_id"]
    message = session.get(Message, body["message_id"])
    assert message.source_type == "visit_report" and message.source_id == str(visit.id)
    assert message.status == "queued"


def test_a_photo_still_processing_holds_the_finish(client, session, account, people):
    customer, staff, _ = people
    visit = _visit(session, account, customer, staff, dt.datetime.now(dt.UTC), areas=["客厅"])
    for phase in ("before", "after"):
        upload(
            client,
            account,
            visit.id,
            phone_jpeg(color=(5, 5, 200 if phase == "after" else 9)),
            phase=phase,
            area="客厅",
        )
    refused = client.post(f"/v1/visits/{visit.id}/finish", headers=account.headers)
    assert refused.status_code == 409 and "processed" in refused.json()["detail"]
    assert (
        client.get(f"/v1/visits/{visit.id}", headers=account.headers).json()["finished_at"] is None
    )
