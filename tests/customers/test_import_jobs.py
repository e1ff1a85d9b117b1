"""Background customer imports: progress a chunk at a time, the per-row report, picking up a
job whose worker died, giving up clearly, and the real embedded worker end to end."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

import huifang.db
from customers import import_jobs
from customers.models import Customer, ImportJob, ImportJobRow
from huifang import worker
from huifang.app import create_app
from huifang.db import set_database, utcnow
from huifang.errors import TooLarge, UnsupportedType
from huifang.pagination import PageParams
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.customers.test_import import OLE_MAGIC, ZH_HEADER, csv_file, xlsx_file


def rows(n: int, *, start: int = 0) -> list[list[object]]:
    return [[f"客户{i}", f"1390{i:07d}", "上海", "", "老客户", ""] for i in range(start, start + n)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_jobs, "CHUNK", 4)


@pytest.fixture
def no_queue(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Jobs the code queued (the test runs them itself, in its own transaction)."""
    queued: list[int] = []
    monkeypatch.setattr(import_jobs, "_queue", lambda session, job_id: queued.append(job_id))
    return queued


def job_outcomes(session, job_id: int) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    return [
        (r.line, r.status)
        for r in session.scalars(
            select(ImportJobRow).where(ImportJobRow.job_id == job_id).order_by(ImportJobRow.line)
        )
    ]


def test_a_job_imports_in_chunks_with_progress_and_a_report(
    session, account, small_chunks, no_queue, monkeypatch
):
    data = csv_file([ZH_HEADER, *rows(9), ["", "13800000000"], ["重复", "13900000003"]])
    job = import_jobs.create_job(
        session=session, tenant=account.tenant, data=data, filename="客户名单.csv"
    )
    assert no_queue == [job.id] and job.status == "queued" and job.file_bytes == len(data)

    progress: list[tuple[int, int | None]] = []
    real_write = import_jobs._write_chunk

    def spy(session, tenant, job, chunk, seen):  # type: ignore[no-untyped-def]
        real_write(session, tenant, job, chunk, seen)
        progress.append((job.rows_done, job.rows_total))

    monkeypatch.setattr(import_jobs, "_write_chunk", spy)
    import_jobs.run(session=session, job_id=job.id)
    session.refresh(job)
    assert progress == [(4, 11), (8, 11), (11, 11)]
    assert (job.status, job.imported, job.rejected, job.rows_done) == ("done", 9, 2, 11)
    assert job.data is None and job.finished_at is not None and job.error is None
    outcomes = job_outcomes(session, job.id)
    assert outcomes[-2:] == [(11, "rejected"), (12, "rejected")]
    page, total = import_jobs.job_rows(
        session=session,
        tenant_id=account.tenant.id,
        job_id=job.id,
        page=PageParams(limit=5),
        status="rejected",
    )
    assert total == 2
    # A number seen in an earlier chunk is still a duplicate line.
    assert page[1].reason is not None and "line 5" in page[1].reason
    assert import_jobs.job_customer_ids(
        session=session, tenant_id=account.tenant.id, job_id=job.id
    ) == [
        r.customer_id
        for r in session.scalars(
            select(ImportJobRow)
            .where(ImportJobRow.job_id == job.id, ImportJobRow.status == "imported")
            .order_by(ImportJobRow.line)
        )
    ]

    again = import_jobs.create_job(session=session, tenant=account.tenant, data=data)
    import_jobs.run(session=session, job_id=again.id)
    session.refresh(again)
    assert (again.unchanged, again.imported, again.rejected) == (9, 0, 2)


