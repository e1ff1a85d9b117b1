"""Bulk rows straight to the driver (``insert_rows``) and ``one_of``, on both databases;
a statement run by the driver (``Prepared``), on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from customers.models import Customer, CustomerTag
from huifang.db import Database, ReadOnly
from huifang.sql import Prepared, insert_rows, one_of
from messaging.models import InboundMessage
from tests.factories import make_company

COLUMNS = ("name", "phone", "region", "city", "timezone", "notes")


def people(count: int) -> list[tuple[object, ...]]:
    return [
        (
            f"客户{i}",
            f"+86139{i:08d}",
            "上海" if i % 2 else None,  # NULLs among values
            None,
            "Asia/Shanghai",
            "周末 '上午' 方便; -- %s ?" if i % 3 == 0 else None,  # quotes, placeholders
        )
        for i in range(count)
    ]


def test_insert_rows_writes_every_row_with_its_values_and_returns_ids(session: Session) -> None:
    tenant = make_company(session).tenant
    stamp = dt.datetime(2026, 12, 6, 13, 0, 0, 123456, tzinfo=dt.UTC)
    rows = people(1_203)  # more than one SQLite statement's worth, not a multiple of it
    returned = insert_rows(
        session,
        Customer.__table__,  # type: ignore[arg-type]
        COLUMNS,
        rows,
        same={"tenant_id": tenant.id, "created_at": stamp, "updated_at": stamp},
        returning=("id", "phone"),
    )
    assert len(returned) == len(rows)
    ids = {phone: customer_id for customer_id, phone in returned}
    stored = session.execute(
        select(Customer.id, *(getattr(Customer, c) for c in COLUMNS), Customer.created_at)
        .where(Customer.tenant_id == tenant.id)
        .order_by(Customer.phone)
    ).all()
    assert [tuple(row[1:-1]) for row in stored] == sorted(rows, key=lambda r: str(r[1]))
    assert {row.phone: row.id for row in stored} == ids
    # the constant went through the column's type: read back aware and exact
    assert {row.created_at for row in stored} == {stamp}


def test_insert_rows_without_returning_and_with_nothing_to_insert(session: Session) -> None:
    tenant = make_company(session).tenant
    customers = insert_rows(
        session,
        Customer.__table__,  # type: ignore[arg-type]
        COLUMNS,
        people(2),
        same={
            "tenant_id": tenant.id,
            "created_at": dt.datetime.now(dt.UTC),
            "updated_at": dt.datetime.now(dt.UTC),
        },
        returning=("id",),
    )
    tags = [(customer_id, tag) for (customer_id,) in customers for tag in ("老客户", "有宠物")]
    assert (
        insert_rows(
            session,
            CustomerTag.__table__,  # type: ignore[arg-type]
            ("customer_id", "tag"),
            tags,
            same={"tenant_id": tenant.id},
        )
        == []
    )
    assert insert_rows(session, CustomerTag.__table__, ("customer_id", "tag"), []) == []  # type: ignore[arg-type]
    stored = session.scalars(
        select(CustomerTag.tag).where(CustomerTag.tenant_id == tenant.id).order_by(CustomerTag.tag)
    ).all()
    assert stored == ["有宠物", "有宠物", "老客户", "老客户"]


def test_insert_rows_refuses_a_column_the_table_does_not_have(session: Session) -> None:
    with pytest.raises(KeyError):
        insert_rows(session, CustomerTag.__table__, ("customer_id", "tag; DROP"), [(1, "x")])  # type: ignore[arg-type]


def test_insert_rows_refuses_to_write_in_a_read_only_session(database: Database) -> None:
    with pytest.raises(ReadOnly), database.session(read_only=True) as session:
        insert_rows(session, CustomerTag.__table__, ("customer_id", "tag"), [(1, "x")])  # type: ignore[arg-type]


def test_one_of_matches_exactly_the_values_given(session: Session) -> None:
    tenant = make_company(session).tenant
    now = dt.datetime.now(dt.UTC)
    insert_rows(
        session,
        Customer.__table__,  # type: ignore[arg-type]
        COLUMNS,
        people(10),
        same={"tenant_id": tenant.id, "created_at": now, "updated_at": now},
    )
    wanted = ["+8613900000003", "+8613900000007", "+8613999999999"]
    found = session.scalars(
        select(Customer.phone)
        .where(Customer.tenant_id == tenant.id, one_of(session, Customer.phone, wanted))
        .order_by(Customer.phone)
    ).all()
    assert found == wanted[:2]
    none = select(Customer.id).where(
        Customer.tenant_id == tenant.id, one_of(session, Customer.phone, [])
    )
    assert session.scalars(none).all() == []


def _reply(**values: object) -> Any:
    """An inbound reply's INSERT with every column that has a Python-side default given."""
    table = cast(Table, InboundMessage.__table__)
    names = ("tenant_id", "phone", "body", "provider", "provider_message_id", "received_at")
    names += ("route", "normalized", "complaint", "state")
    return (
        insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in names}, **values)
        .returning(table.c.id, table.c.received_at)
    )


def test_prepared_runs_by_the_driver_in_the_sessions_transaction(
    session: Session, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("used on PostgreSQL only (named parameters)")
    tenant = make_company(session).tenant
    at = dt.datetime(2026, 12, 6, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    values = {
        "tenant_id": tenant.id,
        "phone": "+8613900000001",
        "body": "T",
        "provider": "twilio",
        "provider_message_id": "SM-prepared",
        "received_at": at,  # converted by its type (UTCDateTime) on the way in
        "route": "opt_out",
        "normalized": "t",
        "complaint": False,
        "state": "handled",
    }
    seen: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    statement = Prepared(_reply())
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        [(reply_id, stored)] = statement.rows(session, values)
        # The driver's error, as SQLAlchemy's.
        with pytest.raises(IntegrityError), session.begin_nested():
            statement.rows(session, values)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    assert stored == at  # the same moment, as the driver read it
    assert session.scalar(select(InboundMessage.body).where(InboundMessage.id == reply_id)) == "T"
    assert sum("INSERT INTO inbound_messages" in sql for sql in seen) == 2


def test_prepared_refuses_defaults_it_would_leave_out_and_writes_when_read_only(
    database: Database, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("used on PostgreSQL only (named parameters)")
    table = cast(Table, InboundMessage.__table__)
    with database.session() as session, pytest.raises(ValueError, match="defaults"):
        Prepared(insert(table).values(phone=bindparam("phone"))).rows(session, {"phone": "x"})
    with database.session(read_only=True) as session, pytest.raises(ReadOnly):
        Prepared(_reply()).rows(session, {})
    with database.session() as session, pytest.raises(ValueError, match="missing for phone"):
        Prepared(select(InboundMessage.id).where(InboundMessage.phone == bindparam("phone"))).rows(
            session, {}
        )
