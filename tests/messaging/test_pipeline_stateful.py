"""The send pipeline as a state machine: invariants 1–4 and 6 under any order of events.

Hypothesis drives the outbox through what production does to it, in any order: messages
scheduled (and scheduled again for the same cause), the dispatcher's tick (``claim_due`` +
``sweep``), send tasks delivered once, twice, lost, or claimed by two workers before either
delivers, workers dying mid-send, every provider outcome, Twilio receipts late, repeated and
out of order, an opt-out of the customer's number at any moment, an operator's retry of an
``unknown`` message, and time passing (quiet hours, back-offs). Every step runs in committed
transactions, as the real tasks do, on SQLite and on PostgreSQL.

After every step:

- no idempotency key reached the provider twice, counting the calls that may have created a
  message (accepted, or timed out after the request left), except one more per operator
  retry of an ``unknown`` message;
- no provider call for a number after its opt-out (or suppression) committed;
- each message's history only moves forward through ``TRANSITIONS``, ends at its status, and
  an update was ignored only when the lifecycle forbids it;
- each call was allowed by the gate (an audit row says ``send``), not before the message was
  due, inside the customer's sending window, and never more marketing per number than the cap.

At the end the workers finish, time moves past every back-off and window and the tick runs
until nothing is waiting; what was sent gets a ``delivered`` receipt. Every message is then
final or ``unknown``, and ``unknown`` only where a send timed out after the request left or
a worker stopped holding the claim.

The provider is a test double of OUR interface (``Provider``), not of a network: it records
each call and raises whichever outcome the machine chose. It is named ``twilio`` because
receipts are read by provider name, and the machine's receipts speak Twilio's statuses.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from compliance import service as compliance
from compliance.models import SEND, ComplianceDecision, Suppression
from customers import service as customers
from customers.models import Customer
from huifang.db import Database, read_only_connection
from messaging import service as outbox
from messaging.models import (
    DEFERRED,
    FINAL,
    QUEUED,
    RATE_LIMITED,
    RETRY_BACKOFF,
    SCHEDULED,
    SENDING,
    SENT,
    TRANSITIONS,
    UNKNOWN,
    Message,
    MessageEvent,
)
from messaging.providers.base import (
    Capabilities,
    OutboundMessage,
    PermanentError,
    Provider,
    RecipientOptedOut,
    RequestMayHaveLeft,
    RetryableError,
    SendResult,
)
from messaging.receipts import RECEIPT_PROGRESS, apply_receipt
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.conftest import Account

# 10:00 in Shanghai, 18:00 the day before in Los Angeles. Years ahead of the wall clock on
# purpose: the ORM stamps ``updated_at`` with the real time, so a row it touches looks old to
# the simulated sweep (it may be swept early, which is allowed) and never looks new forever.
START = dt.datetime(2030, 11, 25, 2, 0, tzinfo=dt.UTC)
MARKETING_CAP = 2  # the default policy: 2 marketing messages per number per 90 days
WINDOW = (8 * 60, 21 * 60)  # the default sending window, minutes after local midnight


@dataclass(frozen=True)
class Person:
    name: str
    phone: str
    consents: bool  # to marketing


PEOPLE = (
    Person("王女士", "13800138000", consents=True),  # Shanghai
    Person("Ms Chen", "+1 415 555 2671", consents=True),  # Los Angeles: another window
)


@dataclass(frozen=True)
class Cause:
    category: str
    source_type: str
    source_id: str
    body: str


CAUSES = (
    Cause(
        "service",
        "visit_report",
        "visit-1",
        "您好，本次空调清洗的服务报告已生成：https://hf.example/r/a1",
    ),
    Cause(
        "service",
        "visit_report",
        "visit-2",
        "您好，本次深度保洁的服务报告已生成：https://hf.example/r/b2",
    ),
    Cause("marketing", "campaign", "spring:occ-1", "春季空调清洗九折，回复1预约"),
    Cause("marketing", "campaign", "summer:occ-1", "梅雨季前除湿保养，回复1预约"),
    Cause("marketing", "campaign", "winter:occ-1", "春节前深度保洁，回复1预约"),
    Cause("marketing", "campaign", "autumn:occ-1", "秋季油烟机清洗，回复1预约"),
)

# Provider outcomes the machine can choose for a delivery.
OK = "ok"
RETRYABLE = "retryable"  # 503: nothing was sent
RETRY_AFTER = "retry_after"  # 429 with Retry-After longer than the back-off
PERMANENT = "permanent"  # a landline
OPTED_OUT = "opted_out"  # Twilio 21610
MAY_HAVE_LEFT = "may_have_left"  # read timeout after the request was written
THROTTLED = "throttled"  # the shared send rate had no slot: no provider call at all
OUTCOMES = (
    OK,
    OK,
    RETRYABLE,
    RETRY_AFTER,
    PERMANENT,
    OPTED_OUT,
    MAY_HAVE_LEFT,
    MAY_HAVE_LEFT,
    THROTTLED,
)
# Twilio statuses a callback may carry, and error codes on undelivered/failed ones:
# 30003 unreachable handset (nothing more), 21610 unsubscribed (a suppression),
# 30005 unknown number (a suppression that is not the customer's choice).
RECEIPTS = ("queued", "sent", "delivered", "read", "undelivered", "failed", "canceled")
ERROR_CODES = (None, "30003", None, "21610", None, "30005")
DELAYS = (0, 0, 2, 45, 180)  # minutes between scheduling and due
STEPS = (1, 2, 6, 11, 60, 9 * 60, 13 * 60)  # minutes the clock moves
WAITING = frozenset({SCHEDULED, DEFERRED, QUEUED, SENDING})


# -- the events hypothesis chooses from -----------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The company schedules the next cause of its plan (or, ``again``, one it already did)."""

    again: bool
    delay: int  # minutes until due


