"""The work queue: one Celery app, one task wrapper, and the embedded in-process worker.

Distributed mode: tasks travel through Redis to ``huifang worker -Q …`` processes and
``huifang beat`` sends the periodic ticks. Embedded mode (no ``HUIFANG_REDIS_URL``): the
same Celery app uses kombu's in-memory transport and ``huifang serve`` runs a Celery
worker and the beat scheduler in threads of its own process. Either way the task code is
the same; durable state lives in SQL, so nothing is lost if the queue is.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import structlog
from celery import Celery, Task
from celery.beat import EmbeddedService
from celery.worker import WorkController
from kombu import Queue
from sqlalchemy.orm import Session

from huifang import rls
from huifang.db import get_database, on_commit
from huifang.logs import current_request_id
from huifang.metrics import PERIODIC_FAILURES, TASK_DURATION, TASKS
from huifang.settings import Settings, get_settings

QUEUES = ("default", "media", "messaging")
EMBEDDED_POLL_SECONDS = 0.05
log = structlog.get_logger(__name__)

celery_app = Celery("huifang")


def configure(settings: Settings) -> None:
    """Point the Celery app at Redis, or at the in-process transport in embedded mode."""
    celery_app.conf.update(
        # The in-process transport ignores the host; naming one spares a warning at start.
        broker_url=settings.redis_url or "memory://localhost/",
        broker_connection_retry_on_startup=True,
        # Schedules live in SQL; Redis visibility only has to outlast a running task.
        # The in-process transport polls: at its default of a second, with a prefetch of
        # one task per thread, the embedded worker took two tasks a second (twenty photos
        # waited ten seconds for their turn).
        broker_transport_options=(
            {"visibility_timeout": 3600}
            if settings.redis_url
            else {"polling_interval": EMBEDDED_POLL_SECONDS}
        ),
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="default",
        # A task is acknowledged when it finished, and given back if its worker died:
        # tasks must therefore tolerate a second delivery.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=300,
        task_time_limit=360,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=BEAT_SCHEDULE,
        task_routes=(_route,),
    )


# Task name -> queue, filled by the @task decorator; Celery asks _route for each send.
_QUEUE_OF: dict[str, str] = {}


def _route(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    queue = _QUEUE_OF.get(name)
    return {"queue": queue} if queue else None


P = ParamSpec("P")
R = TypeVar("R")


def task(
    *, queue: str = "default", company: tuple[Any, str] | None = None, **options: Any
) -> Callable[[Callable[..., R]], Task]:
    """Turn ``fn(*, session, **ids)`` into a Celery task that owns its database session.

    The wrapper opens a session, commits when ``fn`` returns, rolls back when it raises
    and always closes it. Arguments are keyword-only ids, never ORM objects.

    ``company=(Model, "argument")``: the task works on one company's row, and its session
    sees that company's rows only (row-level security, ``huifang.rls``), in every
    transaction. Tasks without it run unscoped: the periodic scans across companies, which
    scope each company's work themselves (``each_on_its_own(scope=…)``, ``rls.by_tenant``).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def decorate(fn: Callable[..., R]) -> Task:
        name = f"{fn.__module__}.{fn.__name__}"
        _QUEUE_OF[name] = queue

        @celery_app.task(name=name, bind=True, **options)
        @functools.wraps(fn)
        def run(self: Task, **kwargs: Any) -> R:
            request_id = (self.request.headers or {}).get("request_id") if self.request else None
            structlog.contextvars.bind_contextvars(
                task=name, task_id=self.request.id, request_id=request_id
            )
            started = time.perf_counter()
            outcome = "failed"
            try:
                with get_database().session() as session:
                    if company is not None:
                        model, argument = company
                        rls.scope_to_row(session, model, kwargs[argument])
                    result = fn(session=session, **kwargs)
                outcome = "ok"
                return result
            finally:
                TASKS.labels(name, outcome).inc()
                TASK_DURATION.labels(name).observe(time.perf_counter() - started)
                structlog.contextvars.unbind_contextvars("task", "task_id", "request_id")

        return run

    return decorate