def test_a_job_whose_worker_died_is_picked_up_where_it_stopped(
    session, account, small_chunks, no_queue, monkeypatch
):
    data = xlsx_file([ZH_HEADER, *rows(10)])
    job = import_jobs.create_job(session=session, tenant=account.tenant, data=data)
    real_write = import_jobs._write_chunk
    calls = {"n": 0}

    def dies_on_the_second_chunk(*args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("the worker's process was killed")
        real_write(*args)

    monkeypatch.setattr(import_jobs, "_write_chunk", dies_on_the_second_chunk)
    with pytest.raises(SystemExit):
        import_jobs.run(session=session, job_id=job.id)
    session.rollback()  # what the dying worker's transaction did not commit is gone
    session.refresh(job)
    assert (job.status, job.rows_done, job.attempts) == ("running", 4, 1)

    # Too early: the worker may just be slow.
    assert import_jobs.resumable(session=session, now=utcnow()) == []
    later = utcnow() + import_jobs.STALE + dt.timedelta(seconds=1)
    assert import_jobs.stalled(job, now=later)
    assert import_jobs.resume(session=session, now=later) == [job.id]
    assert no_queue == [job.id, job.id] and job.status == "queued"

    monkeypatch.setattr(import_jobs, "_write_chunk", real_write)
    import_jobs.run(session=session, job_id=job.id)
    session.refresh(job)
    assert (job.status, job.rows_done, job.imported, job.attempts) == ("done", 10, 10, 2)
    assert [line for line, _ in job_outcomes(session, job.id)] == list(range(2, 12))
    assert (
        session.scalar(
            select(func.count())
            .select_from(Customer)
            .where(Customer.tenant_id == account.tenant.id)
        )
        == 10
    )


def test_a_second_delivery_does_not_run_a_job_twice(session, account, no_queue):
    job = import_jobs.create_job(
        session=session, tenant=account.tenant, data=csv_file([ZH_HEADER, *rows(3)])
    )
    import_jobs.run(session=session, job_id=job.id)
    import_jobs.run(session=session, job_id=job.id)  # acks_late: the task came again
    session.refresh(job)
    assert (job.status, job.attempts, len(job_outcomes(session, job.id))) == ("done", 1, 3)


def test_a_job_that_keeps_dying_is_given_up_with_a_sentence(session, account, no_queue):
    job = import_jobs.create_job(
        session=session, tenant=account.tenant, data=csv_file([ZH_HEADER, *rows(3)])
    )
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job.id)
        .values(
            status="running",
            attempts=import_jobs.MAX_ATTEMPTS,
            rows_done=2,
            rows_total=3,
            heartbeat_at=utcnow() - import_jobs.STALE * 2,
        )
    )
    session.expire_all()
    import_jobs.resume(session=session, now=utcnow())
    session.refresh(job)
    assert job.status == "interrupted" and job.data is None
    assert job.error is not None and "2 of 3 rows" in job.error and "Upload" in job.error
    assert no_queue == [job.id]  # only when it was created


def test_a_file_the_job_cannot_read_fails_with_the_readers_sentence(session, account, no_queue):
    job = import_jobs.create_job(
        session=session, tenant=account.tenant, data=csv_file([["名字", "地址"], ["王", "上海"]])
    )
    import_jobs.run(session=session, job_id=job.id)
    session.refresh(job)
    assert job.status == "failed" and job.rows_done == 0
    assert job.error is not None and "手机号" in job.error


def test_what_is_plainly_no_list_is_refused_at_once(session, account, no_queue, monkeypatch):
    with pytest.raises(UnsupportedType):
        import_jobs.create_job(session=session, tenant=account.tenant, data=OLE_MAGIC + b"x")
    monkeypatch.setattr(import_jobs.get_settings(), "import_max_bytes", 10)
    with pytest.raises(TooLarge):
        import_jobs.create_job(session=session, tenant=account.tenant, data=b"x" * 11)
    assert no_queue == []