@dataclass(frozen=True)
class Tick:
    """The dispatcher's periodic tick: ``claim_due`` and ``sweep``, tasks for what they return."""


@dataclass(frozen=True)
class RunTask:
    """A worker takes a task from the broker (after a tick, if none is waiting) and runs it
    through: claim, then deliver."""

    pick: int
    outcome: str


@dataclass(frozen=True)
class Claim:
    """A worker runs only the claim of a task so far: others may act before it delivers."""

    pick: int


@dataclass(frozen=True)
class Deliver:
    """A worker that claimed delivers: gate, provider call with ``outcome``, record."""

    pick: int
    outcome: str


@dataclass(frozen=True)
class WorkerDies:
    """A worker that claimed is killed before it records anything."""

    pick: int


@dataclass(frozen=True)
class BrokerLoses:
    """A waiting task disappears (a Redis flush)."""

    pick: int


@dataclass(frozen=True)
class BrokerRedelivers:
    """A task already sent is delivered again (acks_late after a lost worker)."""

    pick: int


@dataclass(frozen=True)
class Receipt:
    """A Twilio status callback for something Twilio created."""

    pick: int
    status: str
    code: str | None


@dataclass(frozen=True)
class OptOut:
    """The customer replies T (回复T退订)."""

    person: int


@dataclass(frozen=True)
class OperatorRetry:
    """Someone looked at an ``unknown`` message and sends it again."""

    pick: int


@dataclass(frozen=True)
class TimePasses:
    minutes: int


Event = (
    Schedule
    | Tick
    | RunTask
    | Claim
    | Deliver
    | WorkerDies
    | BrokerLoses
    | BrokerRedelivers
    | Receipt
    | OptOut
    | OperatorRetry
    | TimePasses
)
PICK = st.integers(0, 99)


def _weighted(*choices: tuple[int, st.SearchStrategy[Event]]) -> st.SearchStrategy[Event]:
    """One of the strategies, chosen in proportion to its weight."""
    slots = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(slots).flatmap(lambda index: choices[index][1])