def send(task_: Task, **kwargs: Any) -> None:
    """Enqueue now (the caller holds no transaction that the task depends on)."""
    task_.apply_async(kwargs=kwargs, headers={"request_id": current_request_id()})


def enqueue(session: Session, task_: Task, **kwargs: Any) -> None:
    """Enqueue once ``session`` commits, so the task never looks for a row not yet written."""
    on_commit(session, functools.partial(send, task_, **kwargs))


def each_on_its_own(
    session: Session,
    task_name: str,
    ids: Iterable[int],
    work: Callable[[int], object],
    *,
    what: str,
    scope: Any = None,
) -> list[int]:
    """Run a periodic task's ``work`` for each campaign or company, committing each.

    One that fails is rolled back, logged with its id and counted in ``/metrics``
    (``huifang_periodic_failures_total``), and the loop goes on: a bad row of one company
    never stalls the others. Returns the ids that failed.

    ``scope``: each item's work sees only its company's rows (row-level security): the
    model whose ids ``ids`` are, or ``rls.COMPANIES`` when they are the companies' own.
    """
    failed: list[int] = []
    for item_id in ids:
        try:
            if scope is rls.COMPANIES:
                rls.scope_to_tenant(session, item_id)
            elif scope is not None:
                rls.scope_to_row(session, scope, item_id)
            work(item_id)
            session.commit()
        except Exception:
            session.rollback()
            failed.append(item_id)
            PERIODIC_FAILURES.labels(task_name).inc()
            log.exception(
                "periodic work failed; going on with the next", task=task_name, **{what: item_id}
            )
        finally:
            rls.forget(session)  # the next item begins unscoped
    return failed


