"""The outbox: schedule messages as rows, claim the due ones, send through the gate.

A send is two transactions, committed by the task that runs them
(``messaging.tasks.send_in_batches``):

1. ``claim_for_send``: ``queued → sending``, a conditional update. A second delivery of
   the task finds nothing to claim. If the worker dies after this, the row stays
   ``sending`` and ``sweep`` later marks it ``unknown``: it is never sent twice.
2. ``deliver``: the compliance gate (which takes the per-number lock that opt-outs also
   take), the provider call, and the outcome, in one transaction. An opt-out committed
   before it is seen; one arriving during it waits for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    any_,
    bindparam,
    insert,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.util import identity_key

from compliance import service as compliance
from compliance.models import DEFER, REFUSE, SUPPRESS
from customers.models import Customer
from huifang.db import dialect_of, insert_or_skip
from huifang.errors import Conflict, NotFound
from huifang.settings import get_settings
from huifang.sql import driver_sql
from messaging import sms_templates
from messaging.models import (
    DEFERRED,
    FAILED,
    NO_TEMPLATE,
    PROVIDER_REFUSED,
    QUEUED,
    RATE_LIMITED,
    RETRIES_EXHAUSTED,
    RETRY_BACKOFF,
    SCHEDULED,
    SENDING,
    SENT,
    SUPPRESSED,
    TIMEOUT_AFTER_SEND,
    TRANSITIONS,
    UNKNOWN,
    Message,
    MessageEvent,
    SmsTemplate,
)
from messaging.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RecipientOptedOut,
    RequestMayHaveLeft,
    RetryableError,
    SendResult,
)
from tenancy.models import Tenant

MAX_ATTEMPTS = 5
BACKOFF_MINUTES = (1, 2, 5, 10, 20)  # minutes, never days: retries are not schedules
STUCK_SENDING = dt.timedelta(minutes=10)
STUCK_QUEUED = dt.timedelta(minutes=5)


def idempotency_key(
    *, tenant_id: int, source_type: str, source_id: str, customer_id: int, channel: str
) -> str:
    return f"{tenant_id}:{source_type}:{source_id}:{customer_id}:{channel}"


def schedule(
    *,
    session: Session,
    tenant: Tenant,
    customer: Customer,
    channel: str,
    category: str,
    source_type: str,
    source_id: str,
    body: str,
    due_at: dt.datetime,
    media_urls: Sequence[str] = (),
    purpose: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> tuple[Message, bool]:
    """The message for this cause, created once: the row and whether it is new.

    ``purpose`` (``sms_templates.PURPOSES``) and ``variables`` are what a provider that sends
    only approved templates fills the purpose's template from."""
    key = idempotency_key(
        tenant_id=tenant.id,
        source_type=source_type,
        source_id=source_id,
        customer_id=customer.id,
        channel=channel,
    )
    existing = session.scalars(select(Message).where(Message.idempotency_key == key)).first()
    if existing is not None:
        return existing, False
    message = Message(
        tenant_id=tenant.id,
        customer_id=customer.id,
        channel=channel,
        category=category,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=key,
        body=body,
        purpose=purpose,
        variables=_values(variables),
        media_urls=list(media_urls),
        status=SCHEDULED,
        due_at=due_at,
        attempts=0,
    )
    try:
        with session.begin_nested():
            session.add(message)
            session.flush()
    except IntegrityError:
        existing = session.scalars(select(Message).where(Message.idempotency_key == key)).one()
        return existing, False
    _event(session, message, SCHEDULED, None, None, applied=True, now=due_at)
    return message, True


def reply_message(
    *,
    session: Session,
    tenant_id: int,
    customer_id: int,
    source_type: str,
    source_id: str,
    body: str,
    now: dt.datetime,
    queue: bool,
    purpose: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> int | None:
    """An answer to a customer's reply (category ``reply``), created once per cause: its
    id when new, None when it already existed.

    Set-based, for the webhook's hot path: ``INSERT … ON CONFLICT DO NOTHING`` on the
    idempotency key, then its history in one statement. With ``queue`` it is created
    ``queued`` (the caller enqueues it once the transaction commits), else ``scheduled``.
    """
    key = idempotency_key(
        tenant_id=tenant_id,
        source_type=source_type,
        source_id=source_id,
        customer_id=customer_id,
        channel="sms",
    )
    statuses = (SCHEDULED, QUEUED) if queue else (SCHEDULED,)
    dialect = dialect_of(session)
    with_history = dialect == "postgresql"
    message_id = session.execute(
        _insert_reply_message_with_history(statuses)
        if with_history
        else _insert_reply_message(dialect),
        _reply_row(
            tenant_id=tenant_id,
            customer_id=customer_id,
            source_type=source_type,
            source_id=source_id,
            key=key,
            body=body,
            now=now,
            queue=queue,
            purpose=purpose,
            variables=variables,
        ),
    ).scalar_one_or_none()
    if message_id is None:
        return None
    if not with_history:
        session.execute(
            _INSERT_EVENT,
            [
                {
                    "tenant_id": tenant_id,
                    "message_id": message_id,
                    "status": status,
                    "reason": None,
                    "detail": None,
                    "applied": True,
                    "at": now,
                }
                for status in statuses
            ],
        )
    return int(message_id)


_REPLY_COLUMNS = (
    "tenant_id",
    "customer_id",
    "channel",
    "category",
    "source_type",
    "source_id",
    "idempotency_key",
    "body",
    "purpose",
    "variables",
    "media_urls",
    "status",
    "due_at",
    "attempts",
    "created_at",
    "updated_at",
)


@functools.cache
def _insert_reply_message_with_history(statuses: tuple[str, ...]) -> Any:
    """PostgreSQL: ``_insert_reply_message`` and, when it inserted, the message's history
    (one row per status, in order) in the same statement: one round trip instead of two."""
    table = cast(Table, Message.__table__)
    message = (
        postgresql.insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in _REPLY_COLUMNS})
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id, table.c.tenant_id, table.c.created_at)
        .cte("message")
    )
    return select(message.c.id).add_cte(_history(message, statuses))


