"""What row-level security costs the office's everyday queries on PostgreSQL.

    .venv/bin/python bench/rls_plans.py --database postgresql://postgres@127.0.0.1/postgres
        [--customers 200000] [--companies 10] [--rounds 5] [--repeat 20]

Makes a scratch database from the migrations with one large company (``--customers``, two
messages each) and ``--companies`` − 1 others a tenth its size, runs ANALYZE, and creates
the app role (``huifang.rls.create_app_role``). Then each query below runs, with the same
explicit ``tenant_id`` filter the code writes, two ways in turns: as the tables' owner (RLS
does not apply: the floor) and as the app role scoped to the company
(``rls.scope_to_tenant``: the policy's condition is added to every table the query reads).

Prints, per query: both plans' shapes (node types, the planner's row estimate against the
rows it found), and the median (min–max) over ``--rounds`` of the time per execution and
the ratio scoped / owner. The policy's condition repeats the code's filter, so the planner
multiplies the two selectivities and under-estimates rows; the question this answers is
whether that ever changes a plan for the worse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rounds
from scratch import scratch_database

from huifang import rls
from huifang.migrate import upgrade
from tenancy import service as tenancy

QUERIES: dict[str, str] = {
    "customers page (newest 50)": (
        "SELECT * FROM customers WHERE tenant_id = :t ORDER BY id DESC LIMIT 50"
    ),
    "customer search by phone prefix": (
        "SELECT * FROM customers WHERE tenant_id = :t AND phone LIKE '+86139000012%' "
        "ORDER BY id LIMIT 50"
    ),
    "messages of one customer, with the customer": (
        "SELECT m.* FROM messages m JOIN customers c ON c.id = m.customer_id "
        "WHERE m.tenant_id = :t AND c.tenant_id = :t AND c.phone = '+8613900001234' "
        "ORDER BY m.id DESC LIMIT 20"
    ),
    "today: messages by status since a day": (
        "SELECT status, count(*) FROM messages WHERE tenant_id = :t AND created_at >= :since "
        "GROUP BY status"
    ),
    "outbox due (the dispatcher's claim, one company)": (
        "SELECT id FROM messages WHERE tenant_id = :t AND status = 'queued' AND due_at <= :now "
        "ORDER BY due_at LIMIT 200"
    ),
}


def seed(connection: Connection, *, customers: int, companies: int, now: dt.datetime) -> int:
    tenants = []
    with Session(bind=connection) as session:
        for number in range(companies):
            made = tenancy.create_tenant(
                session=session, name=f"压测家政{number}", signature=f"压测家政{number}"
            )
            session.flush()
            tenants.append(made.id)
    for index, tenant in enumerate(tenants):
        count = customers if index == 0 else max(1, customers // 10)
        offset = index * 10_000_000
        connection.execute(
            text("""
            INSERT INTO customers (tenant_id, name, phone, region, timezone, created_at,
                                   updated_at)
            SELECT :t, '客户' || g, '+86139' || lpad((g + :offset)::text, 8, '0'), '上海',
                   'Asia/Shanghai', :now, :now
            FROM generate_series(1, :count) AS g"""),
            {"t": tenant, "count": count, "offset": offset, "now": now},
        )
        connection.execute(
            text("""
            INSERT INTO messages (tenant_id, customer_id, channel, category, source_type,
                                  source_id, idempotency_key, body, status, due_at, attempts,
                                  media_urls, created_at, updated_at)
            SELECT :t, c.id, 'sms', 'service', 'bench', c.id::text || '-' || k,
                   'bench-' || c.id || '-' || k, '您好',
                   (ARRAY['sent','delivered','queued','failed'])[1 + (c.id + k) % 4],
                   CAST(:now AS timestamptz) - ((c.id + k) % 30) * interval '1 day',
                   0, '[]', CAST(:now AS timestamptz) - ((c.id + k) % 30) * interval '1 day',
                   :now
            FROM customers c CROSS JOIN generate_series(1, 2) AS k WHERE c.tenant_id = :t"""),
            {"t": tenant, "now": now},
        )
    connection.execute(text("ANALYZE"))
    return int(tenants[0])


def shape(plan: dict[str, Any]) -> str:
    """``Limit > Index Scan(customers, est 50 / got 50)`` for a plan tree."""
    node = plan["Node Type"]
    relation = plan.get("Relation Name")
    label = f"{node}({relation})" if relation else node
    label += f"[est {plan.get('Plan Rows')} / got {plan.get('Actual Rows')}]"
    children = [shape(child) for child in plan.get("Plans", [])]
    return label + (" > " + ", ".join(children) if children else "")


def explain(connection: Connection, sql: str, params: dict[str, Any]) -> str:
    raw = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params).scalar_one()
    document = raw if isinstance(raw, list) else json.loads(raw)
    return shape(document[0]["Plan"])


def timed(connection: Connection, sql: str, params: dict[str, Any], repeat: int) -> float:
    statement = text(sql)
    started = time.perf_counter()
    for _ in range(repeat):
        connection.execute(statement, params).all()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL server URL")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--companies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=rounds.MIN_ROUNDS)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    with scratch_database(args.database, "huifang_bench_rls") as url:
        upgrade(url)
        owner = create_engine(url)
        started = time.perf_counter()
        with owner.begin() as connection:
            tenant = seed(connection, customers=args.customers, companies=args.companies, now=now)
        print(
            f"seeded: {args.companies} companies, the large one {args.customers:,} customers, "
            f"two messages each ({time.perf_counter() - started:.0f} s)"
        )
        role = "huifang_bench_rls_app"
        app_url = rls.create_app_role(url, role=role, password="bench-rls-password")
        app = create_engine(app_url)
        params = {"t": tenant, "since": now - dt.timedelta(days=1), "now": now}
        try:
            for name, sql in QUERIES.items():
                with owner.connect() as plain, app.connect() as scoped:
                    scoped.execute(text("SET ROLE NONE"))
                    scoped.execute(
                        text("SELECT set_config(:n, :v, false)"),
                        {"n": rls.SETTING, "v": str(tenant)},
                    )
                    print(f"\n{name}")
                    print(f"  owner : {explain(plain, sql, params)}")
                    print(f"  scoped: {explain(scoped, sql, params)}")
                    ratios, floor_times, our_times = [], [], []
                    for _ in range(args.rounds):
                        floor = timed(plain, sql, params, args.repeat)
                        ours = timed(scoped, sql, params, args.repeat)
                        floor_times.append(floor * 1000)
                        our_times.append(ours * 1000)
                        ratios.append(ours / floor)
                    owner_ms = rounds.spread(floor_times).text("{:.3f}", " ms")
                    scoped_ms = rounds.spread(our_times).text("{:.3f}", " ms")
                    ratio = rounds.spread(ratios).text("{:.2f}", "×")
                    print(
                        f"  time per execution: owner {owner_ms}, scoped {scoped_ms}; "
                        f"ratio {ratio}  [{args.rounds} rounds]"
                    )
        finally:
            app.dispose()
            with owner.begin() as connection:
                connection.execute(text(f'DROP OWNED BY "{role}", "{role}_maintenance"'))
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}_maintenance"'))
            owner.dispose()


if __name__ == "__main__":
    main()
