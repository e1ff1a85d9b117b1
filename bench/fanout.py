"""Fan-out: one due occurrence for each of N customers, against a raw INSERT … SELECT.

    .venv/bin/python bench/fanout.py --database URL [--customers 1000000] [--chunk 50000]
        [--rounds 5]

e.g. ``--database postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.

On the PostgreSQL server of ``--database`` it creates (and drops afterwards) a scratch
database ``huifang_bench_fanout``, migrated as in production, and fills it in SQL
(``INSERT … SELECT … generate_series``): N customers of one company (1 in 100 in New York,
the rest in Shanghai), each with marketing consent and a last 空调清洗 60 to 100 days ago,
so the preset "every 90 days, up to 14 days late" names exactly one occurrence per customer
within the horizon, some caught up (due now), most ahead. One campaign is active.

Timed, each into an empty ``campaign_occurrences`` after a CHECKPOINT, each committed:
  ours   ``campaigns.materialize.materialize``: audience (consent, suppressions, no pending
         occurrence), the cadence with its catch-up policy, the local send instants, in
         ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per chunk of customer ids;
  floor  one hand-written ``INSERT … SELECT`` of the same rows: the same columns and the
         same values (last visit's local date + 90, 10:00 local, caught up when late),
         computed by the database, without the audience, the skip logic or the conflict
         check.
Both must produce the same rows (count and checksum). The scratch database runs no parallel
workers, whose CPU the per-backend reading would miss. Floor and ours take turns,
``--rounds`` times (bench/rounds.py). Printed: wall and CPU (PostgreSQL's backends and this
process) per row of both, the ratios ours / floor as median (min–max) over the rounds
(target ≤ 1.2×, issue 21), and this process's peak RSS before and after ours (the fan-out
never brings customers into Python, so it must not grow with N).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rounds
from scratch import scratch_database
from serving import PostgresBackends

from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from huifang.db import Database
from huifang.migrate import upgrade
from tenancy import service as tenancy
from tenancy.models import Tenant

SCRATCH = "huifang_bench_fanout"

FLOOR = """
INSERT INTO campaign_occurrences (tenant_id, campaign_id, customer_id, local_date, due_at,
    basis_at, campaign_version, status, caught_up, late_by_days, created_at, updated_at)
SELECT :tenant, :campaign, s.customer_id, s.due_on,
       greatest((s.due_on + time '10:00') AT TIME ZONE s.tz, :now),
       s.served_at, :version, 'pending',
       (s.due_on + time '10:00') AT TIME ZONE s.tz <= :now,
       CASE WHEN (s.due_on + time '10:00') AT TIME ZONE s.tz <= :now
            THEN timezone(s.tz, :now)::date - s.due_on ELSE 0 END,
       :now, :now
FROM (SELECT v.customer_id, c.timezone AS tz,
             max(timezone(c.timezone, v.finished_at)::date) + 90 AS due_on,
             max(v.finished_at) AS served_at
      FROM visits v JOIN customers c ON c.id = v.customer_id
      WHERE v.tenant_id = :tenant AND v.service_type = 'ac_cleaning'
        AND v.finished_at IS NOT NULL
      GROUP BY v.customer_id, c.timezone) AS s
"""

FINGERPRINT = """
SELECT count(*), coalesce(sum(hashtext(concat_ws('|', customer_id, local_date, due_at,
       basis_at, campaign_version, status, caught_up, late_by_days))::bigint), 0)