# Marks where the cause's id goes in a source id and idempotency key (``reply_message_ctes``).
_CAUSE_ID = "\x00"


def reply_message_ctes(cause: Any, statuses: tuple[str, ...]) -> tuple[Any, Any]:
    """PostgreSQL: ``reply_message`` inside a statement of the caller's, for a cause made
    in the same statement: one message per row of ``cause`` (a CTE with an ``id`` column,
    none when it made nothing), whose source id and idempotency key carry that id. Two
    CTEs: the message (its ``id``) and its history (for ``add_cte``). Their values are
    ``reply_message_values``, bound with the prefix ``m_``."""
    table = cast(Table, Message.__table__)
    cause_id = cast_(cause.c.id, String())

    def bound(name: str) -> Any:
        return bindparam(f"m_{name}", type_=table.c[name].type)

    def around(name: str) -> Any:  # the value's text before the cause's id, the id, after
        return (
            bindparam(f"m_{name}_before", type_=String())
            + cause_id
            + bindparam(f"m_{name}_after", type_=String())
        )

    row = select(
        *(
            around(name) if name in ("source_id", "idempotency_key") else bound(name)
            for name in _REPLY_COLUMNS
        )
    ).select_from(cause)
    message = (
        postgresql.insert(table)
        .from_select(list(_REPLY_COLUMNS), row)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id, table.c.tenant_id, table.c.created_at)
        .cte("message")
    )
    return message, _history(message, statuses)