class Coalescer:
    """Ids handed in by many transactions, published as one task per ``window`` seconds.

    Publishing a Celery task (the message, kombu, a Redis round trip) costs more CPU than a
    webhook's whole SQL (BENCHMARKS.md, the opt-out webhook). Under load the answers to
    replies are handed to this instead: the first id starts the window, and every id that
    arrives within it goes in the same task (``task_(**{argument: ids})``, at most ``limit``
    ids each). At 100 replies a second a process publishes 20 tasks, not 100; a lone reply
    waits ``window``.

    Nothing is lost if the process dies before it publishes: the rows are already committed
    ``queued``, and the dispatcher's sweep sends what stayed queued too long.
    """

    def __init__(self, task_: Task, *, argument: str, window: float, limit: int) -> None:
        self.task = task_
        self.argument = argument
        self.window = window
        self.limit = limit
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a child has no flushing thread
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: list[int] = []
        self._thread: threading.Thread | None = None

    def add(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            self._start()
            self._ready.notify()

    def add_on_commit(self, session: Session, ids: list[int]) -> None:
        """``add`` once ``session`` commits (never, if it rolls back)."""
        if ids:
            on_commit(session, functools.partial(self.add, list(ids)))

    def flush(self) -> None:
        """Publish what is pending now (the process is stopping, or a test wants it sent)."""
        with self._lock:
            ids, self._pending = self._pending, []
        for start in range(0, len(ids), self.limit):
            try:
                send(self.task, **{self.argument: ids[start : start + self.limit]})
            except Exception:  # the broker is down: the sweep will find the rows queued
                log.exception(
                    "publishing coalesced task failed",
                    task=self.task.name,
                    ids=len(ids[start : start + self.limit]),
                )

    def _start(self) -> None:  # with the lock held
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"coalesce-{self.task.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._ready.wait()
            time.sleep(self.window)
            self.flush()


class EmbeddedWorker:
    """A Celery worker and beat scheduler running in threads of this process (embedded mode)."""

    def __init__(self, *, concurrency: int = 2, beat: bool = True) -> None:
        self.concurrency = concurrency
        self.with_beat = beat
        self._worker: WorkController | None = None
        self._beat: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        class Controller(WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                ready.set()

        self._worker = Controller(
            app=celery_app,
            pool="threads",
            concurrency=self.concurrency,
            queues=list(QUEUES),
            hostname="embedded@huifang",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="INFO",
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="huifang-worker", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the embedded worker did not start within 30 s")
        if self.with_beat:
            # The in-memory scheduler: ticks are stateless, the database holds what is due.
            self._beat = EmbeddedService(
                celery_app, thread=True, scheduler_cls="celery.beat:Scheduler"
            )
            self._beat.start()
        log.info("embedded worker started", queues=list(QUEUES), beat=self.with_beat)

    def stop(self) -> None:
        if self._beat is not None:
            self._beat.stop()
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout=15)
        log.info("embedded worker stopped")

    def __enter__(self) -> EmbeddedWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Periodic ticks. Each is cheap and idempotent; work due months ahead is rows in SQL,
# never a Celery ETA (DESIGN.md, invariant 5).
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    f"heartbeat-{queue}": {
        "task": "huifang.ops.heartbeat",
        "schedule": timedelta(seconds=30),
        "kwargs": {"queue": queue},
        "options": {"queue": queue, "expires": 25},
    }
    for queue in QUEUES
}
BEAT_SCHEDULE["deliver-due-alerts"] = {
    "task": "alerts.tasks.deliver_due_alerts",
    "schedule": timedelta(seconds=30),
    "options": {"queue": "default", "expires": 25},
}
BEAT_SCHEDULE["scan-alerts"] = {
    "task": "messaging.tasks.scan_alerts",
    "schedule": timedelta(seconds=60),
    "options": {"queue": "default", "expires": 55},
}
BEAT_SCHEDULE["dispatch-due-messages"] = {
    "task": "messaging.tasks.dispatch_due",
    "schedule": timedelta(seconds=10),
    "options": {"queue": "messaging", "expires": 9},
}
BEAT_SCHEDULE["purge-expired-consents"] = {
    "task": "compliance.tasks.purge_expired_consents",
    "schedule": timedelta(days=1),
    "options": {"queue": "default", "expires": 3600},
}
BEAT_SCHEDULE["expire-report-media"] = {
    "task": "privacy.tasks.expire_report_media",
    "schedule": timedelta(minutes=10),
    "options": {"queue": "default", "expires": 540},
}
BEAT_SCHEDULE["enforce-retention"] = {
    "task": "privacy.tasks.enforce_retention",
    "schedule": timedelta(days=1),
    "options": {"queue": "default", "expires": 3600},
}
BEAT_SCHEDULE["materialize-campaign-occurrences"] = {
    "task": "campaigns.tasks.materialize_occurrences",
    "schedule": timedelta(minutes=10),
    "options": {"queue": "default", "expires": 540},
}
BEAT_SCHEDULE["hand-off-due-occurrences"] = {
    "task": "campaigns.tasks.hand_off_due_occurrences",
    "schedule": timedelta(minutes=1),
    "options": {"queue": "default", "expires": 55},
}
BEAT_SCHEDULE["send-booking-reminders"] = {
    "task": "bookings.tasks.send_booking_reminders",
    "schedule": timedelta(minutes=5),
    "options": {"queue": "default", "expires": 290},
}
BEAT_SCHEDULE["resume-import-jobs"] = {
    "task": "customers.tasks.resume_import_jobs",
    "schedule": timedelta(minutes=1),
    "options": {"queue": "default", "expires": 55},
}
BEAT_SCHEDULE["requeue-stuck-media"] = {
    "task": "media.tasks.requeue_stuck_media",
    "schedule": timedelta(minutes=1),
    "options": {"queue": "default", "expires": 55},
}
BEAT_SCHEDULE["sweep-resumable-uploads"] = {
    "task": "media.tasks.sweep_uploads",
    "schedule": timedelta(minutes=10),
    "options": {"queue": "default", "expires": 540},
}

configure(get_settings())


def load_tasks() -> None:
    """Import every module that defines tasks, so workers know them by name."""
    import alerts.tasks  # noqa: F401
    import bookings.tasks  # noqa: F401
    import campaigns.tasks  # noqa: F401
    import compliance.tasks  # noqa: F401
    import customers.tasks  # noqa: F401
    import huifang.ops  # noqa: F401
    import media.tasks  # noqa: F401
    import messaging.tasks  # noqa: F401
    import privacy.tasks  # noqa: F401
    import reports.tasks  # noqa: F401
