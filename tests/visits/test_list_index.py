"""The visits list is read a page at a time from an index, newest first, not sorted whole."""

from __future__ import annotations

from huifang.pagination import PageParams
from tests.customers.test_list_index import page_query_plan
from visits import service as visits


def test_a_page_of_visits_comes_from_an_index(sqlite_database):
    plan = page_query_plan(
        sqlite_database,
        lambda session: visits.list_visits(
            session=session, tenant_id=1, page=PageParams(limit=20, offset=40)
        ),
    )
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("ix_visits_tenant_newest" in step for step in plan), plan