def reply_message_values(
    *,
    tenant_id: int,
    customer_id: int,
    source_type: str,
    source_id: str,
    body: str,
    now: dt.datetime,
    queue: bool,
    purpose: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The values of ``reply_message_ctes``' statement: ``reply_message``'s, with the
    source id's text around the cause's id (``source_id`` "suppression-" for
    "suppression-<id>")."""
    key = idempotency_key(
        tenant_id=tenant_id,
        source_type=source_type,
        source_id=source_id + _CAUSE_ID,
        customer_id=customer_id,
        channel="sms",
    )
    key_before, key_after = key.split(_CAUSE_ID)
    row = _reply_row(
        tenant_id=tenant_id,
        customer_id=customer_id,
        source_type=source_type,
        source_id=source_id,
        key=key,
        body=body,
        now=now,
        queue=queue,
        purpose=purpose,
        variables=variables,
    )
    del row["source_id"], row["idempotency_key"]  # given around the cause's id instead
    return {
        **{f"m_{name}": value for name, value in row.items()},
        "m_source_id_before": source_id,
        "m_source_id_after": "",
        "m_idempotency_key_before": key_before,
        "m_idempotency_key_after": key_after,
    }


def _reply_row(
    *,
    tenant_id: int,
    customer_id: int,
    source_type: str,
    source_id: str,
    key: str,
    body: str,
    now: dt.datetime,
    queue: bool,
    purpose: str | None,
    variables: Mapping[str, str] | None,
) -> dict[str, Any]:
    """A reply message's row, by column (``_REPLY_COLUMNS``)."""
    return {
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "channel": "sms",
        "category": "reply",
        "source_type": source_type,
        "source_id": source_id,
        "idempotency_key": key,
        "body": body,
        "purpose": purpose,
        "variables": _values(variables),
        "media_urls": [],
        "status": QUEUED if queue else SCHEDULED,
        "due_at": now,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _history(message: Any, statuses: tuple[str, ...]) -> Any:
    """The history of the message a CTE inserted (one row per status, in order), a CTE."""
    events = cast(Table, MessageEvent.__table__)
    # The statuses written into the SQL (they are ours, not input): a VALUES list is never
    # cached, and compiling the statement each time would cost more than the round trip.
    order = union_all(
        *(
            select(literal_column(str(n)).label("n"), literal_column(f"'{status}'").label("status"))
            for n, status in enumerate(statuses)
        )
    ).subquery("statuses")
    history = (
        insert(events)
        .from_select(
            ["tenant_id", "message_id", "status", "applied", "at"],
            select(message.c.tenant_id, message.c.id, order.c.status, true(), message.c.created_at)
            .select_from(message.join(order, true()))
            .order_by(order.c.n),
        )
        .cte("history")
    )
    return history


def _values(variables: Mapping[str, str] | None) -> dict[str, str]:
    """Template values as strings; an empty one is left out (no template may use it)."""
    return {str(k): str(v) for k, v in (variables or {}).items() if v is not None and str(v)}


@functools.cache
def _insert_reply_message(dialect: str) -> Any:
    table = Message.__table__
    return (
        insert_or_skip(dialect, table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )


_INSERT_EVENT = insert(cast(Table, MessageEvent.__table__))


def _event(
    session: Session,
    message: Message,
    status: str,
    reason: str | None,
    detail: str | None,
    *,
    applied: bool,
    now: dt.datetime,
) -> None:
    session.add(
        MessageEvent(
            tenant_id=message.tenant_id,
            message_id=message.id,
            status=status,
            reason=reason,
            detail=detail,
            applied=applied,
            at=now,
        )
    )


def transition(
    *,
    session: Session,
    message: Message,
    status: str,
    now: dt.datetime,
    reason: str | None = None,
    detail: str | None = None,
) -> bool:
    """Move forward to ``status`` if the lifecycle allows it; record the attempt either way.

    (A batch of sends moves its messages with ``_Send.move`` and writes them together.)
    """
    allowed = status in TRANSITIONS[message.status]
    _event(session, message, status, reason, detail, applied=allowed, now=now)
    if allowed:
        message.status, message.status_reason, message.status_detail = status, reason, detail
    session.flush()
    return allowed


def claim_due(*, session: Session, now: dt.datetime, limit: int = 500) -> list[int]:
    """Move due ``scheduled``/``deferred`` rows to ``queued``; their ids, for immediate tasks.

    One set-based update: PostgreSQL picks the rows ``FOR UPDATE SKIP LOCKED``, so two
    dispatchers never take the same row; SQLite runs it under the database write lock.
    The status condition is repeated in the update, so a row that moved meanwhile is skipped.
    """
    waiting = (SCHEDULED, DEFERRED)
    due = (
        select(Message.id)
        .where(Message.status.in_(waiting), Message.due_at <= now)
        .order_by(Message.due_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        return []
    return _move(session, ids, waiting, QUEUED, now, clear_reason=True)


def _move(
    session: Session,
    message_ids: Sequence[int],
    from_: Sequence[str],
    to: str,
    now: dt.datetime,
    *,
    clear_reason: bool = False,
) -> list[int]:
    """Move those of ``message_ids`` still in a ``from_`` status to ``to`` (``clear_reason``:
    and clear its reason), with their history; the ids moved, in order. The status condition
    in the update is what makes a claim happen once: a row that moved meanwhile is skipped.

    PostgreSQL: one statement (``_MOVE_POSTGRES``). Elsewhere: the update, then the history.
    """
    if not message_ids:
        return []
    if dialect_of(session) == "postgresql":
        moved_ids = list(
            driver_sql(
                session,
                _MOVE_POSTGRES[clear_reason],
                {"ids": list(message_ids), "from_": list(from_), "to": to, "now": now},
            ).scalars()
        )
        _expire_moved(session, moved_ids)
        return moved_ids
    values: dict[str, object] = {"status": to, "updated_at": now}
    if clear_reason:
        values["status_reason"] = None
    moved = session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.status.in_(from_))
        .values(values)
        .returning(Message.id, Message.tenant_id)
    ).all()
    if moved:
        session.execute(
            _INSERT_EVENT,
            [
                {
                    "tenant_id": tenant_id,
                    "message_id": message_id,
                    "status": to,
                    "reason": None,
                    "detail": None,
                    "applied": True,
                    "at": now,
                }
                for message_id, tenant_id in moved
            ],
        )
    return sorted(message_id for message_id, _ in moved)


def _move_postgres(clear_reason: bool) -> str:
    """PostgreSQL: ``_move`` in one statement, the update and its history rows (one round
    trip, one statement to execute instead of one per row), its ids as one array, so its
    text is the same whatever the batch's size and the driver prepares it once.

    The rows are found by their primary key: the status condition is written so that no
    index on ``status`` matches it (``status || ''``). Otherwise the planner, which rightly
    thinks few rows are ``queued``, walks ``ix_messages_due`` through every queued message
    of every company, testing each against the ids, to claim one batch."""
    reason = ", status_reason = NULL" if clear_reason else ""
    return f"""
        WITH moved AS (
            UPDATE messages SET status = %(to)s::varchar, updated_at = %(now)s{reason}
            WHERE id = ANY(%(ids)b::bigint[]) AND (status || '') = ANY(%(from_)b::varchar[])
            RETURNING id, tenant_id
        ), history AS (
            INSERT INTO message_events (tenant_id, message_id, status, reason, detail, applied, at)
            SELECT tenant_id, id, %(to)s::varchar, NULL, NULL, true, %(now)s
            FROM moved ORDER BY id
        )
        SELECT id FROM moved ORDER BY id
        """  # noqa: S608 (the one interpolation is one of two fixed strings)


_MOVE_POSTGRES = {clear: _move_postgres(clear) for clear in (False, True)}


def _expire_moved(session: Session, message_ids: Sequence[int]) -> None:
    """Messages of ``message_ids`` this session has loaded read their status again on next
    use (an update through the ORM would have set it on them)."""
    if not session.identity_map:
        return
    for message_id in message_ids:
        loaded = session.identity_map.get(identity_key(Message, message_id))
        if loaded is not None:
            session.expire(loaded, ["status", "status_reason", "updated_at"])


def queue_now(*, session: Session, message_ids: Sequence[int], now: dt.datetime) -> list[int]:
    """Queue scheduled messages at once (answers to a reply), rather than at the next tick."""
    return _move(session, message_ids, (SCHEDULED,), QUEUED, now)


def claim_for_send(*, session: Session, message_id: int, now: dt.datetime) -> bool:
    """``queued → sending``, exactly once per message whatever the task deliveries."""
    return bool(claim_many_for_send(session=session, message_ids=[message_id], now=now))


def claim_many_for_send(
    *, session: Session, message_ids: Sequence[int], now: dt.datetime
) -> list[int]:
    """``queued → sending`` for those of ``message_ids`` still queued; their ids, in order.

    One conditional update: a message claimed by another task (a repeated delivery) is
    skipped, so each message is claimed exactly once.
    """
    return _move(session, message_ids, (QUEUED,), SENDING, now)


def deliver(
    *,
    session: Session,
    message_id: int,
    provider: Provider,
    now: dt.datetime,
    throttle: Callable[[], bool] | None = None,
) -> Message | None:
    """Gate, render, call the provider and record the outcome for a ``sending`` message.

    ``throttle`` waits for a slot under the provider's send rate; when none comes the
    message is deferred a minute (nothing was sent).
    """
    return deliver_many(
        session=session, message_ids=[message_id], provider=provider, now=now, throttle=throttle
    ).get(message_id)


def send_batch(
    *,
    session: Session,
    message_ids: Sequence[int],
    provider: Provider,
    now: dt.datetime,
    throttle: Callable[[], bool] | None = None,
) -> None:
    """Gate, render, call the provider and record the outcomes for a batch of ``sending``
    messages, in one transaction, in a fixed number of statements whatever its size.

    One statement reads the messages (locked) with their customers, the gate decides for
    all of them at once (``compliance.gate_many``: the numbers stay locked until this
    commits, so an opt-out waits for the batch), the provider is called for each message
    it allows, ``send_concurrency`` calls at a time on threads that touch no database, and
    the outcomes are written together at the end, in this thread: one update of the
    messages, one insert of their history. The caller keeps batches short in time
    (``batch_size``), since an opt-out for one of their numbers waits for the whole batch.
    A message no longer ``sending`` (a task delivered twice) is left alone.
    """
    # The message rows stay locked until the outcomes commit: a receipt that arrives while
    # a send is still being recorded (a fast provider's "delivered") waits for the commit
    # and applies to ``sent``, instead of finding ``sending`` and being ignored.
    # (SQLite: this transaction holds the database's write lock anyway.)
    sending = [
        _Send.of(row)
        for row in session.execute(
            _SELECT_SENDS_BY[dialect_of(session)], {"ids": sorted(set(message_ids))}
        )
        if row.status == SENDING
    ]
    if not sending:
        return
    tenants = {
        tenant.id: tenant
        for tenant in session.scalars(
            select(Tenant)
            .where(Tenant.id.in_(sorted({send.tenant_id for send in sending})))
            .execution_options(populate_existing=True)
        )
    }
    verdicts = compliance.gate_many(
        session=session,
        asks=[
            compliance.Ask(
                tenants[send.tenant_id],
                send.customer,
                send.category,  # type: ignore[arg-type]
                send.body,
                send.idempotency_key,
                provider.capabilities.max_body_chars,
            )
            for send in sending
        ],
        now=now,
    )
    templates = _templates(session, provider, set(tenants))
    allowed = []
    for send, verdict in zip(sending, verdicts, strict=True):
        outbound = _outbound(send, tenants[send.tenant_id], verdict, provider, now, templates)
        if outbound is not None:
            allowed.append((send, outbound))
    calls = _call_all(provider, [outbound for _, outbound in allowed], throttle)
    for (send, _), call in zip(allowed, calls, strict=True):
        _record(session, send, tenants[send.tenant_id], call, now)
    # A marketing message the provider refused, that ran out of retries or for which the
    # company has no approved template never reached the customer: it does not count
    # against their frequency cap.
    compliance.uncount_marketing(
        session=session,
        message_refs=[
            send.idempotency_key
            for send in sending
            if send.category == "marketing"
            and send.status in (FAILED, SUPPRESSED)
            and (send.called or send.status_reason == NO_TEMPLATE)
        ],
    )
    _write_sends(session, sending, now)


def deliver_many(
    *,
    session: Session,
    message_ids: Sequence[int],
    provider: Provider,
    now: dt.datetime,
    throttle: Callable[[], bool] | None = None,
) -> dict[int, Message]:
    """``send_batch``, then the messages found, by id, read back (for callers that look at
    them; a send task needs nothing back)."""
    send_batch(
        session=session, message_ids=message_ids, provider=provider, now=now, throttle=throttle
    )
    return {
        message.id: message
        for message in session.scalars(
            select(Message)
            .where(Message.id.in_(sorted(set(message_ids))))
            .options(lazyload(Message.events))
            .execution_options(populate_existing=True)
        )
    }


_MESSAGES = cast(Table, Message.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)
# What a send reads of a message and its customer (``_Send``), the message locked.
_SELECT_SENDS = (
    select(
        _MESSAGES.c.id,
        _MESSAGES.c.tenant_id,
        _MESSAGES.c.category,
        _MESSAGES.c.body,
        _MESSAGES.c.idempotency_key,
        _MESSAGES.c.purpose,
        _MESSAGES.c.variables,
        _MESSAGES.c.media_urls,
        _MESSAGES.c.status,
        _MESSAGES.c.status_reason,
        _MESSAGES.c.status_detail,
        _MESSAGES.c.due_at,
        _MESSAGES.c.attempts,
        _MESSAGES.c.text,
        _MESSAGES.c.provider,
        _MESSAGES.c.provider_message_id,
        _MESSAGES.c.sent_at,
        _CUSTOMERS.c.id.label("customer_id"),
        _CUSTOMERS.c.phone,
        _CUSTOMERS.c.timezone,
    )
    .join(_CUSTOMERS, _CUSTOMERS.c.id == _MESSAGES.c.customer_id)
    .order_by(_MESSAGES.c.id)
    .with_for_update(of=_MESSAGES)
)
# By dialect: on PostgreSQL the ids are one array (the same statement whatever the batch's
# size, prepared once by the driver), elsewhere an expanding IN list.
_SELECT_SENDS_BY = {
    "postgresql": _SELECT_SENDS.where(
        _MESSAGES.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    ),
    "sqlite": _SELECT_SENDS.where(_MESSAGES.c.id.in_(bindparam("ids", expanding=True))),
}


@dataclass(frozen=True, slots=True)
class _Recipient:
    """The customer a message goes to, as the gate and the request need them."""

    id: int
    phone: str
    timezone: str


@dataclass(slots=True)
class _Send:
    """One message of a batch as read for sending, changed as its send goes."""

    id: int
    tenant_id: int
    category: str
    body: str
    idempotency_key: str
    purpose: str | None
    variables: dict[str, str] | None
    media_urls: list[str]
    status: str
    status_reason: str | None
    status_detail: str | None
    due_at: dt.datetime
    attempts: int
    text: str | None
    provider: str | None
    provider_message_id: str | None
    sent_at: dt.datetime | None
    customer: _Recipient
    called: bool = False  # the provider was called for it
    event: dict[str, object] | None = None  # its history row, once it moved

    @classmethod
    def of(cls, row: Any) -> _Send:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            category=row.category,
            body=row.body,
            idempotency_key=row.idempotency_key,
            purpose=row.purpose,
            variables=row.variables,
            media_urls=row.media_urls,
            status=row.status,
            status_reason=row.status_reason,
            status_detail=row.status_detail,
            due_at=row.due_at,
            attempts=row.attempts,
            text=row.text,
            provider=row.provider,
            provider_message_id=row.provider_message_id,
            sent_at=row.sent_at,
            customer=_Recipient(row.customer_id, row.phone, row.timezone),
        )

    def move(
        self, status: str, now: dt.datetime, reason: str | None = None, detail: str | None = None
    ) -> None:
        """``transition`` for a message of a batch: forward if the lifecycle allows it, the
        attempt in its history either way (written with the batch's, ``_write_sends``)."""
        allowed = status in TRANSITIONS[self.status]
        self.event = {
            "tenant_id": self.tenant_id,
            "message_id": self.id,
            "status": status,
            "reason": reason,
            "detail": detail,
            "applied": allowed,
            "at": now,
        }
        if allowed:
            self.status, self.status_reason, self.status_detail = status, reason, detail


# The columns a send writes back (``_Send``'s names).
_WRITTEN = (
    "status",
    "status_reason",
    "status_detail",
    "due_at",
    "attempts",
    "text",
    "provider",
    "provider_message_id",
    "sent_at",
)
# PostgreSQL: the whole batch's outcomes and their history in one statement, one array per
# column (the same text whatever the batch's size, so the driver prepares it once; the
# arrays go in binary, ``driver_sql``).
_UPDATE_SENDS_POSTGRES = """
    WITH updated AS (
        UPDATE messages AS m
        SET status = v.status, status_reason = v.status_reason, status_detail = v.status_detail,
            due_at = v.due_at, attempts = v.attempts, text = v.text, provider = v.provider,
            provider_message_id = v.provider_message_id, sent_at = v.sent_at,
            updated_at = %(now)s
        FROM unnest(
            %(id)b::bigint[], %(status)b::varchar[], %(status_reason)b::varchar[],
            %(status_detail)b::text[], %(due_at)b::timestamptz[], %(attempts)b::int[],
            %(text)b::text[], %(provider)b::varchar[], %(provider_message_id)b::varchar[],
            %(sent_at)b::timestamptz[]
        ) AS v(id, status, status_reason, status_detail, due_at, attempts, text, provider,
               provider_message_id, sent_at)
        WHERE m.id = v.id
    )
    INSERT INTO message_events (tenant_id, message_id, status, reason, detail, applied, at)
    SELECT * FROM unnest(
        %(e_tenant_id)b::bigint[], %(e_message_id)b::bigint[], %(e_status)b::varchar[],
        %(e_reason)b::varchar[], %(e_detail)b::text[], %(e_applied)b::boolean[],
        %(e_at)b::timestamptz[]
    )
    """
_EVENT_COLUMNS = ("tenant_id", "message_id", "status", "reason", "detail", "applied", "at")
# SQLite: one prepared update, run for each message.
_UPDATE_SENDS = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_id"))
    .values(
        {name: bindparam(f"b_{name}") for name in _WRITTEN}
        | {"updated_at": bindparam("b_updated_at")}
    )
)


def _write_sends(session: Session, sends: Sequence[_Send], now: dt.datetime) -> None:
    """The batch's outcomes and their history: one statement on PostgreSQL; elsewhere one
    update of the messages, one insert of their history."""
    moved = [send for send in sends if send.event is not None]
    events = [send.event for send in moved if send.event is not None]
    if not moved:
        return
    if dialect_of(session) == "postgresql":
        driver_sql(
            session,
            _UPDATE_SENDS_POSTGRES,
            {"now": now, "id": [send.id for send in moved]}
            | {name: [getattr(send, name) for send in moved] for name in _WRITTEN}
            | {f"e_{name}": [event[name] for event in events] for name in _EVENT_COLUMNS},
        )
        return
    session.execute(
        _UPDATE_SENDS,
        [
            {"b_id": send.id, "b_updated_at": now}
            | {f"b_{name}": getattr(send, name) for name in _WRITTEN}
            for send in moved
        ],
    )
    session.execute(_INSERT_EVENT, events)


# How long a batch of sends may hold its numbers' locks (an opt-out for one of them waits
# that long at most), and the most messages in one batch.
BATCH_SECONDS = 0.25
MAX_BATCH = 50
_latency: dict[str, float] = {}  # seconds per provider call, moving average, per process


def batch_size(provider: Provider, *, lanes: int = 1) -> int:
    """How many messages one batch may take, from the time a send to this provider has been
    taking (its answer and any wait for a rate slot) and how many calls go out at once
    (``send_concurrency``): one round of calls when a call takes 250 ms or more, up to
    ``MAX_BATCH`` against a fast provider, where the database, not the provider, would
    otherwise set the pace. ``lanes`` send loops sharing the calls at once
    (``messaging.tasks.send_in_batches``) each take their share of the calls."""
    seconds = _latency.get(provider.name)
    if seconds is None:
        return 1  # nothing measured yet: one at a time until the provider's pace is known
    at_once = max(1, get_settings().send_concurrency // lanes)
    rounds = max(1, int(BATCH_SECONDS / max(seconds, 1e-4)))
    return min(MAX_BATCH, at_once * rounds)


def calls_set_the_pace(provider: Provider) -> bool:
    """Whether a batch to this provider is as long as its calls allow (``batch_size`` below
    ``MAX_BATCH``): the provider's answers, not the database, then set a batch's pace, and a
    second send loop's calls can fill the call slots while one loop is in the database
    (``messaging.tasks.send_in_batches``). Against a provider that answers within a few
    milliseconds a batch is ``MAX_BATCH`` whatever the calls, the database's work is most
    of its time, and a second loop would add its own transaction, thread and connection
    for calls that take little time anyway."""
    return batch_size(provider) < MAX_BATCH


def pace_known(provider: Provider) -> bool:
    """Whether this process has measured how long a send to ``provider`` takes."""
    return provider.name in _latency


def _measured(provider: Provider, seconds: float) -> None:
    previous = _latency.get(provider.name)
    _latency[provider.name] = seconds if previous is None else 0.8 * previous + 0.2 * seconds


def _templates(
    session: Session, provider: Provider, tenant_ids: set[int]
) -> dict[int, list[SmsTemplate]]:
    """The companies' approved templates, for a provider that sends nothing else."""
    if not provider.capabilities.approved_templates or not tenant_ids:
        return {}
    found: dict[int, list[SmsTemplate]] = {tenant_id: [] for tenant_id in tenant_ids}
    for template in session.scalars(
        select(SmsTemplate)
        .where(SmsTemplate.tenant_id.in_(sorted(tenant_ids)))
        .order_by(SmsTemplate.id)
    ):
        found[template.tenant_id].append(template)
    return found


def _outbound(
    send: _Send,
    tenant: Tenant,
    verdict: compliance.Verdict,
    provider: Provider,
    now: dt.datetime,
    templates: Mapping[int, Sequence[SmsTemplate]],
) -> OutboundMessage | None:
    """Act on the gate's verdict for one message: record a deferral or a refusal (None),
    or the request the provider is to get.

    With a provider that sends only approved templates, the message goes out as its
    purpose's template filled from its values; when the company has none that fits, it is
    refused here, before any request, with the sentence saying which template to record.
    """
    if verdict.decision == DEFER:
        assert verdict.not_before is not None
        send.due_at = verdict.not_before
        send.move(DEFERRED, now, verdict.reason, verdict.detail)
        return None
    if verdict.decision in (SUPPRESS, REFUSE):
        send.move(
            SUPPRESSED if verdict.decision == SUPPRESS else FAILED,
            now,
            verdict.reason,
            verdict.detail,
        )
        return None
    assert verdict.text is not None
    text, signature = verdict.text, tenant.signature
    template_code, params = None, {}
    settings = get_settings()
    if provider.capabilities.approved_templates:
        try:
            filled = sms_templates.fill(
                templates=templates.get(tenant.id, ()),
                purpose_code=send.purpose,
                values=send.variables or {},
                body=text.removeprefix(tenant.sms_signature),
                base_url=settings.public_url,
            )
        except sms_templates.NoTemplate as refusal:
            send.move(FAILED, now, NO_TEMPLATE, refusal.detail)
            return None
        signature, template_code, params = filled.signature, filled.code, filled.params
        text = f"【{signature}】{filled.text}"
    send.text = text
    send.provider = provider.name
    return OutboundMessage(
        message_id=send.id,
        to=send.customer.phone,
        body=text,
        signature=signature,
        template_code=template_code,
        template_params=params,
        media_urls=tuple(send.media_urls),
        # Our id rides along, so a receipt can settle a send that timed out before the
        # provider's id reached us.
        status_callback=f"{settings.public_url}/hooks/{provider.name}/status?message_id={send.id}",
    )


@dataclass(frozen=True, slots=True)
class _Call:
    """What one provider call came to: a result, the provider's error, or no rate slot."""

    result: SendResult | None = None
    error: ProviderError | None = None
    throttled: bool = False


def _call(
    provider: Provider, outbound: OutboundMessage, throttle: Callable[[], bool] | None
) -> _Call:
    """Wait for a rate slot, then call the provider. Touches no database: it runs on the
    batch's call threads."""
    # The time a send takes here — the wait for a rate slot included — sizes the next
    # batches: a slow or rate-limited provider is sent to a few messages at a time.
    started = time.perf_counter()
    try:
        if throttle is not None and not throttle():
            return _Call(throttled=True)
        return _Call(result=provider.send(outbound))
    except ProviderError as exc:
        return _Call(error=exc)
    finally:
        _measured(provider, time.perf_counter() - started)


def _call_all(
    provider: Provider, requests: Sequence[OutboundMessage], throttle: Callable[[], bool] | None
) -> list[_Call]:
    """The batch's provider calls, ``send_concurrency`` at a time; outcomes in order.

    That many callers on the process's call threads each take the next request until none
    is left (a slow call holds up one caller, not the rest): one task per thread rather
    than one per request, whose hand-over between threads cost more than a loopback call."""
    at_once = get_settings().send_concurrency
    if len(requests) <= 1 or at_once <= 1:
        return [_call(provider, outbound, throttle) for outbound in requests]
    calls: list[_Call | None] = [None] * len(requests)
    left = iter(range(len(requests)))
    taking = threading.Lock()
    broken: list[bool] = []  # a caller failed (not a provider's error: a bug): no more calls

    def caller() -> None:
        while True:
            with taking:
                index = None if broken else next(left, None)
            if index is None:
                return
            try:
                calls[index] = _call(provider, requests[index], throttle)
            except BaseException:
                broken.append(True)
                raise

    callers = [_callers(at_once).submit(caller) for _ in range(min(at_once, len(requests)))]
    wait(callers)  # no call is still out when this returns or raises
    for done in callers:
        done.result()
    return cast(list[_Call], calls)


@functools.cache
def _callers(at_once: int) -> ThreadPoolExecutor:
    """This process's threads for provider calls (a forked worker makes its own)."""
    return ThreadPoolExecutor(at_once, thread_name_prefix="provider-call")


os.register_at_fork(after_in_child=_callers.cache_clear)


def _record(session: Session, send: _Send, tenant: Tenant, call: _Call, now: dt.datetime) -> None:
    """What the provider call came to (in the batch's transaction; written by
    ``_write_sends``)."""
    if call.throttled:
        send.due_at = now + dt.timedelta(minutes=1)
        send.move(DEFERRED, now, RATE_LIMITED, "The provider's send rate was full; retrying.")
        return
    send.called = True
    send.attempts += 1  # a provider call: waiting for a rate slot was not an attempt
    exc = call.error
    if isinstance(exc, RecipientOptedOut):
        compliance.opt_out(
            session=session,
            tenant=tenant,
            phone=send.customer.phone,
            reason="provider_opt_out",
            detail=exc.detail,
            now=now,
        )
        send.move(SUPPRESSED, now, "opted_out", exc.detail)
    elif isinstance(exc, PermanentError):
        send.move(FAILED, now, PROVIDER_REFUSED, _with_code(exc.detail, exc.code))
    elif isinstance(exc, RequestMayHaveLeft):
        send.move(UNKNOWN, now, TIMEOUT_AFTER_SEND, exc.detail)
    elif isinstance(exc, RetryableError):
        if send.attempts >= MAX_ATTEMPTS:
            send.move(FAILED, now, RETRIES_EXHAUSTED, exc.detail)
        else:
            wait = dt.timedelta(minutes=BACKOFF_MINUTES[send.attempts - 1])
            if exc.retry_after:
                wait = max(wait, dt.timedelta(seconds=exc.retry_after))
            send.due_at = now + wait
            send.move(DEFERRED, now, RETRY_BACKOFF, exc.detail)
    else:
        assert exc is None and call.result is not None, exc
        send.provider_message_id = call.result.provider_message_id
        send.sent_at = now
        send.move(SENT, now)


def _with_code(detail: str, code: str | None) -> str:
    return f"{detail} (provider code {code})" if code else detail


def sweep(*, session: Session, now: dt.datetime) -> list[int]:
    """Settle what a lost task or a dead worker left behind; ids of rows to enqueue again.

    ``sending`` for too long: the request may have left, so ``unknown`` (never re-sent).
    ``queued`` for too long: the task was lost before it claimed the row; safe to re-send.
    """
    for message in session.scalars(
        select(Message)
        .where(Message.status == SENDING, Message.updated_at < now - STUCK_SENDING)
        .execution_options(populate_existing=True)
    ):
        transition(
            session=session,
            message=message,
            status=UNKNOWN,
            now=now,
            reason=TIMEOUT_AFTER_SEND,
            detail="The worker stopped while sending; it may or may not have gone out.",
        )
    stale = list(
        session.scalars(
            select(Message.id).where(
                Message.status == QUEUED, Message.updated_at < now - STUCK_QUEUED
            )
        )
    )
    if stale:
        session.execute(update(Message).where(Message.id.in_(stale)).values(updated_at=now))
    return stale


def get_message(*, session: Session, tenant_id: int, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None or message.tenant_id != tenant_id:
        raise NotFound(f"There is no message {message_id} in this company.")
    return message


def list_messages(
    *, session: Session, tenant_id: int, customer_id: int | None = None, limit: int = 100
) -> list[Message]:
    stmt = select(Message).where(Message.tenant_id == tenant_id)
    if customer_id is not None:
        stmt = stmt.where(Message.customer_id == customer_id)
    return list(session.scalars(stmt.order_by(Message.id.desc()).limit(limit)))


def retry(*, session: Session, tenant_id: int, message_id: int, now: dt.datetime) -> Message:
    """An operator's decision to send an ``unknown`` message again (it may arrive twice)."""
    message = get_message(session=session, tenant_id=tenant_id, message_id=message_id)
    if message.status != UNKNOWN:
        raise Conflict(
            f"Only a message whose outcome is unknown can be retried; this one is {message.status}."
        )
    transition(
        session=session,
        message=message,
        status=QUEUED,
        now=now,
        reason="operator_retry",
        detail="Retried by an operator.",
    )
    return message
