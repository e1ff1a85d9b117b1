"""The campaign ticks as a worker runs them: each task opens its own session on the committed
database, commits a campaign (materialize) or a batch (hand-off) at a time, and stops when
a batch comes back short or the time budget is spent.

The tasks are called directly, as ``tests/messaging/test_cap_pipeline.py`` calls the send
task: the ``huifang.worker.task`` wrapper opens, commits and closes the session. The tasks
read the clock through ``campaigns.tasks.utcnow``, fixed here to a daytime instant.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from campaigns import handoff, tasks
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from campaigns import preview as campaign_preview
from campaigns.models import ACTIVE, HANDED_OFF, PENDING, Campaign, CampaignOccurrence
from compliance import service as compliance
from customers import service as customers
from huifang.db import Database
from messaging.models import Message
from tenancy import service as tenancy
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Visit

UTC = dt.UTC
NOW = dt.datetime(2026, 4, 20, 3, tzinfo=UTC)  # 11:00 in Shanghai
EARLIER = dt.datetime(2026, 4, 8, 0, tzinfo=UTC)  # 08:00 in Shanghai, twelve days before
# Served on 9 January at 14:00 in Shanghai: the 90-day reminder is on 9 April at 10:00.
FIRST_SERVED = dt.datetime(2026, 1, 9, 6, tzinfo=UTC)
AC_90 = {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 90, "catch_up_days": 14}
TEMPLATE = "{{ customer_name }}您好，预约：{{ booking_link }}"
BATCH = 3
DUE = 10  # due by NOW: four batches of three (3, 3, 3, 1)


@dataclass
class Shop:
    """A committed company; every row it made goes with the company afterwards."""

    db: Database
    tenant_id: int
    phones: Iterator[int] = field(default_factory=lambda: itertools.count())

    def customers(self, served: list[dt.datetime], *, consent: bool = True) -> list[int]:
        """Customers whose last 空调清洗 finished at each of ``served``; their ids."""
        made: list[int] = []
        with self.db.session() as session:
            tenant = self._tenant(session)
            for finished in served:
                person = customers.create_customer(
                    session=session,
                    tenant=tenant,
                    name=f"客户{len(made) + 1}",
                    phone=f"1390000{next(self.phones):04d}",
                )
                visits.create_visit(
                    session=session,
                    tenant=tenant,
                    customer_id=person.id,
                    service_type="ac_cleaning",
                    finished_at=finished,
                )
                if consent:
                    compliance.record_consent(
                        session=session,
                        tenant_id=tenant.id,
                        customer=person,
                        source="in_person",
                        evidence="签字单",
                        granted_at=dt.datetime(2025, 1, 1, tzinfo=UTC),
                        now=EARLIER,
                    )
                made.append(person.id)
        return made

    def campaign(self, rule: dict[str, Any], *, active: bool = True) -> int:
        """A campaign (activated unless ``active`` is False); its id."""
        with self.db.session() as session:
            tenant = self._tenant(session)
            made = campaigns.create_campaign(
                session=session, tenant=tenant, name="测试活动", rule=rule, template=TEMPLATE
            )
            if active:
                campaigns.activate(session=session, tenant=tenant, campaign_id=made.id, now=EARLIER)
            return made.id

    def pause(self, campaign_id: int) -> None:
        with self.db.session() as session:
            campaigns.pause(
                session=session, tenant=self._tenant(session), campaign_id=campaign_id, now=EARLIER
            )

    def occurrences(self, campaign_id: int | None = None) -> list[CampaignOccurrence]:
        """What a fresh session finds on record, in due order."""
        with self.db.sessionmaker() as session:
            stmt = select(CampaignOccurrence).where(CampaignOccurrence.tenant_id == self.tenant_id)
            if campaign_id is not None:
                stmt = stmt.where(CampaignOccurrence.campaign_id == campaign_id)
            return list(
                session.scalars(stmt.order_by(CampaignOccurrence.due_at, CampaignOccurrence.id))
            )

    def messages(self) -> list[Message]:
        with self.db.sessionmaker() as session:
            return list(
                session.scalars(
                    select(Message).where(Message.tenant_id == self.tenant_id).order_by(Message.id)
                )
            )

    def _tenant(self, session: Session) -> Tenant:
        tenant = session.get(Tenant, self.tenant_id)
        assert tenant is not None
        return tenant


@pytest.fixture
def shop(committed_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    monkeypatch.setattr(tasks, "utcnow", lambda: NOW)
    with committed_db.session() as session:
        tenant = tenancy.create_tenant(
            session=session, name="定时任务家政", signature="定时任务家政"
        )
        tenant_id = tenant.id
    try:
        yield Shop(committed_db, tenant_id)
    finally:
        with committed_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def _due_elsewhere(db: Database, tenant_id: int) -> int:
    """Due occurrences of other companies' active campaigns (the ticks take every company's)."""
    with db.sessionmaker() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(CampaignOccurrence)
                .join(Campaign, Campaign.id == CampaignOccurrence.campaign_id)
                .where(
                    CampaignOccurrence.tenant_id != tenant_id,
                    Campaign.status == ACTIVE,
                    CampaignOccurrence.status == PENDING,
                    CampaignOccurrence.due_at <= NOW,
                )
            )
            or 0
        )


# --- materialize_occurrences --------------------------------------------------------------


def test_the_materialize_tick_covers_every_active_campaign_and_no_other(shop: Shop) -> None:
    people = shop.customers([FIRST_SERVED + dt.timedelta(days=k) for k in range(4)])
    cadence = shop.campaign(AC_90)
    yearly = shop.campaign({"kind": "fixed_date", "month": 5, "day": 1})
    paused = shop.campaign(AC_90)
    shop.pause(paused)
    draft = shop.campaign(AC_90, active=False)

    tasks.materialize_occurrences()

    by_campaign: dict[int, list[CampaignOccurrence]] = {}
    for row in shop.occurrences():  # a fresh session: the task committed
        by_campaign.setdefault(row.campaign_id, []).append(row)
    assert set(by_campaign) == {cadence, yearly}
    assert sorted((o.customer_id, o.local_date) for o in by_campaign[cadence]) == [
        (person, dt.date(2026, 4, 9) + dt.timedelta(days=k)) for k, person in enumerate(people)
    ]
    # Due 9–12 April, found on the 20th: late, within the 14-day window, so due at once.
    assert {(o.status, o.caught_up, o.due_at) for o in by_campaign[cadence]} == {
        (PENDING, True, NOW)
    }
    assert sorted(o.customer_id for o in by_campaign[yearly]) == people
    assert {(o.local_date, o.status) for o in by_campaign[yearly]} == {
        (dt.date(2026, 5, 1), PENDING)
    }
    with shop.db.sessionmaker() as session:
        ran = {
            cid: at
            for cid, at in session.execute(
                select(Campaign.id, Campaign.materialized_at).where(
                    Campaign.id.in_((cadence, yearly, paused, draft))
                )
            )
        }
    assert ran == {cadence: NOW, yearly: NOW, paused: None, draft: None}

    tasks.materialize_occurrences()  # the next tick: nothing more, nothing twice
    assert len(shop.occurrences()) == 2 * len(people)


def _failures(task_name: str) -> float:
    return REGISTRY.get_sample_value("huifang_periodic_failures_total", {"task": task_name}) or 0.0


def test_the_materialize_tick_commits_each_campaign_and_goes_on_past_one_that_fails(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = shop.customers([FIRST_SERVED + dt.timedelta(days=k) for k in range(3)])
    first, second, third = shop.campaign(AC_90), shop.campaign(AC_90), shop.campaign(AC_90)
    materialize = materializer.materialize
    calls: list[int] = []

    def fails_on_the_second(**kwargs: Any) -> dict[int, int]:
        calls.append(kwargs["campaign_id"])
        made = materialize(**kwargs)
        if kwargs["campaign_id"] == second:
            raise RuntimeError("a campaign the materializer cannot do")
        return made

    monkeypatch.setattr(materializer, "materialize", fails_on_the_second)
    before = _failures("materialize_occurrences")
    tasks.materialize_occurrences()  # does not raise: the others are done
    assert [c for c in calls if c in (first, second, third)] == [first, second, third]
    # The first campaign's rows were committed before the second began; the second's
    # were rolled back alone, and the third was done after it.
    assert sorted(o.customer_id for o in shop.occurrences(first)) == people
    assert shop.occurrences(second) == []
    assert sorted(o.customer_id for o in shop.occurrences(third)) == people
    assert _failures("materialize_occurrences") == before + 1

    monkeypatch.setattr(materializer, "materialize", materialize)
    tasks.materialize_occurrences()  # the next tick does the one that failed
    assert sorted(o.customer_id for o in shop.occurrences(second)) == people
    assert len(shop.occurrences(first)) == len(people)


def test_a_far_future_visit_stalls_neither_its_company_nor_the_others(
    shop: Shop, committed_db: Database
) -> None:
    """A visit typed as 9999-12-31 before dates were checked: its customer names no date,
    the company's campaign still runs, and so does the next company's."""
    people = shop.customers([FIRST_SERVED, FIRST_SERVED + dt.timedelta(days=1)])
    with committed_db.session() as session:
        session.execute(
            update(Visit)
            .where(Visit.customer_id == people[0])
            .values(finished_at=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
        )
    stalled = shop.campaign(AC_90)
    with committed_db.session() as session:
        other = tenancy.create_tenant(session=session, name="另一家", signature="另一家")
        other_id = other.id
    try:
        neighbour = Shop(committed_db, other_id)
        theirs = neighbour.customers([FIRST_SERVED])
        later = neighbour.campaign(AC_90)
        tasks.materialize_occurrences()
        assert [o.customer_id for o in shop.occurrences(stalled)] == [people[1]]
        assert [o.customer_id for o in neighbour.occurrences(later)] == theirs
        with committed_db.session() as session:
            tenant = session.get(Tenant, shop.tenant_id)
            assert tenant is not None
            shown = campaign_preview.preview(
                session=session, tenant=tenant, campaign_id=stalled, now=NOW
            )
            assert shown.audience.matched == 1 and shown.can_activate
    finally:
        with committed_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == other_id))


# --- hand_off_due_occurrences -------------------------------------------------------------


@pytest.fixture
def due(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[int]]:
    """``DUE`` occurrences due on 9–18 April (one a day) and one due on the 24th, materialized
    on the 8th; hand-off batches of ``BATCH``. Returns the campaign and the due customers."""
    served = [FIRST_SERVED + dt.timedelta(days=k) for k in range(DUE)]
    people = shop.customers([*served, FIRST_SERVED + dt.timedelta(days=15)])
    campaign = shop.campaign(AC_90)
    with shop.db.session() as session:
        assert materializer.materialize(session=session, now=EARLIER, campaign_id=campaign) == {
            campaign: DUE + 1
        }
    assert _due_elsewhere(shop.db, shop.tenant_id) == 0, "another test left due occurrences"
    # The tick passes HAND_OFF_BATCH as the batch size and knows a short batch by it.
    monkeypatch.setattr(handoff, "HAND_OFF_BATCH", BATCH)
    return campaign, people[:DUE]


def _spy(
    monkeypatch: pytest.MonkeyPatch, after: Callable[[int], None] = lambda n: None
) -> list[int]:
    """Record how many occurrences each hand-off batch claimed; ``after(batch number)``
    runs once the batch's work is done (and before the task commits it)."""
    hand_off_due = handoff.hand_off_due
    claimed: list[int] = []

    def spy(**kwargs: Any) -> handoff.HandOff:
        batch = hand_off_due(**kwargs)
        claimed.append(batch.claimed)
        after(len(claimed))
        return batch

    monkeypatch.setattr(handoff, "hand_off_due", spy)
    return claimed