# The usual path (a worker runs a task, receipts, scheduling) comes up most, the rest often
# enough; the first comes up a little more than its weight says (hypothesis likes it).
EVENTS = _weighted(
    (6, st.builds(RunTask, pick=PICK, outcome=st.sampled_from(OUTCOMES))),
    (
        4,
        st.builds(
            Receipt, pick=PICK, status=st.sampled_from(RECEIPTS), code=st.sampled_from(ERROR_CODES)
        ),
    ),
    (3, st.builds(Schedule, again=st.booleans(), delay=st.sampled_from(DELAYS))),
    (3, st.just(Tick())),
    (3, st.builds(TimePasses, minutes=st.sampled_from(STEPS))),
    (2, st.builds(Claim, pick=PICK)),
    (2, st.builds(Deliver, pick=PICK, outcome=st.sampled_from(OUTCOMES))),
    (1, st.builds(WorkerDies, pick=PICK)),
    (1, st.builds(BrokerLoses, pick=PICK)),
    (1, st.builds(BrokerRedelivers, pick=PICK)),
    (1, st.builds(OptOut, person=st.integers(0, len(PEOPLE) - 1))),
    (1, st.builds(OperatorRetry, pick=PICK)),
)


@dataclass
class Call:
    """One call of the provider, as the machine saw it."""

    message_id: int
    to: str
    step: int
    at: dt.datetime
    sid: str
    outcome: str

    @property
    def may_have_gone(self) -> bool:
        """The provider created a message (accepted, or the answer was lost after the request)."""
        return self.outcome in (OK, MAY_HAVE_LEFT)


class RecordingProvider(Provider):
    """Our provider interface, recording each call and answering with the chosen outcome."""

    name = "twilio"
    capabilities = Capabilities(max_body_chars=1600)

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.outcome = OK
        self.step = 0
        self.now = START

    def send(self, message: OutboundMessage) -> SendResult:
        call = Call(
            message.message_id,
            message.to,
            self.step,
            self.now,
            "SM" + uuid.uuid4().hex,
            self.outcome,
        )
        self.calls.append(call)
        if call.outcome == RETRYABLE:
            raise RetryableError(
                "Twilio had a server error (HTTP 503); nothing was sent.", code="20500"
            )
        if call.outcome == RETRY_AFTER:
            raise RetryableError(
                "Twilio is receiving too many requests.", code="20429", retry_after=30 * 60
            )
        if call.outcome == PERMANENT:
            raise PermanentError("The customer's number is a landline.", code="21614")
        if call.outcome == OPTED_OUT:
            raise RecipientOptedOut("The customer unsubscribed at Twilio.", code="21610")
        if call.outcome == MAY_HAVE_LEFT:
            raise RequestMayHaveLeft("Read timeout after the request was written.")
        return SendResult(provider_message_id=call.sid, status="queued")


@dataclass(frozen=True)
class Tracked:
    """A message the machine scheduled: what the invariants need to know about it."""

    key: str
    phone: str
    zone: str
    category: str
    due: dt.datetime


@dataclass(frozen=True)
class Row:
    """A message as the database holds it after a step."""

    status: str
    due_at: dt.datetime
    provider_message_id: str | None
    history: tuple[tuple[str, str | None, bool], ...]  # (status, reason, applied)


def _in_window(at: dt.datetime, zone: str) -> bool:
    local = at.astimezone(ZoneInfo(zone))
    return WINDOW[0] <= local.hour * 60 + local.minute < WINDOW[1]


def check_history(message_id: int, row: Row) -> None:
    """Applied changes follow TRANSITIONS from ``scheduled`` to the current status; an
    ignored one (receipt progress aside) was ignored because the lifecycle forbids it."""
    first = row.history[0]
    assert first[0] == SCHEDULED and first[2], (message_id, row.history)
    current = SCHEDULED
    for status, reason, applied in row.history[1:]:
        if applied:
            assert status in TRANSITIONS[current], (
                f"message {message_id} moved {current} → {status}: {row.history}"
            )
            current = status
        elif reason != RECEIPT_PROGRESS:
            assert status not in TRANSITIONS[current], (
                f"message {message_id}: {current} → {status} was allowed but ignored"
            )
    assert current == row.status, (message_id, current, row.status, row.history)