FROM campaign_occurrences WHERE campaign_id = :campaign
"""


def generate(database: Database, count: int, now: dt.datetime) -> tuple[int, int]:
    """A company, ``count`` customers with consent and a last AC cleaning; its campaign."""
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="压测家政", signature="压测家政")
        tenant_id = tenant.id
    params = {"tenant": tenant_id, "count": count, "now": now}
    with database.engine.begin() as connection:
        connection.execute(
            text("""
            INSERT INTO customers (tenant_id, name, phone, region, timezone, created_at,
                                   updated_at)
            SELECT :tenant, '客户' || g, '+86139' || lpad(g::text, 8, '0'), '上海',
                   CASE WHEN g % 100 = 0 THEN 'America/New_York' ELSE 'Asia/Shanghai' END,
                   :now, :now
            FROM generate_series(1, :count) AS g"""),
            params,
        )
        connection.execute(
            text("""
            INSERT INTO visits (tenant_id, customer_id, service_type, areas, finished_at,
                                created_at, updated_at)
            SELECT :tenant, id, 'ac_cleaning', '[]'::jsonb,
                   CAST(:now AS timestamptz) - (60 + id % 41) * interval '1 day'
                       - (id % 24) * interval '1 hour',
                   :now, :now
            FROM customers WHERE tenant_id = :tenant"""),
            params,
        )
        connection.execute(
            text("""
            INSERT INTO consent_records (tenant_id, customer_id, phone, source, evidence,
                                         granted_at, recorded_at)
            SELECT :tenant, id, phone, 'import', 'bench', :now, :now
            FROM customers WHERE tenant_id = :tenant"""),
            params,
        )
    vacuum(database.engine)
    with database.session() as session:
        owner = session.get(Tenant, tenant_id)
        assert owner is not None
        campaign = campaigns.create_campaign(
            session=session, tenant=owner, preset="ac_filter_quarterly"
        )
        campaigns.activate(session=session, tenant=owner, campaign_id=campaign.id, now=now)
        return tenant_id, campaign.id


def serial(url: str) -> None:
    """No parallel workers in the scratch database: a worker exits before the CPU of the
    backends is read, so its time would be counted on neither side. (The floor's
    ``INSERT … SELECT`` never runs in parallel; ours reads the company's time zones with
    a scan that did, its workers' CPU left out.)"""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(
                text(f'ALTER DATABASE "{SCRATCH}" SET max_parallel_workers_per_gather = 0')
            )
    finally:
        engine.dispose()


def vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def fresh(engine: Engine) -> None:
    """An empty occurrences table and no dirty pages left from the previous run."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE campaign_occurrences"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("CHECKPOINT"))


def fingerprint(engine: Engine, campaign_id: int) -> tuple[int, int]:
    with engine.connect() as connection:
        count, checksum = connection.execute(text(FINGERPRINT), {"campaign": campaign_id}).one()
    return int(count), int(checksum)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="PostgreSQL server URL")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument(
        "--chunk",
        type=int,
        default=materializer.CHUNK_CUSTOMERS,
        help="customer ids per INSERT … SELECT",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=rounds.MIN_ROUNDS,
        help="floor and ours, alternately (at least 5)",
    )
    args = parser.parse_args()
    if not 1 <= args.customers <= 50_000_000:
        parser.error("--customers must be between 1 and 50,000,000")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with scratch_database(args.database, SCRATCH) as url:
        serial(url)
        upgrade(url)
        database = Database(url)
        try:
            started = time.perf_counter()
            tenant_id, campaign_id = generate(database, args.customers, now)
            print(
                f"generated {args.customers:,} customers, visits and consents in "
                f"{time.perf_counter() - started:.1f} s"
            )
            prints = set()
            result = rounds.Rounds(per=args.customers)
            backends = PostgresBackends(url)

            def cpu() -> float:
                # The work is PostgreSQL's: its backends for this database, and this process.
                return rounds.self_cpu() + backends.total()

            def floor() -> None:
                with database.engine.begin() as connection:
                    connection.execute(
                        text(FLOOR),
                        {"tenant": tenant_id, "now": now, "campaign": campaign_id, "version": 1},
                    )

            def ours() -> None:
                with database.session() as session:
                    made = materializer.materialize(session=session, now=now, chunk=args.chunk)
                assert made == {campaign_id: args.customers}, made

            rss_before = peak_rss_mib()
            for _ in range(max(args.rounds, rounds.MIN_ROUNDS)):
                fresh(database.engine)
                floor_sample = rounds.measure(floor, cpu)
                prints.add(fingerprint(database.engine, campaign_id))
                fresh(database.engine)
                result.add(floor_sample, rounds.measure(ours, cpu))
                prints.add(fingerprint(database.engine, campaign_id))
            rss_after = peak_rss_mib()
            backends.close()
        finally:
            database.dispose()
    assert len(prints) == 1, f"the two paths made different rows: {prints}"
    ((rows, _),) = prints
    assert rows == args.customers, rows
    print(
        f"backend: postgresql; {rows:,} due occurrences (one per customer), chunk "
        f"{args.chunk:,}; identical rows in both paths; CPU: PostgreSQL's backends and this "
        "process"
    )
    print(f"peak RSS: {rss_before:.0f} MiB before materialize, {rss_after:.0f} MiB after")
    seconds = rounds.spread(s.wall for s in result.ours)
    floor_seconds = rounds.spread(s.wall for s in result.floor)
    print(
        f"materialize: {seconds.text(unit=' s')}; floor INSERT … SELECT: "
        f"{floor_seconds.text(unit=' s')}; per row:"
    )
    for line in result.lines(unit="µs", scale=1e6):
        print(line)


if __name__ == "__main__":
    main()
