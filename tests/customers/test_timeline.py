"""A customer's timeline: every kind of event merged newest first, paged by cursor."""

from __future__ import annotations

import datetime as dt

import pytest

from bookings import service as booking
from bookings.models import Booking
from customers import service as customers
from huifang.db import utcnow
from huifang.errors import Invalid, NotFound
from messaging import inbound
from messaging import service as outbox
from office import customer_timeline as timeline
from reports.models import Report
from visits import service as visits

NOW = utcnow().replace(microsecond=0)


def ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


@pytest.fixture
def history(session, account):  # type: ignore[no-untyped-def]
    tenant = account.tenant
    customer = customers.create_customer(
        session=session, tenant=tenant, name="王女士", phone="13800138000"
    )
    other = customers.create_customer(
        session=session, tenant=tenant, name="别人", phone="13900139000"
    )
    staff = visits.create_staff(session=session, tenant=tenant, name="李师傅")
    first = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        staff_id=staff.id,
        service_type="ac_cleaning",
        areas=["客厅"],
        finished_at=ago(100),
    )
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        service_type="deep_cleaning",
        scheduled_at=NOW + dt.timedelta(days=2),
    )
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=other.id,
        service_type="ac_cleaning",
        finished_at=ago(1),
    )
    session.add(
        Report(
            tenant_id=tenant.id,
            visit_id=first.id,
            token="t" * 32,
            expires_at=NOW + dt.timedelta(days=180),
            built_at=ago(99),
            snapshot={},
            long_path="x.jpg",
            long_bytes=1,
            long_width=750,
            long_height=1000,
            long_token="l" * 32,
        )
    )
    message, _ = outbox.schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=str(first.id),
        body="您的服务报告",
        due_at=ago(98),
    )
    message.sent_at = ago(98)
    inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r-1",
        phone=customer.phone,
        text="1",
        tenant=tenant,
        now=ago(50),
        on_book=booking.book_from_reply,
    )
    # the "1" made a booking; one more from the page, at the very same instant as a reply
    session.add(
        Booking(
            tenant_id=tenant.id,
            customer_id=customer.id,
            status="confirmed",
            channel="page",
            created_at=ago(10),
            updated_at=ago(10),
        )
    )
    inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r-2",
        phone=customer.phone,
        text="谢谢",
        tenant=tenant,
        now=ago(10),
        on_book=booking.book_from_reply,
    )
    session.flush()
    return tenant, customer


def test_every_kind_merged_newest_first(session, history):
    tenant, customer = history
    entries, more = timeline.timeline(session=session, tenant_id=tenant.id, customer_id=customer.id)
    assert more is None
    kinds = [e.kind for e in entries]
    assert set(kinds) == {"visit", "report", "message", "reply", "booking"}
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    assert kinds[0] == "visit" and entries[0].data["service_type"] == "deep_cleaning"  # ahead
    first = next(e for e in entries if e.kind == "visit" and e.data["finished_at"])
    assert first.data["staff_name"] == "李师傅" and first.data["areas"] == ["客厅"]
    report = next(e for e in entries if e.kind == "report")
    assert report.data["page"] == "/r/" + "t" * 32
    assert all(e.data.get("text") != "别人" for e in entries)
    assert sum(1 for e in entries if e.kind == "visit") == 2  # not the other customer's


def test_pages_follow_each_other_without_loss_or_repeat(session, history):
    tenant, customer = history
    whole, _ = timeline.timeline(session=session, tenant_id=tenant.id, customer_id=customer.id)
    seen: list[tuple[str, int]] = []
    before = None
    for _ in range(20):
        page, before = timeline.timeline(
            session=session, tenant_id=tenant.id, customer_id=customer.id, limit=2, before=before
        )
        assert len(page) <= 2
        seen += [(e.kind, e.id) for e in page]
        if before is None:
            break
    assert seen == [(e.kind, e.id) for e in whole]
    assert len(seen) == len(set(seen))


def test_refusals(session, history, other_account):
    tenant, customer = history
    with pytest.raises(NotFound):
        timeline.timeline(
            session=session, tenant_id=other_account.tenant.id, customer_id=customer.id
        )
    for bad in (
        "yesterday",
        "2026-01-01T00:00:00~visit~1x",
        "2026-01-01T00:00:00~visit~1",
        "2026-01-01T00:00:00+00:00~photo~1",
    ):
        with pytest.raises(Invalid):
            timeline.timeline(
                session=session, tenant_id=tenant.id, customer_id=customer.id, before=bad
            )
    with pytest.raises(Invalid):
        timeline.timeline(
            session=session,
            tenant_id=tenant.id,
            customer_id=customer.id,
            limit=timeline.MAX_LIMIT + 1,
        )


def test_timeline_route(client, account, history):
    _, customer = history
    page = client.get(
        f"/v1/customers/{customer.id}/timeline?limit=3", headers=account.headers
    ).json()
    assert len(page["items"]) == 3 and page["next_before"] == page["items"][-1]["cursor"]
    rest = client.get(
        f"/v1/customers/{customer.id}/timeline",
        params={"before": page["next_before"]},
        headers=account.headers,
    ).json()
    assert rest["next_before"] is None
    assert {i["cursor"] for i in page["items"]}.isdisjoint({i["cursor"] for i in rest["items"]})
    bad = client.get(f"/v1/customers/{customer.id}/timeline?before=x", headers=account.headers)
    assert bad.status_code == 422 and "before" in bad.json()["detail"]
    assert (
        client.get(
            f"/v1/customers/{customer.id}/timeline?limit=500", headers=account.headers
        ).status_code
        == 422
    )
