"""Benchmark: importing a 10,000-row customer list, against a raw insert of the same rows.

    .venv/bin/python bench/import_customers.py [--rows 10000] [--database URL] [--rounds 5]
        [--profile]

Without --database it uses a fresh SQLite file in a temporary directory. With a PostgreSQL
URL it creates (and drops afterwards) a scratch database ``huifang_bench_import`` on that
server, e.g. ``--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.

What is timed, each committed:
  import    ``customers.service.import_file`` on the CSV bytes: parse, validate, normalise
            phones, upsert customers and their tags;
  re-import the same file again (every row ``unchanged``);
  floor     a SQLAlchemy Core ``insert(Customer.__table__)`` executemany of the same rows,
            already normalised, into a fresh company.
Floor and import run in turns, ``--rounds`` times (bench/rounds.py), each into a company of
its own; the figure is the CPU ratio import / floor (this process and PostgreSQL's
backends), median (min–max), with the wall-clock ratio beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import pstats

import rounds
from scratch import scratch_database
from serving import PostgresBackends
from sqlalchemy import func, insert, select

from customers.importer import read_customer_file
from customers.models import Customer, CustomerTag
from customers.phones import normalize_phone
from customers.service import count_outcomes, import_file
from huifang.db import Database
from huifang.migrate import upgrade
from tenancy import service as tenancy
from tenancy.models import Tenant

HEADER = ["姓名", "手机号", "地区", "城市", "标签", "备注"]
PLACES = [("上海", "浦东新区"), ("浙江", "杭州"), ("广东", "深圳"), ("北京", "朝阳区")]


def customer_list(rows: int) -> bytes:
    """A CSV as Excel saves it (UTF-8 with BOM, CRLF), every number a valid mobile."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i in range(rows):
        region, city = PLACES[i % len(PLACES)]
        writer.writerow(
            [
                f"客户{i}",
                f"139 {i // 10_000:04d} {i % 10_000:04d}",
                region,
                city,
                "老客户、有宠物" if i % 3 == 0 else "",
                "周末上午方便" if i % 5 == 0 else "",
            ]
        )
    return out.getvalue().encode("utf-8-sig")


def new_tenant(database: Database, name: str) -> int:
    with database.session() as session:
        return tenancy.create_tenant(session=session, name=name, signature="测试家政").id


def run(url: str, rows: int, profile: bool, rounds_: int) -> None:
    upgrade(url)
    database = Database(url)
    backends = PostgresBackends(url) if database.engine.dialect.name == "postgresql" else None

    def cpu() -> float:
        # This process and, on PostgreSQL, the backends of this database.
        return rounds.self_cpu() + (backends.total() if backends else 0.0)

    try:
        data = customer_list(rows)
        # Every generated number must be a valid mobile, or the comparison is unfair.
        parsed = read_customer_file(data, max_rows=rows)
        assert len(parsed) == rows
        result = rounds.Rounds(per=rows)
        profiler = cProfile.Profile() if profile else None
        tenant_id = 0
        for round_ in range(max(rounds_, rounds.MIN_ROUNDS)):
            floor_tenant = new_tenant(database, f"导入基准 floor {round_}")
            # The same rows, already normalised: the floor does no parsing, no validation.
            values = [
                {
                    "tenant_id": floor_tenant,
                    "name": r.name,
                    "phone": normalize_phone(r.phone, region="CN"),
                    "region": r.region,
                    "city": r.city,
                    "timezone": "Asia/Shanghai",
                    "notes": r.notes,
                }
                for r in parsed
            ]

            def raw_insert(values: list[dict[str, object]] = values) -> None:
                with database.engine.begin() as connection:
                    connection.execute(insert(Customer.__table__), values)

            tenant_id = new_tenant(database, f"导入基准 {round_}")
            counts: dict[str, int] = {}

            def import_once(tenant_id: int = tenant_id, counts: dict[str, int] = counts) -> None:
                with database.session() as session:
                    tenant = session.get(Tenant, tenant_id)
                    assert tenant is not None
                    outcomes = import_file(session=session, tenant=tenant, data=data, max_rows=rows)
                counts.update(count_outcomes(outcomes))

            floor = rounds.measure(raw_insert, cpu)
            if profiler and round_ == 0:
                profiler.enable()
            ours = rounds.measure(import_once, cpu)
            if profiler and round_ == 0:
                profiler.disable()
            assert counts == {"imported": rows, "updated": 0, "unchanged": 0, "rejected": 0}, counts
            result.add(floor, ours)

        def import_again() -> None:
            with database.session() as session:
                tenant = session.get(Tenant, tenant_id)
                assert tenant is not None
                again = count_outcomes(
                    import_file(session=session, tenant=tenant, data=data, max_rows=rows)
                )
            assert again == {"imported": 0, "updated": 0, "unchanged": rows, "rejected": 0}

        again = rounds.measure(import_again, cpu)

        with database.session() as session:
            stored = session.scalar(
                select(func.count()).select_from(Customer).where(Customer.tenant_id == tenant_id)
            )
            tags = session.scalar(
                select(func.count())
                .select_from(CustomerTag)
                .where(CustomerTag.tenant_id == tenant_id)
            )
        assert stored == rows, stored

        if profiler:
            stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
            stats.print_stats(30)
            stats.sort_stats("tottime").print_stats(20)

        backend = database.engine.dialect.name
        print(
            f"backend: {backend}; file: {len(data) / 1024:.0f} KiB CSV, {rows} customers, "
            f"{tags} tag rows (the floor inserts customers only); CPU: this process"
            + (" and PostgreSQL's backends" if backends else "")
        )
        print(
            f"re-import of the same file ({rows} unchanged): {again.wall:.2f} s wall, "
            f"{again.cpu:.2f} s CPU ({rows / again.wall:.0f} rows/s)"
        )
        seconds = rounds.spread(s.wall for s in result.ours)
        print(
            f"import {rows} rows: {seconds.text(unit=' s')} wall; per row, import vs floor "
            "(raw insert):"
        )
        for line in result.lines(unit="µs", scale=1e6):
            print(line)
    finally:
        if backends:
            backends.close()
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--database", help="PostgreSQL server URL; default a temp SQLite file")
    parser.add_argument("--profile", action="store_true", help="cProfile the first import")
    parser.add_argument("--rounds", type=int, default=rounds.MIN_ROUNDS)
    args = parser.parse_args()
    if not 1 <= args.rows <= 99_999_999:
        parser.error("--rows must be between 1 and 99,999,999")
    with scratch_database(args.database, "huifang_bench_import") as url:
        run(url, args.rows, args.profile, args.rounds)


if __name__ == "__main__":
    main()
