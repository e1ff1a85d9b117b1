"""Structured logs: key=value on a terminal, JSON in production, a request id on every line."""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"


def configure_logging(*, fmt: str = "console", level: str = "INFO") -> None:
    """Route structlog and the standard library (uvicorn, celery, sqlalchemy) through one format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # libvips reports its inner workings at INFO ("VIPS: reducev: using vector path"): six
    # lines per resize, 70 in the demo's start. Its warnings and errors still come through;
    # HUIFANG_LOG_LEVEL=DEBUG shows the rest.
    logging.getLogger("pyvips").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    )


_HEADER = REQUEST_ID_HEADER.encode()


def bind_request_id(given: bytes) -> str:
    """The request's id (the caller's ``X-Request-ID`` if printable, else a new one), bound
    to every log line from now until the request ends (``unbind_request_id``)."""
    text = given.decode("latin-1")
    request_id = text[:64] if text and text.isprintable() else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def unbind_request_id() -> None:
    structlog.contextvars.clear_contextvars()


class RequestIdMiddleware:
    """Binds a request id (the caller's ``X-Request-ID`` or a new one) to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = bind_request_id(dict(scope["headers"]).get(_HEADER, b""))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].append((_HEADER, request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind_request_id()


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None