def test_hand_off_goes_batch_by_batch_until_one_comes_back_short(
    shop: Shop, due: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign, people = due
    claimed = _spy(monkeypatch)

    tasks.hand_off_due_occurrences()

    assert claimed == [3, 3, 3, 1]  # the fourth batch is short: the tick stops there
    rows = shop.occurrences(campaign)
    handed = [o for o in rows if o.status == HANDED_OFF]
    assert [o.customer_id for o in handed] == people  # in due order, each once
    assert [o.status for o in rows[DUE:]] == [PENDING]  # due on the 24th: not yet
    messages = shop.messages()
    assert len(messages) == DUE  # one per handed-off occurrence
    assert sorted(m.source_id for m in messages) == sorted(f"{campaign}:{o.id}" for o in handed)
    assert {m.id: m.due_at for m in messages} == {o.message_id: o.due_at for o in handed}

    tasks.hand_off_due_occurrences()  # the next tick finds nothing left to hand off
    assert claimed[4:] == [0] and len(shop.messages()) == DUE


def test_hand_off_commits_each_batch_so_a_crash_keeps_the_batches_before_it(
    shop: Shop, due: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign, people = due

    def crash_in_the_third(batch: int) -> None:
        if batch == 3:
            raise RuntimeError("the worker was lost")

    claimed = _spy(monkeypatch, crash_in_the_third)
    with pytest.raises(RuntimeError, match="worker was lost"):
        tasks.hand_off_due_occurrences()

    assert claimed == [3, 3, 3]
    rows = shop.occurrences(campaign)
    # Two batches on record, the third (done, not committed) rolled back with the task.
    assert [o.customer_id for o in rows if o.status == HANDED_OFF] == people[:6]
    assert len(shop.messages()) == 6

    tasks.hand_off_due_occurrences()  # a second delivery of the tick finishes the job
    assert claimed[3:] == [3, 1]
    rows = shop.occurrences(campaign)
    assert [o.customer_id for o in rows if o.status == HANDED_OFF] == people
    messages = shop.messages()
    assert len(messages) == DUE and len({m.customer_id for m in messages}) == DUE


def test_with_no_time_budget_the_tick_hands_off_nothing(
    shop: Shop, due: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is checked before each batch, the first included: at 0 s no batch starts."""
    campaign, _ = due
    claimed = _spy(monkeypatch)
    monkeypatch.setattr(tasks, "HAND_OFF_BUDGET_SECONDS", 0)

    tasks.hand_off_due_occurrences()

    assert claimed == []
    assert {o.status for o in shop.occurrences(campaign)} == {PENDING}
    assert shop.messages() == []


def test_the_time_budget_stops_starting_batches_and_the_next_tick_takes_the_rest(
    shop: Shop, due: tuple[int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch starts while the budget lasts and may run past it; none starts after."""
    campaign, people = due
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(tasks, "time", SimpleNamespace(monotonic=lambda: clock.now))

    def takes_twenty_seconds(batch: int) -> None:
        clock.now += 20

    claimed = _spy(monkeypatch, takes_twenty_seconds)
    monkeypatch.setattr(tasks, "HAND_OFF_BUDGET_SECONDS", 45)

    tasks.hand_off_due_occurrences()

    # Batches start at 0, 20 and 40 s; the third ends at 60 s, past the budget, and no
    # fourth starts, although the third was full.
    assert claimed == [3, 3, 3]
    rows = shop.occurrences(campaign)
    assert [o.customer_id for o in rows if o.status == HANDED_OFF] == people[:9]
    assert [o.customer_id for o in rows if o.status == PENDING and o.due_at <= NOW] == [people[9]]

    tasks.hand_off_due_occurrences()
    assert claimed[3:] == [1]
    assert [o.customer_id for o in shop.occurrences(campaign) if o.status == HANDED_OFF] == people


def test_a_campaign_whose_hand_off_fails_waits_and_the_others_go(
    shop: Shop, committed_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = [FIRST_SERVED + dt.timedelta(days=k) for k in range(3)]
    mine = shop.customers(served)
    broken = shop.campaign(AC_90)
    with committed_db.session() as session:
        other_id = tenancy.create_tenant(session=session, name="隔壁家政", signature="隔壁家政").id
    try:
        neighbour = Shop(committed_db, other_id)
        theirs = neighbour.customers(served)
        working = neighbour.campaign(AC_90)
        with committed_db.session() as session:
            for campaign in (broken, working):
                materializer.materialize(session=session, now=EARLIER, campaign_id=campaign)
        schedule = handoff._schedule

        def fails_for_one(session, tenant, campaign, *args):  # type: ignore[no-untyped-def]
            if campaign.id == broken:
                raise RuntimeError("a template the renderer chokes on")
            return schedule(session, tenant, campaign, *args)

        monkeypatch.setattr(handoff, "_schedule", fails_for_one)
        before = _failures("hand_off_due_occurrences")
        tasks.hand_off_due_occurrences()

        assert sorted(m.customer_id for m in neighbour.messages()) == theirs
        assert shop.messages() == []
        waiting = shop.occurrences(broken)
        assert [(o.status, o.due_at) for o in waiting] == [
            (PENDING, NOW + handoff.HAND_OFF_RETRY)
        ] * 3
        assert "tried again" in (waiting[0].detail or "")
        assert _failures("hand_off_due_occurrences") == before + 1

        monkeypatch.setattr(handoff, "_schedule", schedule)
        tasks.hand_off_due_occurrences()  # not yet: they wait ten minutes
        assert shop.messages() == []
        monkeypatch.setattr(tasks, "utcnow", lambda: NOW + handoff.HAND_OFF_RETRY)
        tasks.hand_off_due_occurrences()
        assert sorted(m.customer_id for m in shop.messages()) == mine
    finally:
        with committed_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == other_id))
