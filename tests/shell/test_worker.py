"""The work queue: configuration, the task wrapper, enqueue-after-commit, both modes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import delete, select

from huifang import ops, worker
from huifang.db import Database, on_commit, set_database
from huifang.ops import WorkerHeartbeat
from media.models import Media
from tenancy.models import Tenant
from tests.factories import create_consenting_customer


def test_celery_is_configured_for_at_least_once_delivery():
    conf = worker.celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"default", "media", "messaging"}
    assert conf.broker_url == "memory://localhost/"  # no HUIFANG_REDIS_URL: embedded mode


def test_every_periodic_tick_names_a_registered_task():
    worker.load_tasks()
    assert worker.BEAT_SCHEDULE
    for name, entry in worker.BEAT_SCHEDULE.items():
        assert entry["task"] in worker.celery_app.tasks, name
        assert entry["options"]["queue"] in worker.QUEUES


def test_on_commit_runs_after_commit_and_never_after_rollback(database):
    calls: list[str] = []
    with database.sessionmaker() as session:
        on_commit(session, lambda: calls.append("first"))
        assert calls == []
        session.rollback()
        session.commit()
        assert calls == []  # the rolled-back transaction's callback is gone
        on_commit(session, lambda: calls.append("second"))
        session.commit()
    assert calls == ["second"]


@worker.task(queue="default")
def _write_then_fail(*, session, queue: str) -> None:
    """A test task: writes a heartbeat, then fails, so the wrapper must roll it back."""
    session.add(WorkerHeartbeat(queue=queue, hostname="should-vanish", seen_at=ops.utcnow()))
    session.flush()
    raise RuntimeError("boom")


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _beat_of(database: Database, queue: str) -> WorkerHeartbeat | None:
    with database.sessionmaker() as session:
        return session.get(WorkerHeartbeat, queue)


@pytest.fixture
def embedded(sqlite_database):
    set_database(sqlite_database)
    with sqlite_database.session() as session:
        session.execute(delete(WorkerHeartbeat))
    # The in-memory broker lives as long as the test process: earlier tests' requests left
    # tasks in it (sends, photo processing) that no worker took. Taken in order before this
    # test's own, they would only measure how long a backlog takes to drain.
    worker.celery_app.control.purge()
    with worker.EmbeddedWorker(beat=False) as running:
        yield running
    import huifang.db

    huifang.db._database = None


@pytest.mark.serial
def test_embedded_worker_consumes_tasks_in_process(embedded, sqlite_database):
    with sqlite_database.session() as session:
        worker.enqueue(session, ops.heartbeat, queue="media")
        assert _beat_of(sqlite_database, "media") is None  # not before the commit
    assert _wait_for(lambda: _beat_of(sqlite_database, "media") is not None)

    worker.send(_write_then_fail, queue="failing")
    worker.send(ops.heartbeat, queue="after-failure")  # the worker survives a failing task
    assert _wait_for(lambda: _beat_of(sqlite_database, "after-failure") is not None)
    assert _beat_of(sqlite_database, "failing") is None  # the wrapper rolled it back


@pytest.mark.serial
def test_the_embedded_worker_takes_a_burst_without_waiting_on_its_poll(embedded, sqlite_database):
    # Twenty photos uploaded together are twenty tasks. The in-process transport used to
    # poll once a second, two tasks a poll: ten seconds before the last one even started.
    queues = [f"burst-{i}" for i in range(20)]
    for queue in queues:
        worker.send(ops.heartbeat, queue=queue)
    assert _wait_for(lambda: all(_beat_of(sqlite_database, q) for q in queues), timeout=5)


@worker.task(queue="default")
def _note_ids(*, session, ids: list[int]) -> None:
    """A test task: one heartbeat row per run, named after the ids that run was given."""
    session.add(
        WorkerHeartbeat(
            queue="ids-" + ",".join(map(str, ids)), hostname="coalesced", seen_at=ops.utcnow()
        )
    )


def _runs(database: Database) -> list[str]:
    with database.sessionmaker() as session:
        return sorted(
            session.scalars(
                select(WorkerHeartbeat.queue).where(WorkerHeartbeat.hostname == "coalesced")
            )
        )


@pytest.mark.serial
def test_ids_handed_in_within_a_window_are_published_as_one_task(embedded, sqlite_database):
    coalescer = worker.Coalescer(_note_ids, argument="ids", window=0.3, limit=3)
    with sqlite_database.session() as session:
        coalescer.add_on_commit(session, [1, 2])
        coalescer.add_on_commit(session, [3])
        coalescer.add_on_commit(session, [])
    with sqlite_database.sessionmaker() as session:
        coalescer.add_on_commit(session, [99])
        session.rollback()  # never committed: never published
    coalescer.add([4])  # over the limit of three: a second task
    assert _wait_for(lambda: len(_runs(sqlite_database)) == 2, timeout=5)
    assert _runs(sqlite_database) == ["ids-1,2,3", "ids-4"]
    coalescer.add([5])  # a new window, a new task
    assert _wait_for(lambda: "ids-5" in _runs(sqlite_database), timeout=5)
    assert len(_runs(sqlite_database)) == 3


@pytest.mark.serial
def test_a_broker_failure_loses_no_later_ids(embedded, sqlite_database, monkeypatch):
    coalescer = worker.Coalescer(_note_ids, argument="ids", window=0.05, limit=10)
    real_send = worker.send
    failures: list[dict] = []

    def broker_down_once(task_, **kwargs):
        if not failures:
            failures.append(kwargs)
            raise ConnectionError("broker unreachable")
        real_send(task_, **kwargs)

    monkeypatch.setattr(worker, "send", broker_down_once)
    coalescer.add([7])
    assert _wait_for(lambda: bool(failures), timeout=5)
    assert failures == [{"ids": [7]}]  # logged; the row stays queued for the sweep
    coalescer.add([8])  # the flushing thread survived the failure
    assert _wait_for(lambda: _runs(sqlite_database) == ["ids-8"], timeout=5)


@pytest.mark.serial
def test_flush_publishes_what_is_pending_at_once(embedded, sqlite_database):
    coalescer = worker.Coalescer(_note_ids, argument="ids", window=60, limit=10)
    coalescer.add([11, 12])
    coalescer.flush()  # what the process does on its way out, without waiting the window
    assert _wait_for(lambda: _runs(sqlite_database) == ["ids-11,12"], timeout=5)


@pytest.mark.services
def test_a_real_celery_worker_on_redis_runs_tasks_end_to_end(
    postgres_database, redis_url, tmp_path: Path
):
    env = {
        **os.environ,
        "HUIFANG_REDIS_URL": redis_url,
        "HUIFANG_DATABASE_URL": postgres_database.url,
        "HUIFANG_ENVIRONMENT": "test",
    }
    log = tmp_path / "worker.log"
    with postgres_database.session() as session:
        session.execute(delete(WorkerHeartbeat))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "huifang.cli",
                "worker",
                "-Q",
                "default,media,messaging",
                "-c",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # A client of its own, as the API process would be: the test's app is in embedded mode.
    client = Celery(broker=redis_url)
    try:
        for queue in worker.QUEUES:
            client.send_task("huifang.ops.heartbeat", kwargs={"queue": queue}, queue=queue)
        arrived = _wait_for(
            lambda: all(_beat_of(postgres_database, q) for q in worker.QUEUES), timeout=60
        )
        output = log.read_text(errors="replace")
        assert arrived, f"the worker did not run the tasks; its log:\n{output[-3000:]}"
        assert output.count("succeeded") >= 3
        with postgres_database.sessionmaker() as session:
            queues = set(session.scalars(select(WorkerHeartbeat.queue)))
        assert queues == set(worker.QUEUES)

        # A photo, received by "the API" (this process), processed by the worker process.
        tenant_id, media_id = _receive_photo(postgres_database)
        try:
            client.send_task(
                "media.tasks.process_media", kwargs={"media_id": media_id}, queue="media"
            )

            def status() -> str:
                with postgres_database.sessionmaker() as session:
                    return session.get(Media, media_id).status

            assert _wait_for(lambda: status() != "processing", timeout=60), log.read_text()
            assert status() == "ready"
        finally:
            with postgres_database.session() as session:
                session.execute(delete(Tenant).where(Tenant.id == tenant_id))
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _receive_photo(database: Database) -> tuple[int, int]:
    from media import service as media
    from media.upload import stage_bytes
    from tenancy import service as tenancy
    from tests.media.conftest import phone_jpeg
    from visits import service as visits

    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="分布式家政", signature="分布式家政")
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000"
        )
        visit = visits.create_visit(
            session=session, tenant=tenant, customer_id=customer.id, service_type="ac_cleaning"
        )
        staged = stage_bytes(phone_jpeg(orientation=6), fields={"phase": "after"})
        photo, _ = media.accept_upload(
            session=session, tenant=tenant, visit_id=visit.id, staged=staged
        )
        return tenant.id, photo.id


def test_the_media_worker_refuses_to_start_without_a_cjk_font():
    result = subprocess.run(
        [sys.executable, "-m", "huifang.cli", "worker", "-Q", "media"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "HUIFANG_REDIS_URL": "redis://127.0.0.1:1/0",
            "HUIFANG_FONT_PATH": "/nonexistent/font.ttf",
        },
    )
    assert result.returncode == 1
    assert "HUIFANG_FONT_PATH" in result.stderr
    assert "boxes" in result.stderr or "font" in result.stderr.lower()


def test_worker_and_beat_refuse_to_start_without_redis():
    result = subprocess.run(
        [sys.executable, "-m", "huifang.cli", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HUIFANG_REDIS_URL": ""},
    )
    assert result.returncode == 1
    assert "HUIFANG_REDIS_URL" in result.stderr
