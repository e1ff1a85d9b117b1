"""Occurrences as rows: the set-based fan-out agrees with ``rules.next_occurrence`` customer by
customer; cadences roll forward and catch up; edits, pauses, opt-outs and early bookings."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from bookings import links
from bookings.models import Booking
from campaigns import audiences, handoff, rules
from campaigns import facts as campaign_facts
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from campaigns.models import (
    BOOKED_EARLY,
    CAMPAIGN_PAUSED,
    CANCELLED,
    HANDED_OFF,
    OPTED_OUT,
    PENDING,
    SKIPPED,
    TOO_LATE,
    Campaign,
    CampaignOccurrence,
)
from campaigns.schemas import CampaignUpdate
from compliance import service as compliance
from compliance.models import ConsentRecord, Suppression
from customers import service as customers
from customers.models import Customer
from media.models import Media, Rendition
from messaging.models import Message
from tests.factories import make_capture_consent
from visits import service as visits

UTC = dt.UTC
ZONES = (
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "America/Sao_Paulo",
)
REGIONS = ("上海", "上海市", "浙江省", "北京", None)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


class Shop:
    """A company with customers, built through the services."""

    def __init__(self, session, tenant) -> None:
        self.session, self.tenant = session, tenant
        self.count = 0

    def customer(
        self,
        *,
        tz: str = "Asia/Shanghai",
        region: str | None = "上海",
        consent: bool = True,
        visits_: tuple[tuple[str, dt.datetime], ...] = (),
    ) -> Customer:
        self.count += 1
        person = customers.create_customer(
            session=self.session,
            tenant=self.tenant,
            name=f"客户{self.count}",
            phone=f"1390000{self.count:04d}",
            timezone=tz,
            region=region,
        )
        for code, finished in visits_:
            visits.create_visit(
                session=self.session,
                tenant=self.tenant,
                customer_id=person.id,
                service_type=code,
                finished_at=finished,
            )
        if consent:
            compliance.record_consent(
                session=self.session,
                tenant_id=self.tenant.id,
                customer=person,
                source="in_person",
                evidence="签字单",
                granted_at=utc(2020, 1, 1),
                now=utc(2020, 1, 1),
            )
        return person

    def campaign(self, rule: dict, *, activated_at: dt.datetime, **fields) -> Campaign:
        made = campaigns.create_campaign(
            session=self.session,
            tenant=self.tenant,
            name="测试活动",
            rule=rule,
            template="{{ customer_name }}您好，预约：{{ booking_link }}",
            **fields,
        )
        campaigns.activate(
            session=self.session, tenant=self.tenant, campaign_id=made.id, now=activated_at
        )
        return made


@pytest.fixture
def shop(session, account) -> Shop:
    return Shop(session, account.tenant)


def rows(session, campaign_id: int) -> list[CampaignOccurrence]:
    return list(
        session.scalars(
            select(CampaignOccurrence)
            .where(CampaignOccurrence.campaign_id == campaign_id)
            .order_by(CampaignOccurrence.customer_id, CampaignOccurrence.local_date)
        )
    )


# --- the set-based path against rules.next_occurrence -----------------------------------------

NOW_MARCH = utc(2026, 3, 7, 12, 0)  # New York springs forward tomorrow at 02:00


def _population(shop: Shop, now: dt.datetime) -> list[Customer]:
    """Customers across zones with and without daylight saving, last services landing before,
    on and after their due dates, late within and beyond the catch-up window, several
    services; a few aimed at the days the clocks change."""
    rng = random.Random(20260308)
    people = []
    ago = (0, 1, 45, 88, 89, 90, 91, 95, 104, 105, 106, 181, 400, 730)
    for zone in ZONES:
        for days in ago:
            last = now - dt.timedelta(days=days, hours=rng.choice((0, 5, 13, 19, 23)))
            first = last - dt.timedelta(days=rng.choice((0, 365, 800)))
            people.append(
                shop.customer(
                    tz=zone,
                    region=rng.choice(REGIONS),
                    visits_=(
                        ("ac_cleaning", first),
                        ("ac_cleaning", last),
                        ("deep_cleaning", last - dt.timedelta(days=rng.randint(1, 300))),
                    ),
                )
            )
    # Due on the days the clocks change: New York and London spring forward on 8 and 29
    # March 2026 (02:30 and 01:30 do not exist), Sydney and Auckland fall back on 5 April
    # (02:30 happens twice).
    for zone, served in (
        ("America/New_York", utc(2025, 12, 8, 15)),  # +90 d: 8 March
        ("America/New_York", utc(2026, 2, 6, 15)),  # +30 d: 8 March
        ("Europe/London", utc(2025, 12, 29, 12)),  # +90 d: 29 March
        ("Europe/London", utc(2026, 2, 27, 12)),  # +30 d: 29 March
        ("Australia/Sydney", utc(2026, 3, 6, 1)),  # +30 d: 5 April
        ("Pacific/Auckland", utc(2026, 3, 5, 23)),
    ):  # +30 d: 5 April
        people.append(shop.customer(tz=zone, visits_=(("ac_cleaning", served),)))
    # First services on 29 February and on this month's DST days, for anniversaries.
    for zone in ("America/New_York", "Europe/London", "Asia/Shanghai"):
        for first in (
            utc(2024, 2, 29, 3),
            utc(2025, 3, 8, 9),
            utc(2025, 3, 29, 9),
            utc(2026, 3, 8, 1),
        ):
            people.append(shop.customer(tz=zone, visits_=(("basic_cleaning", first),)))
    people.append(shop.customer(consent=False, visits_=(("ac_cleaning", now),)))
    people.append(shop.customer(tz="Europe/London", visits_=()))  # never served
    return people


def _fire(
    session, campaign: Campaign, person: Customer, due_at: dt.datetime, shift: int = 0
) -> None:
    """A reminder this campaign already handed off to the customer; ``shift`` moves the date
    it was for (an earlier version of the rule named another day)."""
    day = due_at.astimezone(ZoneInfo(person.timezone)).date() + dt.timedelta(days=shift)
    session.add(
        CampaignOccurrence(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            customer_id=person.id,
            local_date=day,
            due_at=due_at,
            campaign_version=campaign.version,
            status=HANDED_OFF,
        )
    )
    session.flush()


SCENARIOS = {
    "cadence 90d, catch-up 14, 02:30 (in New York's gap today)": (
        {
            "kind": "cadence",
            "service_type": "ac_cleaning",
            "every_days": 90,
            "catch_up_days": 14,
            "send_time": "02:30",
        },
        NOW_MARCH,
        40,
    ),
    "cadence 30d, no catch-up, 01:30": (
        {
            "kind": "cadence",
            "service_type": "ac_cleaning",
            "every_days": 30,
            "catch_up_days": 0,
            "send_time": "01:30",
        },
        NOW_MARCH,
        31,
    ),
    "cadence 730d, catch-up 30": (
        {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 730, "catch_up_days": 30},
        NOW_MARCH,
        31,
    ),
    "fixed date on the DST day, 02:30": (
        {"kind": "fixed_date", "month": 3, "day": 8, "send_time": "02:30"},
        utc(2026, 3, 8, 12),
        31,
    ),
    "fixed date on London's fall back, 01:30": (
        {"kind": "fixed_date", "month": 10, "day": 25, "send_time": "01:30"},
        utc(2026, 10, 1),
        31,
    ),
    "solar term: 7 days before 芒种": (
        {"kind": "solar_term", "term": "芒种", "offset_days": -7},
        utc(2026, 5, 20),
        31,
    ),
    "lunar: 20 days before 春节": (
        {"kind": "lunar", "festival": "春节", "offset_days": -20},
        utc(2027, 1, 10),
        31,
    ),
    "plum rain by region, table and almanac": (
        {"kind": "plum_rain", "offset_days": -7},
        utc(2026, 5, 25),
        31,
    ),
    "plum rain for one region": (
        {"kind": "plum_rain", "offset_days": 0, "region": "浙江"},
        utc(2026, 6, 1),
        31,
    ),
    "anniversary around 29 February and the DST days": (
        {"kind": "anniversary", "send_time": "02:30"},
        utc(2026, 2, 20),
        31,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_set_based_fan_out_matches_next_occurrence(session, shop, name) -> None:
    spec, now, horizon_days = SCENARIOS[name]
    campaign_facts.set_plum_table(
        session=session, tenant_id=shop.tenant.id, table={"上海": {2026: dt.date(2026, 6, 12)}}
    )
    people = _population(shop, now)
    activated = now - dt.timedelta(days=30)
    campaign = shop.campaign(spec, activated_at=activated)
    rule = rules.rule_from_dict(spec)
    # A few customers already heard from the campaign: at different distances from now.
    for person, days in zip(people[::7], (2, 40, 95, 200, 330, 500), strict=False):
        _fire(session, campaign, person, now - dt.timedelta(days=days))
    # An hour ago, under an earlier version that named another date: today's date, if the
    # rule names it, has been sent already (the unique key alone would not see it).
    for person in people[3::9]:
        _fire(session, campaign, person, now - dt.timedelta(hours=1), shift=-3)
    horizon = dt.timedelta(days=horizon_days)

    materializer.materialize(session=session, now=now, horizon=horizon)

    facts = campaign_facts.customer_facts(
        session=session, tenant_id=shop.tenant.id, customers=people
    )
    fired = campaign_facts.last_fired(
        session=session, campaign_id=campaign.id, customer_ids=[p.id for p in people]
    )
    table = campaign_facts.plum_table(session=session, tenant_id=shop.tenant.id)
    # Yearly rules look from the previous run (here: the activation, at most a week back).
    after = (
        now if isinstance(rule, rules.Cadence) else max(activated, now - materializer.YEARLY_GRACE)
    )
    found = {
        (o.customer_id, o.status): o for o in rows(session, campaign.id) if o.status != HANDED_OFF
    }
    expected_rows = 0
    checked_dst = 0
    for person in people:
        zone = ZoneInfo(person.timezone)
        occurrence = None
        if person.id not in (people[-2].id,):  # no consent: not in the audience
            occurrence = rules.next_occurrence(
                rule,
                customer=facts[person.id],
                after=after,
                tz=zone,
                last_fired=fired.get(person.id),
                plum_table=table,
            )
        pending = found.get((person.id, PENDING))
        if occurrence is None or occurrence.due_at > now + horizon:
            assert pending is None, (person.timezone, pending.local_date)
        else:
            expected_rows += 1
            assert pending is not None, (person.timezone, facts[person.id], occurrence)
            assert (
                pending.local_date,
                pending.due_at,
                pending.caught_up,
                pending.late_by_days,
            ) == (
                occurrence.local_date,
                occurrence.due_at,
                occurrence.caught_up,
                occurrence.late_by_days,
            ), (person.timezone, facts[person.id], occurrence.basis)
            wall = occurrence.due_at.astimezone(zone)
            if not occurrence.caught_up and wall.time() != rule.send_time:
                checked_dst += 1  # a send time in a gap, moved as the rules say
        skipped = found.get((person.id, SKIPPED))
        if occurrence is not None and occurrence.skipped:
            every = dt.timedelta(days=rule.every_days)  # type: ignore[union-attr]
            today = now.astimezone(zone).date()
            assert skipped is not None and skipped.reason == TOO_LATE
            assert skipped.local_date == occurrence.local_date - every
            assert skipped.late_by_days == (today - skipped.local_date).days
        else:
            assert skipped is None
    assert expected_rows >= 3, "the scenario must schedule someone"
    if name.startswith(("cadence 90d", "fixed date on the DST", "anniversary")):
        assert checked_dst, "a New York send time in the spring-forward gap was exercised"


def test_materializing_twice_adds_nothing_and_chunks_agree(session, shop) -> None:
    now = NOW_MARCH
    for zone in ZONES:
        for days in (80, 89, 95):
            shop.customer(tz=zone, visits_=(("ac_cleaning", now - dt.timedelta(days=days)),))
    spec = {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 90}
    whole = shop.campaign(spec, activated_at=now)
    chunked = shop.campaign(spec, activated_at=now)
    first = materializer.materialize(session=session, now=now, campaign_id=whole.id)
    small = materializer.materialize(session=session, now=now, campaign_id=chunked.id, chunk=2)
    assert first[whole.id] == small[chunked.id] == len(ZONES) * 3
    assert materializer.materialize(session=session, now=now) == {whole.id: 0, chunked.id: 0}

    def key(o: CampaignOccurrence) -> tuple:
        return (o.customer_id, o.local_date, o.due_at, o.caught_up, o.late_by_days)

    assert [key(o) for o in rows(session, whole.id)] == [key(o) for o in rows(session, chunked.id)]


# --- cadence: roll forward, catch up, skip ----------------------------------------------------


AC_90 = {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 90, "catch_up_days": 14}


def test_cadence_rolls_forward_after_a_fire(session, shop) -> None:
    served = utc(2026, 1, 10, 6)  # 14:00 in Shanghai
    person = shop.customer(visits_=(("ac_cleaning", served),))
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 2, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))
    (first,) = rows(session, campaign.id)
    assert (first.local_date, first.due_at, first.status) == (
        dt.date(2026, 4, 10),
        utc(2026, 4, 10, 2),
        PENDING,
    )  # 10:00 in Shanghai
    assert first.basis_at == served

    handed = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 2, 1))
    assert handed.claimed == 1 and len(handed.message_ids) == 1
    message = session.get(Message, handed.message_ids[0])
    assert message.customer_id == person.id and message.due_at == first.due_at
    assert message.source_id == f"{campaign.id}:{first.id}" and message.category == "marketing"
    assert message.body.startswith("客户1您好") and "/b/" in message.body

    # Ninety days after the reminder, not after the service again.
    materializer.materialize(session=session, now=utc(2026, 7, 1), horizon=dt.timedelta(days=31))
    later = [o for o in rows(session, campaign.id) if o.status == PENDING]
    assert [o.local_date for o in later] == [dt.date(2026, 7, 9)]
    assert later[0].basis_at == first.due_at


def test_catch_up_within_the_window_sends_now_and_later_skips_with_a_record(session, shop) -> None:
    now = utc(2026, 4, 20, 4)  # 12:00 in Shanghai
    late = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 10, 6)),))  # due 04-10
    too_late = shop.customer(visits_=(("ac_cleaning", utc(2025, 12, 20, 6)),))  # due 03-20
    campaign = shop.campaign(AC_90, activated_at=now)
    materializer.materialize(session=session, now=now, horizon=dt.timedelta(days=120))
    by_customer = {(o.customer_id, o.status): o for o in rows(session, campaign.id)}

    caught = by_customer[(late.id, PENDING)]
    assert (caught.local_date, caught.due_at, caught.caught_up, caught.late_by_days) == (
        dt.date(2026, 4, 10),
        now,
        True,
        10,
    )
    skipped = by_customer[(too_late.id, SKIPPED)]
    assert (skipped.local_date, skipped.reason, skipped.late_by_days) == (
        dt.date(2026, 3, 20),
        TOO_LATE,
        31,
    )
    moved = by_customer[(too_late.id, PENDING)]
    assert (moved.local_date, moved.caught_up) == (dt.date(2026, 6, 18), False)

    # The caught-up one is handed off at once; the skip is never sent.
    handed = handoff.hand_off_due(session=session, now=now)
    assert handed.claimed == 1
    assert session.get(Message, handed.message_ids[0]).customer_id == late.id


# --- edits, pause, resume -------------------------------------------------------------------


def test_editing_reschedules_future_pending_only(session, shop) -> None:
    now = utc(2026, 4, 20, 4)
    handed_person = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 15, 6)),))  # 04-15
    due_person = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 18, 6)),))  # 04-18
    future_person = shop.customer(visits_=(("ac_cleaning", utc(2026, 2, 1, 6)),))  # 05-02
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 4, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 14), horizon=dt.timedelta(days=40))
    handoff.hand_off_due(session=session, now=utc(2026, 4, 15, 3))
    before = {o.customer_id: o for o in rows(session, campaign.id)}
    assert before[handed_person.id].status == HANDED_OFF
    # Due, not yet handed off (the edit comes first), and one still in the future.
    assert before[due_person.id].status == PENDING and before[due_person.id].due_at <= now
    assert before[future_person.id].due_at > now

    edited = campaigns.update_campaign(
        session=session,
        tenant=shop.tenant,
        campaign_id=campaign.id,
        now=now,
        changes=CampaignUpdate(rule={**AC_90, "every_days": 80}),
    )
    assert edited.version == 2
    after = {o.customer_id: o for o in rows(session, campaign.id)}
    assert after[handed_person.id].id == before[handed_person.id].id  # the past stays
    assert after[handed_person.id].campaign_version == 1
    assert after[due_person.id].id == before[due_person.id].id  # due: not touched
    assert future_person.id not in after  # recomputed at the next tick

    materializer.materialize(session=session, now=now, horizon=dt.timedelta(days=40))
    redone = {o.customer_id: o for o in rows(session, campaign.id)}[future_person.id]
    assert (redone.local_date, redone.campaign_version) == (dt.date(2026, 4, 22), 2)

    renamed = campaigns.update_campaign(
        session=session,
        tenant=shop.tenant,
        campaign_id=campaign.id,
        now=now,
        changes=CampaignUpdate(name="新名字"),
    )
    assert renamed.version == 2 and redone.status == PENDING  # a name is not a new version


def test_pausing_stops_hand_off_and_suppresses_unsent_messages_then_resume(session, shop) -> None:
    now = utc(2026, 4, 9, 3)  # 11:00 in Shanghai
    sent_earlier = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 9, 6)),))  # due 04-09
    waiting = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 10, 6)),))  # due 04-10
    later = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 20, 6)),))  # due 04-20
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 4, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 8), horizon=dt.timedelta(days=31))
    (message_id,) = handoff.hand_off_due(session=session, now=now).message_ids
    message = session.get(Message, message_id)
    assert message.customer_id == sent_earlier.id and message.status == "scheduled"

    campaigns.pause(session=session, tenant=shop.tenant, campaign_id=campaign.id, now=now)
    session.refresh(message)
    assert (message.status, message.status_reason) == ("suppressed", "campaign_paused")
    stopped = {o.customer_id: o for o in rows(session, campaign.id)}[sent_earlier.id]
    assert (stopped.status, stopped.reason) == (CANCELLED, CAMPAIGN_PAUSED)
    # Due while paused: nothing is handed off.
    assert handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 2, 30)).claimed == 0
    assert materializer.materialize(session=session, now=now) == {}

    campaigns.resume(
        session=session, tenant=shop.tenant, campaign_id=campaign.id, now=utc(2026, 4, 11, 2)
    )
    assert rows(session, campaign.id) == []  # waiting and stopped ones are recomputed
    materializer.materialize(
        session=session, now=utc(2026, 4, 11, 2), horizon=dt.timedelta(days=31)
    )
    again = {o.customer_id: o for o in rows(session, campaign.id)}
    assert again[sent_earlier.id].caught_up and again[waiting.id].caught_up
    assert again[later.id].local_date == dt.date(2026, 4, 20)
    handed = handoff.hand_off_due(session=session, now=utc(2026, 4, 11, 2))
    assert handed.claimed == 2
    resent = session.get(Message, handed.message_ids[0])
    assert resent.id != message_id and resent.status == "scheduled"


def test_archiving_cancels_what_waits(session, shop) -> None:
    shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 20, 6)),))
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 4, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 8), horizon=dt.timedelta(days=31))
    campaigns.archive(
        session=session, tenant=shop.tenant, campaign_id=campaign.id, now=utc(2026, 4, 9)
    )
    (occurrence,) = rows(session, campaign.id)
    assert (occurrence.status, occurrence.reason) == (CANCELLED, "campaign_archived")


# --- opt-out and early booking --------------------------------------------------------------


def test_opt_out_and_early_booking_cancel_the_pending_occurrence(session, shop) -> None:
    served = utc(2026, 1, 10, 6)
    stays = shop.customer(visits_=(("ac_cleaning", served),))
    opts_out = shop.customer(visits_=(("ac_cleaning", served),))
    books = shop.customer(visits_=(("ac_cleaning", served),))
    had_visit = shop.customer(visits_=(("ac_cleaning", served),))
    other_service = shop.customer(visits_=(("ac_cleaning", served),))
    called_off = shop.customer(visits_=(("ac_cleaning", served),))
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 4, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))

    compliance.opt_out(
        session=session,
        tenant=shop.tenant,
        phone=opts_out.phone,
        reason="reply_opt_out",
        detail="T",
        now=utc(2026, 4, 2),
    )
    link = links.link_for(
        session=session,
        tenant=shop.tenant,
        customer=books,
        source_type="visit_report",
        source_id="1",
        service_type="ac_cleaning",
        now=utc(2026, 4, 3),
    )
    session.add(
        Booking(
            tenant_id=shop.tenant.id,
            customer_id=books.id,
            service_type="ac_cleaning",
            status="requested",
            channel="page",
            link_id=link.id,
            created_at=utc(2026, 4, 3),
        )
    )
    visits.create_visit(
        session=session,
        tenant=shop.tenant,
        customer_id=had_visit.id,
        service_type="ac_cleaning",
        finished_at=utc(2026, 4, 4),
    )
    visits.create_visit(
        session=session,
        tenant=shop.tenant,
        customer_id=other_service.id,
        service_type="deep_cleaning",
        finished_at=utc(2026, 4, 4),
    )
    # A booking the customer called off on the page does not stand for the service.
    theirs = links.link_for(
        session=session,
        tenant=shop.tenant,
        customer=called_off,
        source_type="visit_report",
        source_id="2",
        service_type="ac_cleaning",
        now=utc(2026, 4, 3),
    )
    session.add(
        Booking(
            tenant_id=shop.tenant.id,
            customer_id=called_off.id,
            service_type="ac_cleaning",
            status="cancelled",
            channel="page",
            link_id=theirs.id,
            created_at=utc(2026, 4, 3),
        )
    )
    session.flush()

    handed = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 3))
    assert handed.claimed == 6
    outcome = {o.customer_id: (o.status, o.reason) for o in rows(session, campaign.id)}
    assert outcome == {
        stays.id: (HANDED_OFF, None),
        opts_out.id: (CANCELLED, OPTED_OUT),
        books.id: (CANCELLED, BOOKED_EARLY),
        had_visit.id: (CANCELLED, BOOKED_EARLY),
        other_service.id: (HANDED_OFF, None),
        called_off.id: (HANDED_OFF, None),
    }
    assert {session.get(Message, m).customer_id for m in handed.message_ids} == {
        stays.id,
        other_service.id,
        called_off.id,
    }


def test_a_template_that_cannot_be_filled_cancels_with_the_reason(session, shop) -> None:
    person = shop.customer(visits_=(("ac_cleaning", utc(2026, 1, 10, 6)),))
    campaign = campaigns.create_campaign(
        session=session,
        tenant=shop.tenant,
        rule=AC_90,
        template="{{ staff_name }}提醒您：空调该清洗了，预约：{{ booking_link }}",
    )
    campaign.status, campaign.activated_at = "active", utc(2026, 4, 1)  # as lint would allow
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))
    handed = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 3))
    (occurrence,) = rows(session, campaign.id)
    assert handed.message_ids == [] and occurrence.customer_id == person.id
    assert (occurrence.status, occurrence.reason) == (CANCELLED, "render_failed")
    assert "staff_name" in occurrence.detail


def test_the_mms_variant_goes_when_the_provider_carries_mms(session, shop) -> None:
    served = utc(2026, 1, 10, 6)
    people = [shop.customer(visits_=(("ac_cleaning", served),)) for _ in range(2)]
    make_capture_consent(session, shop.tenant, people[0])  # its photo may go in marketing
    visit = visits.create_visit(
        session=session,
        tenant=shop.tenant,
        customer_id=people[0].id,
        service_type="ac_cleaning",
        finished_at=served,
    )
    photo = Media(
        tenant_id=shop.tenant.id,
        visit_id=visit.id,
        kind="photo",
        phase="after",
        area="客厅",
        status="ready",
        original_path="originals/0/a.jpg",
        sha256="a" * 64,
        bytes=1,
        mime="image/jpeg",
        received_at=served,
        verification_code="A0000000A0",
    )
    session.add(photo)
    session.flush()
    session.add(
        Rendition(
            tenant_id=shop.tenant.id,
            media_id=photo.id,
            kind="mms",
            path="renditions/0/a.jpg",
            bytes=1,
            width=640,
            height=480,
            token="mmsToken1234567890",
            created_at=served,
        )
    )
    session.flush()
    shop.campaign(
        AC_90,
        activated_at=utc(2026, 4, 1),
        mms={
            "subject": "空调滤网该清洗了",
            "image_media_id": photo.id,
            "body": "{{ customer_name }}您好：滤网建议每三个月清洗。预约：{{ booking_link }}",
        },
    )
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))

    as_mms = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 3), mms=True, limit=1)
    message = session.get(Message, as_mms.message_ids[0])
    assert message.channel == "mms"
    assert message.media_urls[0].endswith("/m/mmsToken1234567890.jpg")
    assert message.body.startswith("空调滤网该清洗了\n") and "/b/" in message.body
    # Without MMS at the provider, the SMS template goes instead.
    as_sms = handoff.hand_off_due(session=session, now=utc(2026, 4, 10, 3), mms=False)
    message = session.get(Message, as_sms.message_ids[0])
    assert (message.channel, message.media_urls) == ("sms", [])
    name = session.get(Customer, message.customer_id).name
    assert message.body.startswith(f"{name}您好，预约：http") and "/b/" in message.body


def test_chunk_statements_are_never_prepared_so_each_chunk_is_planned_with_its_bounds(
    session, shop, backend
) -> None:
    """At a million customers a prepared chunk statement got a generic plan at chunk 12 that
    ignored the bounds and did not finish (BENCHMARKS.md, Fan-out)."""
    if backend != "postgresql":
        pytest.skip("server-side prepared statements and generic plans are PostgreSQL's")
    for days in range(60, 72):
        shop.customer(visits_=(("ac_cleaning", NOW_MARCH - dt.timedelta(days=days)),))
    campaign = shop.campaign(AC_90, activated_at=NOW_MARCH)
    raw = session.connection().connection.dbapi_connection
    threshold = raw.prepare_threshold
    made = materializer.materialize(session=session, now=NOW_MARCH, chunk=1)  # a chunk each
    assert made == {campaign.id: 12}
    prepared = session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert not [s for s in prepared if "INSERT INTO campaign_occurrences" in s]
    assert raw.prepare_threshold == threshold  # the connection is given back as it was


def test_a_send_day_handed_off_in_full_tells_the_office_once(session, shop) -> None:
    from alerts import service as alerts
    from alerts.models import Alert

    alerts.create_channel(
        session=session,
        tenant=shop.tenant,
        kind="webhook",
        name="前台",
        url="http://127.0.0.1:9/hook",
        secret="s3cret-s3cret-s3cret",
        events=["campaign.finished"],
    )
    served = utc(2026, 1, 10, 6)
    people = [shop.customer(visits_=(("ac_cleaning", served),)) for _ in range(3)]
    campaign = shop.campaign(AC_90, activated_at=utc(2026, 2, 1))
    materializer.materialize(session=session, now=utc(2026, 4, 1), horizon=dt.timedelta(days=31))
    compliance.opt_out(
        session=session,
        tenant=shop.tenant,
        phone=people[2].phone,
        reason="reply_opt_out",
        detail="T",
        now=utc(2026, 4, 5),
    )

    def finished() -> list[Alert]:
        return list(
            session.scalars(
                select(Alert).where(
                    Alert.tenant_id == shop.tenant.id, Alert.event == "campaign.finished"
                )
            )
        )

    due = utc(2026, 4, 10, 2, 1)
    handoff.hand_off_due(session=session, now=due, limit=1)
    assert finished() == []  # two of the day's three still wait
    handoff.hand_off_due(session=session, now=due)
    [alert] = finished()
    assert alert.dedupe_key == f"campaign-finished:{campaign.id}:2026-04-10"
    assert "「测试活动」2026-04-10" in alert.text and "2 条" in alert.text
    assert "已退订 1 人" in alert.text
    assert alert.facts["sent"] == 2 and alert.facts["opted_out"] == 1
    handoff.hand_off_due(session=session, now=due + dt.timedelta(minutes=1))
    assert len(finished()) == 1  # raised once per campaign and day


def test_suppressed_numbers_are_left_out_and_checked_chunks_skip_what_waits(session, shop) -> None:
    now = NOW_MARCH
    people = [
        shop.customer(visits_=(("ac_cleaning", now - dt.timedelta(days=85)),)) for _ in range(7)
    ]
    spec = {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 90}
    campaign = shop.campaign(spec, activated_at=now)
    assert not audiences.any_suppressed(session=session, tenant=shop.tenant)

    def suppress(person: Customer, **fields) -> None:  # type: ignore[no-untyped-def]
        # straight in: an opt-out through the registry revokes the consent too
        values = {"signature": shop.tenant.signature, "reason": "manual", "created_at": now}
        session.add(
            Suppression(tenant_id=shop.tenant.id, phone=person.phone, **{**values, **fields})
        )

    suppress(people[1])
    suppress(people[2], signature="别家家政")  # another signature: not ours
    suppress(people[3], lifted_at=now)  # lifted: reachable again
    session.flush()
    assert audiences.any_suppressed(session=session, tenant=shop.tenant)

    # chunks of two: every chunk new to the campaign, written without the checks
    made = materializer.materialize(session=session, now=now, chunk=2)
    assert made == {campaign.id: 6}
    scheduled = {o.customer_id for o in rows(session, campaign.id)}
    assert scheduled == {p.id for p in people} - {people[1].id}

    # one occurrence gone: its chunk is checked (its neighbour's occurrence waits) and
    # only its customer is scheduled again; the other chunks add nothing
    session.delete(next(o for o in rows(session, campaign.id) if o.customer_id == people[4].id))
    session.flush()
    assert materializer.materialize(session=session, now=now, chunk=2) == {campaign.id: 1}
    assert sorted(o.customer_id for o in rows(session, campaign.id)) == sorted(scheduled)


def test_consent_is_the_numbers_whichever_customer_it_was_recorded_for(session, shop) -> None:
    """The fan-out finds consents by customer id a chunk at a time, then by number for the
    customers that misses: it schedules exactly the customers the audience's own
    definition (``audiences.select_ids``) reaches, in chunks of any size."""
    now = NOW_MARCH
    served = (("ac_cleaning", now - dt.timedelta(days=85)),)
    tenant = shop.tenant

    def consent(person: Customer, customer_id: int | None) -> None:
        # straight in: ``record_consent`` refuses a second one and always names the customer
        session.add(
            ConsentRecord(
                tenant_id=tenant.id,
                customer_id=customer_id,
                phone=person.phone,
                source="in_person",
                evidence="签字单",
                granted_at=utc(2020, 1, 1),
                recorded_at=utc(2020, 1, 1),
            )
        )

    plain = shop.customer(visits_=served)
    new_york = shop.customer(tz="America/New_York", visits_=served)
    without = shop.customer(consent=False, visits_=served)
    revoked = shop.customer(visits_=served)
    compliance.revoke_consent(
        session=session,
        tenant_id=tenant.id,
        phone=revoked.phone,
        source="reply",
        evidence="T",
        now=now,
    )
    suppressed = shop.customer(visits_=served)
    session.add(
        Suppression(
            tenant_id=tenant.id,
            phone=suppressed.phone,
            signature=tenant.signature,
            reason="manual",
            created_at=now,
        )
    )
    twice = shop.customer(visits_=served)  # two unrevoked consents for the number
    consent(twice, twice.id)
    unnamed = shop.customer(consent=False, visits_=served)  # its customer was deleted
    consent(unnamed, None)
    # Consent recorded for a number, whose customer then changed number; a new customer
    # took the old number: the consent is the new customer's (by number), in a chunk of
    # its own, and no longer the first customer's.
    moved = shop.customer(visits_=served)
    old_number = moved.phone
    moved.phone = "+8613911112222"
    session.flush()
    for _ in range(3):
        shop.customer(consent=False)  # never served: a gap of ids between the two
    heir = customers.create_customer(
        session=session, tenant=tenant, name="新客户", phone=old_number, timezone="Asia/Shanghai"
    )
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=heir.id,
        service_type="ac_cleaning",
        finished_at=served[0][1],
    )
    session.flush()

    reached = set(
        session.scalars(
            audiences.select_ids(audiences.Audience(), tenant=tenant, now=now).where(
                Customer.id.in_(
                    [
                        p.id
                        for p in (
                            plain,
                            new_york,
                            without,
                            revoked,
                            suppressed,
                            twice,
                            unnamed,
                            moved,
                            heir,
                        )
                    ]
                )
            )
        )
    )
    expected = {plain.id, new_york.id, twice.id, unnamed.id, heir.id}
    assert reached == expected
    for chunk in (1, 2, 3, 1000):
        campaign = shop.campaign(AC_90, activated_at=now)
        made = materializer.materialize(
            session=session, now=now, campaign_id=campaign.id, chunk=chunk
        )
        assert made == {campaign.id: len(expected)}, chunk
        assert {o.customer_id for o in rows(session, campaign.id)} == expected, chunk
    new_yorker = next(o for o in rows(session, campaign.id) if o.customer_id == new_york.id)
    assert new_yorker.due_at.astimezone(ZoneInfo("America/New_York")).time() == dt.time(10)