def test_routes_start_poll_and_page_the_report(client, account, no_queue, other_account):
    data = csv_file([ZH_HEADER, *rows(3), ["", "x"]])
    started = client.post(
        "/v1/import-jobs", headers=account.headers, files={"file": ("名单.csv", data, "text/csv")}
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["status"], job["rows_done"], job["filename"]) == ("queued", 0, "名单.csv")
    assert (
        client.get(f"/v1/import-jobs/{job['id']}", headers=other_account.headers).status_code == 404
    )
    refused = client.post(
        "/v1/import-jobs",
        headers=account.headers,
        files={"file": ("old.xls", OLE_MAGIC + b"x", "application/vnd.ms-excel")},
    )
    assert refused.status_code == 415 and ".xlsx" in refused.json()["detail"]
    listed = client.get("/v1/import-jobs", headers=account.headers).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    rows_page = client.get(f"/v1/import-jobs/{job['id']}/rows", headers=account.headers).json()
    assert rows_page == {"items": [], "total": 0, "limit": 50, "offset": 0}


# --- the real worker ---------------------------------------------------------------------------


@pytest.fixture
def company(sqlite_database) -> Iterator[SimpleNamespace]:
    with sqlite_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="导入家政", signature="导入家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        tenant_id = tenant.id
    yield SimpleNamespace(headers={"Authorization": f"Bearer {key}"}, tenant_id=tenant_id)
    with sqlite_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))


@pytest.mark.serial
def test_embedded_worker_imports_and_the_progress_is_pollable(
    sqlite_database, company, monkeypatch
):
    monkeypatch.setattr(import_jobs, "CHUNK", 200)
    data = xlsx_file([ZH_HEADER, *rows(1000)])
    set_database(sqlite_database)
    worker.load_tasks()  # as huifang.asgi does before it starts the embedded worker
    seen: list[int] = []
    try:
        with (
            worker.EmbeddedWorker(beat=False),
            TestClient(create_app(database=sqlite_database)) as client,
        ):
            job = client.post(
                "/v1/import-jobs", headers=company.headers, files={"file": ("名单.xlsx", data)}
            ).json()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = client.get(f"/v1/import-jobs/{job['id']}", headers=company.headers).json()
                seen.append(job["rows_done"])
                if job["status"] not in ("queued", "running"):
                    break
                time.sleep(0.05)
            report = client.get(
                f"/v1/import-jobs/{job['id']}/rows?limit=500&offset=500", headers=company.headers
            ).json()
    finally:
        huifang.db._database = None
    assert job["status"] == "done", job
    assert (job["rows_total"], job["rows_done"], job["imported"]) == (1000, 1000, 1000)
    assert seen == sorted(seen)  # progress only moves forward
    assert report["total"] == 1000 and report["items"][0]["row"] == 502


@pytest.mark.services
def test_a_celery_worker_on_redis_runs_an_import_job(
    postgres_database, redis_url, tmp_path, monkeypatch
):
    """Distributed mode: the API process stores the job, a `huifang worker` process on
    Redis and PostgreSQL imports it."""
    monkeypatch.setattr(import_jobs, "_queue", lambda session, job_id: None)
    with postgres_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="分布式导入", signature="分布式导入")
        job = import_jobs.create_job(
            session=session, tenant=tenant, data=csv_file([ZH_HEADER, *rows(1200)])
        )
        tenant_id, job_id = tenant.id, job.id
    env = {
        **os.environ,
        "HUIFANG_REDIS_URL": redis_url,
        "HUIFANG_DATABASE_URL": postgres_database.url,
        "HUIFANG_ENVIRONMENT": "test",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "huifang.cli", "worker", "-Q", "default", "-c", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = Celery(broker=redis_url)
    try:
        client.send_task(
            "customers.tasks.run_import_job", kwargs={"job_id": job_id}, queue="default"
        )
        deadline = time.monotonic() + 90
        status = "queued"
        while time.monotonic() < deadline and status in ("queued", "running"):
            time.sleep(0.2)
            with postgres_database.sessionmaker() as session:
                found = session.get(ImportJob, job_id)
                assert found is not None
                status, done, imported = found.status, found.rows_done, found.imported
        assert status == "done", log.read_text(errors="replace")[-3000:]
        assert (done, imported) == (1200, 1200)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        with postgres_database.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