class SendPipeline(RuleBasedStateMachine):
    """One company, three customers, five causes; the database is the real one."""

    database: ClassVar[Database]

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.step = 0
        self.provider = RecordingProvider()
        self.messages: dict[int, Tracked] = {}
        self.rows: dict[int, Row] = {}
        self.tasks: list[int] = []  # task deliveries waiting in the broker
        self.enqueued: list[int] = []  # every task ever sent (the broker may deliver again)
        self.in_flight: list[tuple[int, dt.datetime]] = []  # claimed, not yet delivered
        self.last_claim: dict[int, dt.datetime] = {}  # each message's latest claim
        self.retries: Counter[int] = Counter()  # operator retries per message
        self.may_be_unknown: set[int] = set()
        self.suppressed_at: dict[str, int] = {}  # phone → step its suppression was seen
        self.opt_outs = 0
        self.calls_checked = 0
        self.reader = read_only_connection(self.database.engine)
        with self.database.session() as session:
            tenant = tenancy.create_tenant(
                session=session, name=f"状态机家政 {uuid.uuid4().hex[:8]}", signature="状态机家政"
            )
            self.people: list[Customer] = []
            for person in PEOPLE:
                customer = customers.create_customer(
                    session=session, tenant=tenant, name=person.name, phone=person.phone
                )
                if person.consents:
                    compliance.record_consent(
                        session=session,
                        tenant_id=tenant.id,
                        customer=customer,
                        source="in_person",
                        evidence="上门时签字确认",
                        granted_at=START - dt.timedelta(days=30),
                        now=START,
                    )
                self.people.append(customer)
            self.tenant_id = tenant.id

    # -- helpers ---------------------------------------------------------------------------

    def _tenant(self, session: Session) -> Tenant:
        tenant = session.get(Tenant, self.tenant_id)
        assert tenant is not None
        return tenant

    def _pick(self, items: list[int], pick: int) -> int:
        return items.pop(pick % len(items))

    def _tick(self) -> None:
        """What ``dispatch_due`` does at ``self.now``: claim what is due, sweep what is stuck."""
        with self.database.session() as session:
            ids = outbox.claim_due(session=session, now=self.now) + outbox.sweep(
                session=session, now=self.now
            )
        ours = [message_id for message_id in ids if message_id in self.messages]
        self.tasks += ours
        self.enqueued += ours
        # A message retried by an operator may be claimed again while an earlier worker still
        # holds its old, swept claim: only the latest claim says whether the row is stuck,
        # even when the worker that made it has died since.
        stale = {
            message_id
            for message_id, _ in self.in_flight
            if self.now - self.last_claim[message_id] > outbox.STUCK_SENDING
        }
        self.may_be_unknown |= stale
        if stale:
            with self.database.session() as session:
                still = session.scalars(
                    select(Message.id).where(Message.id.in_(stale), Message.status == SENDING)
                ).all()
            assert not still, f"the sweep left stale claims sending: {still}"

    def _claim(self, message_id: int) -> bool:
        with self.database.session() as session:
            claimed = outbox.claim_for_send(session=session, message_id=message_id, now=self.now)
        if claimed:
            self.in_flight.append((message_id, self.now))
            self.last_claim[message_id] = self.now
        return claimed

    def _deliver(self, message_id: int, outcome: str) -> None:
        self.provider.outcome, self.provider.step, self.provider.now = (
            outcome,
            self.step,
            self.now,
        )
        before = len(self.provider.calls)
        with self.database.session() as session:
            outbox.deliver(
                session=session,
                message_id=message_id,
                provider=self.provider,
                now=self.now,
                throttle=(lambda: False) if outcome == THROTTLED else (lambda: True),
            )
        calls = self.provider.calls[before:]
        assert len(calls) <= 1, "one delivery, more than one provider call"
        assert not (calls and outcome == THROTTLED), "a throttled send reached the provider"
        if calls and outcome == MAY_HAVE_LEFT:
            self.may_be_unknown.add(message_id)

    # -- what happens ----------------------------------------------------------------------

    @initialize(
        plan=st.permutations(
            [(person, cause) for person in range(len(PEOPLE)) for cause in range(len(CAUSES))]
        ),
        first=st.lists(st.sampled_from(DELAYS), min_size=3, max_size=8),
    )
    def plan_the_causes(self, plan: list[tuple[int, int]], first: list[int]) -> None:
        """The order in which (customer, cause) pairs get their message; the first few now."""
        self.plan = plan
        for delay in first:
            self._schedule(again=False, delay=delay)

    @rule(event=EVENTS)
    def happens(self, event: Event) -> None:
        """One event from the outside world (a single rule, so every kind stays in play)."""
        match event:
            case Schedule(again=again, delay=delay):
                self._schedule(again, delay)
            case Tick():
                self._tick()
            case RunTask(pick=pick, outcome=outcome):
                if not self.tasks:
                    self._tick()  # an idle worker waits for beat's next tick
                if self.tasks:
                    message_id = self._pick(self.tasks, pick)
                    if self._claim(message_id):
                        self.in_flight.pop()
                        self._deliver(message_id, outcome)
            case Claim(pick=pick) if self.tasks:
                self._claim(self._pick(self.tasks, pick))
            case Deliver(pick=pick, outcome=outcome) if self.in_flight:
                message_id, _ = self.in_flight.pop(pick % len(self.in_flight))
                self._deliver(message_id, outcome)
            case WorkerDies(pick=pick) if self.in_flight:
                message_id, _ = self.in_flight.pop(pick % len(self.in_flight))
                self.may_be_unknown.add(message_id)  # the sweep cannot know whether it went
            case BrokerLoses(pick=pick) if self.tasks:
                self._pick(self.tasks, pick)
            case BrokerRedelivers(pick=pick) if self.enqueued:
                self.tasks.append(self.enqueued[pick % len(self.enqueued)])
            case Receipt(pick=pick, status=status, code=code):
                self._receipt(pick, status, code)
            case OptOut(person=person) if not self.opt_outs:
                self.opt_outs += 1  # once a run (receipts and the provider add more)
                with self.database.session() as session:
                    compliance.opt_out(
                        session=session,
                        tenant=self._tenant(session),
                        phone=self.people[person].phone,
                        reason="reply_opt_out",
                        detail="T",
                        now=self.now,
                    )
            case OperatorRetry(pick=pick):
                self._operator_retry(pick)
            case TimePasses(minutes=minutes):
                self.now += dt.timedelta(minutes=minutes)

    def _schedule(self, again: bool, delay: int) -> None:
        """The next cause in the plan gets its message; or one already scheduled, again."""
        if again or len(self.messages) == len(self.plan):
            if not self.messages:
                return
            person, cause = self.plan[(len(self.messages) - 1) // 2]
        else:
            person, cause = self.plan[len(self.messages)]
        what = CAUSES[cause]
        due = self.now + dt.timedelta(minutes=delay)
        with self.database.session() as session:
            customer = session.get(Customer, self.people[person].id)
            assert customer is not None
            message, new = outbox.schedule(
                session=session,
                tenant=self._tenant(session),
                customer=customer,
                channel="sms",
                category=what.category,
                source_type=what.source_type,
                source_id=what.source_id,
                body=what.body,
                due_at=due,
            )
            message_id, key = message.id, message.idempotency_key
            zone = customer.timezone
        assert new == (message_id not in self.messages), "one message per cause, ever"
        if new:
            self.messages[message_id] = Tracked(
                key, self.people[person].phone, zone, what.category, due
            )
        else:
            assert self.messages[message_id].key == key

    def _receipt(self, pick: int, status: str, code: str | None) -> None:
        """Twilio's status callback for a message it created: late, again, out of order."""
        gone = [call for call in self.provider.calls if call.may_have_gone]
        if not gone:
            with self.database.session() as session:  # a receipt for nothing of ours
                assert (
                    apply_receipt(
                        session=session,
                        provider="twilio",
                        provider_message_id="SM" + uuid.uuid4().hex,
                        status=status,
                        error_code=None,
                        now=self.now,
                    )
                    is None
                )
            return
        call = gone[pick % len(gone)]
        with self.database.session() as session:
            message = apply_receipt(
                session=session,
                provider="twilio",
                provider_message_id=call.sid,
                status=status,
                error_code=code if status in ("undelivered", "failed") else None,
                now=self.now,
                message_id=call.message_id,
            )
            assert message is None or message.id == call.message_id
        if any(message_id == call.message_id for message_id, _ in self.in_flight):
            # Writing the provider's id stamps updated_at with the wall clock, years before
            # the simulated one: the sweep may then take the claim for a stuck one.
            self.may_be_unknown.add(call.message_id)

    def _operator_retry(self, pick: int) -> None:
        unknown = sorted(i for i, row in self.rows.items() if row.status == UNKNOWN)
        if not unknown:
            return
        message_id = unknown[pick % len(unknown)]
        with self.database.session() as session:
            outbox.retry(
                session=session, tenant_id=self.tenant_id, message_id=message_id, now=self.now
            )
        self.retries[message_id] += 1
        self.tasks.append(message_id)  # the API enqueues the send after its commit
        self.enqueued.append(message_id)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        self._check()
        self.step += 1

    def _check(self) -> None:
        # Plain selects on a connection of the machine's own: this runs after every step.
        new_calls = self.provider.calls[self.calls_checked :]
        with self.reader.begin():
            history: dict[int, list[tuple[str, str | None, bool]]] = {}
            messages: dict[int, tuple[str, dt.datetime, str | None]] = {}
            for event in self.reader.execute(
                select(
                    Message.id,
                    Message.status.label("now"),
                    Message.due_at,
                    Message.provider_message_id,
                    MessageEvent.status,
                    MessageEvent.reason,
                    MessageEvent.applied,
                )
                .join(MessageEvent, MessageEvent.message_id == Message.id)
                .where(Message.tenant_id == self.tenant_id)
                .order_by(MessageEvent.id)
            ):
                messages[event.id] = (event.now, event.due_at, event.provider_message_id)
                history.setdefault(event.id, []).append((event.status, event.reason, event.applied))
            suppressed = self.reader.scalars(
                select(Suppression.phone).where(Suppression.tenant_id == self.tenant_id)
            ).all()
            allowed = (
                set(
                    self.reader.scalars(
                        select(ComplianceDecision.message_ref).where(
                            ComplianceDecision.tenant_id == self.tenant_id,
                            ComplianceDecision.decision == SEND,
                            ComplianceDecision.message_ref.in_(
                                {self.messages[call.message_id].key for call in new_calls}
                            ),
                        )
                    )
                )
                if new_calls
                else set()
            )
        self.rows = {
            message_id: Row(*row, tuple(history[message_id]))
            for message_id, row in messages.items()
        }
        for call in new_calls:
            key = self.messages[call.message_id].key
            assert key in allowed, f"message {call.message_id} sent without a 'send' decision"
        self.calls_checked += len(new_calls)
        assert set(self.rows) == set(self.messages)
        for message_id, row in self.rows.items():
            check_history(message_id, row)
        for phone in suppressed:  # suppressions are never lifted here (no opt-in)
            self.suppressed_at.setdefault(phone, self.step)

        gone: Counter[int] = Counter()
        marketing: dict[str, set[int]] = {}
        for call in self.provider.calls:
            tracked = self.messages[call.message_id]
            assert call.to == tracked.phone
            opted_out = self.suppressed_at.get(call.to)
            assert opted_out is None or call.step <= opted_out, (
                f"message {call.message_id} went to {call.to} at step {call.step}, after the "
                f"number's opt-out committed at step {opted_out}"
            )
            assert call.at >= tracked.due, f"message {call.message_id} sent before it was due"
            assert _in_window(call.at, tracked.zone), (
                f"message {call.message_id} sent at {call.at} in quiet hours ({tracked.zone})"
            )
            gone[call.message_id] += call.may_have_gone
            # The cap is on what may have reached the customer: a refused or failed call
            # takes no place (``compliance.uncount_marketing``).
            if tracked.category == "marketing" and call.may_have_gone:
                marketing.setdefault(call.to, set()).add(call.message_id)
        for message_id, count in gone.items():
            assert count <= 1 + self.retries[message_id], (
                f"message {message_id} ({self.messages[message_id].key}) reached the provider "
                f"{count} times with {self.retries[message_id]} operator retries"
            )
        for phone, sent in marketing.items():
            assert len(sent) <= MARKETING_CAP, f"{phone} got marketing {sorted(sent)}"

    # -- the end: everything settles -------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._settle()
        finally:
            self.reader.close()
            with self.database.session() as session:
                session.execute(delete(Tenant).where(Tenant.id == self.tenant_id))

    def _settle(self) -> None:
        """Workers finish, time passes every back-off and window, ticks run until quiet."""
        while self.in_flight:
            message_id, _ = self.in_flight.pop()
            self._deliver(message_id, OK)
        self._check()
        for _ in range(40):
            waiting = [row for row in self.rows.values() if row.status in WAITING]
            if not waiting and not self.tasks:
                break
            due = max(
                (row.due_at for row in waiting if row.status in (SCHEDULED, DEFERRED)),
                default=self.now,
            )
            # Past the back-offs and windows, and past the sweep's thresholds for lost tasks.
            self.now = max(self.now + outbox.STUCK_SENDING + dt.timedelta(minutes=1), due)
            self._tick()
            while self.tasks:
                message_id = self.tasks.pop(0)
                if self._claim(message_id):
                    self.in_flight.pop()
                    self._deliver(message_id, OK)
            self.invariants_hold()
        else:
            raise AssertionError(f"still waiting after 40 ticks: {self.rows}")

        # The carrier's last word on what went out.
        for message_id, row in self.rows.items():
            if row.status == SENT:
                assert row.provider_message_id is not None
                with self.database.session() as session:
                    apply_receipt(
                        session=session,
                        provider="twilio",
                        provider_message_id=row.provider_message_id,
                        status="delivered",
                        error_code=None,
                        now=self.now,
                        message_id=message_id,
                    )
        self.invariants_hold()
        unsettled = {
            i: row.status for i, row in self.rows.items() if row.status not in FINAL | {UNKNOWN}
        }
        assert not unsettled, f"not final after settling: {unsettled}"
        unknown = {i for i, row in self.rows.items() if row.status == UNKNOWN}
        unexplained = sorted(unknown - self.may_be_unknown)
        assert not unexplained, f"unknown without a timeout or a stopped worker: {unexplained}"


SETTINGS = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _commit_without_waiting_for_the_disk(dbapi_connection: Any, _record: Any) -> None:
    # A few thousand small commits per run: not waiting for each WAL flush roughly halves
    # the time on PostgreSQL. Durability after a crash is all it gives up; what concurrent
    # transactions see, and when, is unchanged.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    dbapi_connection.commit()


def test_the_send_pipeline_keeps_its_invariants(database: Database) -> None:
    own = Database(database.url)  # the same database, through an engine of the test's own
    if own.engine.dialect.name == "postgresql":
        event.listen(own.engine, "connect", _commit_without_waiting_for_the_disk)
    machine = type(
        f"SendPipelineOn{own.engine.dialect.name.capitalize()}", (SendPipeline,), {"database": own}
    )
    try:
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        own.dispose()


# -- found while writing the machine -------------------------------------------------------


def test_rate_limit_deferrals_do_not_use_up_the_retries(session: Session, account: Account) -> None:
    """A send the rate limiter deferred never reached the provider: it is not an attempt.

    ``MAX_ATTEMPTS`` bounds retryable provider errors ("retries exhausted"). Four minutes of
    a full send rate (a campaign burst) followed by one 503 must back off, not give up.
    """
    customer = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    message, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id="visit-1",
        body="您好，服务报告已生成",
        due_at=START,
    )
    provider = RecordingProvider()
    now = START
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        assert message.id in outbox.claim_due(session=session, now=now)
        assert outbox.claim_for_send(session=session, message_id=message.id, now=now)
        outbox.deliver(
            session=session,
            message_id=message.id,
            provider=provider,
            now=now,
            throttle=lambda: False,
        )
        session.refresh(message)
        assert (message.status, message.status_reason) == (DEFERRED, RATE_LIMITED)
        now = message.due_at
    assert provider.calls == []  # nothing has been tried at the provider yet

    provider.outcome = RETRYABLE
    assert message.id in outbox.claim_due(session=session, now=now)
    assert outbox.claim_for_send(session=session, message_id=message.id, now=now)
    outbox.deliver(
        session=session, message_id=message.id, provider=provider, now=now, throttle=lambda: True
    )
    session.refresh(message)
    assert len(provider.calls) == 1
    assert (message.status, message.status_reason) == (DEFERRED, RETRY_BACKOFF), (
        f"one provider error after {outbox.MAX_ATTEMPTS - 1} rate-limit deferrals ended as "
        f"{message.status} ({message.status_reason}); attempts={message.attempts}"
    )
