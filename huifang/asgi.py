"""The ASGI app for uvicorn: ``uvicorn huifang.asgi:app``.

In embedded mode the lifespan also runs the Celery worker and scheduler in threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from huifang.app import create_app
from huifang.logs import configure_logging
from huifang.settings import get_settings
from huifang.worker import EmbeddedWorker, load_tasks
from media.fonts import ensure_cjk_font


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    load_tasks()
    if settings.embedded:
        # This process is the media worker too: refuse to start rather than draw boxes.
        ensure_cjk_font()
    worker = EmbeddedWorker() if settings.embedded else None
    if worker:
        worker.start()
    try:
        yield
    finally:
        if worker:
            worker.stop()


configure_logging(fmt=get_settings().log_format, level=get_settings().log_level)
app = create_app(lifespan=lifespan)
