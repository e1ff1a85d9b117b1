"""What a campaign did (messages by outcome, clicks, bookings, conversion) and a company's
retention, repeat purchases and second-service conversion, on hand-checked data; JSON and CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from bookings import links as short_links
from bookings.models import Booking
from campaigns import handoff
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from campaigns import results as campaign_results
from customers import service as customers
from messaging import service as outbox
from messaging.models import Message
from tenancy import service as tenancy
from tests.factories import make_consent, make_customer, make_visit
from visits import service as visits

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def _walk(session, message: Message, *statuses: str, reason: str | None = None) -> None:
    """Move a message through the outbox lifecycle as the pipeline would."""
    for status in statuses:
        assert outbox.transition(
            session=session,
            message=message,
            status=status,
            now=utc(2026, 4, 10, 3),
            reason=reason if status == statuses[-1] else None,
        )


@pytest.fixture
def sent_campaign(session, account):
    """An AC campaign handed to six customers, their messages in six different states."""
    tenant = account.tenant
    people = []
    for i in range(6):
        person = make_customer(session, tenant, name=f"客户{i}", phone=f"1380000{i:04d}")
        make_visit(session, tenant, customer=person, finished_at=utc(2026, 1, 10, 6))
        make_consent(session, tenant, person, now=utc(2026, 1, 1))
        people.append(person)
    campaign = campaigns.create_campaign(
        session=session, tenant=tenant, preset="ac_filter_quarterly"
    )
    campaigns.activate(session=session, tenant=tenant, campaign_id=campaign.id, now=utc(2026, 4, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))
    handed = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 2))
    messages = sorted(
        (session.get(Message, m) for m in handed.message_ids), key=lambda m: m.customer_id
    )
    delivered, sent, failed, refused, deferred, waiting = messages
    _walk(session, delivered, "queued", "sending", "sent", "delivered")
    _walk(session, sent, "queued", "sending", "sent")
    _walk(session, failed, "queued", "sending", "failed", reason="provider_refused")
    _walk(session, refused, "queued", "sending", "suppressed", reason="no_consent")
    _walk(session, deferred, "queued", "sending", "deferred", reason="quiet_hours")
    assert waiting.status == "scheduled"

    # Clicks: three openings of one link, one of another, none of the rest.
    links = {
        link.customer_id: link
        for link in (
            short_links.link_for(
                session=session,
                tenant=tenant,
                customer=p,
                source_type="campaign",
                source_id=str(campaign.id),
                now=utc(2026, 4, 10),
            )
            for p in people
        )
    }
    for when in (utc(2026, 4, 10, 5), utc(2026, 4, 10, 6), utc(2026, 4, 11, 1)):
        short_links.click(session=session, link=links[people[0].id], visitor="phone", now=when)
    short_links.click(
        session=session, link=links[people[1].id], visitor="phone", now=utc(2026, 4, 12)
    )
    # Bookings: from the page (the link's cause), from a "1" reply (the message's cause),
    # and one from a visit report that is not this campaign's.
    session.add_all(
        [
            Booking(
                tenant_id=tenant.id,
                customer_id=people[0].id,
                service_type="ac_cleaning",
                status="requested",
                channel="page",
                link_id=links[people[0].id].id,
                source_type="campaign",
                source_id=str(campaign.id),
            ),
            Booking(
                tenant_id=tenant.id,
                customer_id=people[1].id,
                status="requested",
                channel="reply",
                message_id=sent.id,
                source_type="campaign",
                source_id=sent.source_id,
            ),
            Booking(
                tenant_id=tenant.id,
                customer_id=people[2].id,
                status="requested",
                channel="page",
                source_type="visit_report",
                source_id="7",
            ),
        ]
    )
    session.flush()
    return campaign


EXPECTED = {
    "scheduled": 6,
    "waiting": 1,
    "sent": 2,
    "delivered": 1,
    "failed": 1,
    "deferred": 1,
    "unknown": 0,
    "suppressed": {"no_consent": 1},
    "customers_sent": 2,
    "clicked": 2,
    "clicks": 4,
    "booked": 2,
    "customers_booked": 2,
    "conversion": 100.0,
}


def test_results_count_messages_clicks_and_bookings(session, account, sent_campaign) -> None:
    found = campaign_results.results(
        session=session, tenant=account.tenant, campaign_id=sent_campaign.id
    )
    assert {k: getattr(found, k) for k in EXPECTED} == EXPECTED
    assert found.occurrences == {"pending": 0, "handed_off": 6, "cancelled": 0, "skipped": 0}


def test_results_by_api_as_json_and_csv(client, account, sent_campaign) -> None:
    path = f"/v1/campaigns/{sent_campaign.id}/results"
    as_json = client.get(path, headers=account.headers)
    assert as_json.status_code == 200
    assert {k: as_json.json()[k] for k in EXPECTED} == EXPECTED
    for answer in (
        client.get(f"{path}?format=csv", headers=account.headers),
        client.get(path, headers={**account.headers, "Accept": "text/csv"}),
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        lines = dict(csv.reader(io.StringIO(answer.text.lstrip("\ufeff"))))
        assert lines["metric"] == "value"
        assert (
            lines["sent"],
            lines["delivered"],
            lines["suppressed_no_consent"],
            lines["clicks"],
            lines["booked"],
            lines["conversion_percent"],
        ) == ("2", "1", "1", "4", "2", "100.0")
        assert lines["name"] == "空调滤网季度清洗"


def test_paused_messages_are_counted_as_suppressed_by_the_pause(
    session, account, sent_campaign
) -> None:
    campaigns.pause(
        session=session, tenant=account.tenant, campaign_id=sent_campaign.id, now=utc(2026, 4, 12)
    )
    found = campaign_results.results(
        session=session, tenant=account.tenant, campaign_id=sent_campaign.id
    )
    # The scheduled one and the deferred one had not left: both stopped by the pause.
    assert found.suppressed == {"no_consent": 1, "campaign_paused": 2}
    assert (found.waiting, found.deferred, found.cancelled) == (0, 0, {"campaign_paused": 2})


# --- retention -------------------------------------------------------------------------------


@pytest.fixture
def history(session, account):
    """Seven customers of a Shanghai company, each checked by hand against the definitions
    (period 2026-01-01 … 2026-03-31, lookback 365 days)."""
    tenant = account.tenant
    plan = {
        # name: finished visits (UTC); what it is
        "A": (utc(2025, 6, 1, 2), utc(2026, 2, 1, 2)),  # active, retained, repeat
        "B": (utc(2025, 11, 15, 2),),  # active, lost
        "C": (utc(2024, 6, 1, 2),),  # before the lookback: not counted at all
        "D": (utc(2026, 1, 10, 2), utc(2026, 3, 20, 2)),  # new, second service, repeat
        "E": (utc(2026, 2, 5, 2), utc(2026, 4, 10, 2)),  # new, second only after the period
        # 31 Dec 23:30 and 1 Jan 00:30 in Shanghai: active before, served within
        "F": (utc(2025, 12, 31, 15, 30), utc(2025, 12, 31, 16, 30)),
        "G": (utc(2025, 10, 1, 2),),  # active, lost (a visit in the period never finished)
    }
    for i, (name, finished) in enumerate(plan.items()):
        person = customers.create_customer(
            session=session, tenant=tenant, name=name, phone=f"1370000{i:04d}"
        )
        for when in finished:
            visits.create_visit(
                session=session,
                tenant=tenant,
                customer_id=person.id,
                service_type="basic_cleaning",
                finished_at=when,
            )
        if name == "G":
            visits.create_visit(
                session=session,
                tenant=tenant,
                customer_id=person.id,
                service_type="basic_cleaning",
                scheduled_at=utc(2026, 2, 2),
            )
    # Another company's customer, served in the period, counts for nobody here.
    other = tenancy.create_tenant(session=session, name="别家", signature="别家")
    stranger = customers.create_customer(
        session=session, tenant=other, name="外人", phone="13600000000"
    )
    visits.create_visit(
        session=session,
        tenant=other,
        customer_id=stranger.id,
        service_type="deep_cleaning",
        finished_at=utc(2026, 2, 1),
    )
    return plan


def test_retention_repeat_and_second_service_on_hand_checked_data(
    session, account, history
) -> None:
    found = campaign_results.retention(
        session=session,
        tenant=account.tenant,
        since=dt.date(2026, 1, 1),
        until=dt.date(2026, 3, 31),
    )
    # Active at the start: A, B, F, G. Lost: B, G. Served: A, D, E, F; with two visits
    # by the end: A, D, F. New: D, E; with a second by the end: D.
    assert (found.active_at_start, found.lost, found.retained, found.retention_rate) == (
        4,
        2,
        2,
        50.0,
    )
    assert (found.served, found.repeat_customers, found.repeat_purchase_rate) == (4, 3, 75.0)
    assert (found.new_customers, found.second_service, found.second_service_conversion) == (
        2,
        1,
        50.0,
    )
    # E's second visit counts once the period covers it.
    longer = campaign_results.retention(
        session=session,
        tenant=account.tenant,
        since=dt.date(2026, 1, 1),
        until=dt.date(2026, 4, 30),
    )
    assert (longer.second_service, longer.second_service_conversion) == (2, 100.0)


def test_retention_by_api_as_json_and_csv(client, account, history) -> None:
    query = "/v1/reports/retention?since=2026-01-01&until=2026-03-31"
    answer = client.get(query, headers=account.headers).json()
    assert (
        answer["retention_rate"],
        answer["repeat_purchase_rate"],
        answer["second_service_conversion"],
    ) == (50.0, 75.0, 50.0)
    table = dict(
        csv.reader(
            io.StringIO(
                client.get(f"{query}&format=csv", headers=account.headers).text.lstrip("\ufeff")
            )
        )
    )
    assert (table["active_at_start"], table["lost"], table["retention_rate"]) == ("4", "2", "50.0")
    backwards = client.get(
        "/v1/reports/retention?since=2026-03-01&until=2026-01-01", headers=account.headers
    )
    assert (
        backwards.status_code == 422 and "until must be on or after" in backwards.json()["detail"]
    )
    empty = client.get(
        "/v1/reports/retention?since=2020-01-01&until=2020-01-31", headers=account.headers
    ).json()
    assert empty["retention_rate"] is None and empty["active_at_start"] == 0
