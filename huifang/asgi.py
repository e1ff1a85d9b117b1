"""The ASGI app for uvicorn: ``uvicorn huifang.asgi:app``.

In embedded mode the lifespan also runs the Celery worker and scheduler in threads; in
distributed mode it opens the PostgreSQL connection pool before the first request.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from huifang.app import create_app
from huifang.db import get_database
from huifang.logs import configure_logging
from huifang.settings import get_settings
from huifang.worker import EmbeddedWorker, load_tasks
from media.fonts import ensure_cjk_font

log = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    load_tasks()
    if settings.embedded:
        # This process is the media worker too: refuse to start rather than draw boxes.
        ensure_cjk_font()
    else:
        try:
            await run_in_threadpool(get_database().open_pool)
        except OperationalError as exc:  # /healthz says so; requests retry their connection
            log.warning("could not open the database pool at start", error=str(exc))
    worker = EmbeddedWorker() if settings.embedded else None
    if worker:
        worker.start()
    # What was made while starting (modules, the app, the pool, the worker) lives as long as
    # the process: keep the cycle collector off it. A full collection walked it all with
    # the GIL held, and every request in flight waited (BENCHMARKS.md, the opt-out webhook).
    gc.freeze()
    try:
        yield
    finally:
        if worker:
            worker.stop()


configure_logging(fmt=get_settings().log_format, level=get_settings().log_level)
app = create_app(lifespan=lifespan)
