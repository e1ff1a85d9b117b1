"""The customer list is read a page at a time from an index, newest first, not sorted whole."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from customers import service as customers
from huifang.db import Database
from huifang.pagination import PageParams


def page_query_plan(database: Database, run: Any) -> list[str]:
    """SQLite's plan for the ``ORDER BY`` statement that ``run(session)`` executes."""
    statements: list[tuple[str, Any]] = []

    def capture(
        _connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.session(read_only=True) as session:
            run(session)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    statement, parameters = next(s for s in statements if "ORDER BY" in s[0])
    with database.engine.connect() as connection:
        return [
            row[-1]
            for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters
            ).all()
        ]


def test_a_page_of_customers_comes_from_an_index(sqlite_database):
    plan = page_query_plan(
        sqlite_database,
        lambda session: customers.list_customers(
            session=session, tenant_id=1, page=PageParams(limit=20, offset=40)
        ),
    )
    # Before: every customer of the company was sorted for each page (8 ms at 4,000).
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("ix_customers_tenant_newest" in step for step in plan), plan
