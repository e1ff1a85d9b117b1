"""Operations: health, metrics and the workers' heartbeat."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from huifang.db import Base, Database, get_database, read_only_connection, utcnow
from huifang.settings import get_settings
from huifang.worker import QUEUES, task


class WorkerHeartbeat(Base):
    """When a worker last consumed from each queue: a queue nobody serves shows here first.

    Infrastructure, not business data, so it carries no tenant.
    """

    __tablename__ = "worker_heartbeats"

    queue: Mapped[str] = mapped_column(String(32), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[dt.datetime] = mapped_column()


@task(queue="default")
def heartbeat(*, session: Session, queue: str) -> None:
    """Record that a worker serving ``queue`` is alive (sent to each queue by beat)."""
    row = session.get(WorkerHeartbeat, queue)
    if row is None:
        row = WorkerHeartbeat(queue=queue, hostname="", seen_at=utcnow())
        session.add(row)
    row.hostname = socket.gethostname()
    row.seen_at = utcnow()


def check_health(database: Database) -> tuple[bool, dict[str, Any]]:
    """Whether the service can do its work, and what each dependency said."""
    settings = get_settings()
    report: dict[str, Any] = {"mode": "embedded" if settings.embedded else "distributed"}
    healthy = True
    beats: dict[str, dt.datetime] = {}
    try:
        with read_only_connection(database.engine) as connection:
            connection.execute(text("SELECT 1"))
            beats = {
                b.queue: b.seen_at
                for b in connection.execute(select(WorkerHeartbeat.queue, WorkerHeartbeat.seen_at))
            }
        report["database"] = "ok"
    except Exception as exc:  # any driver error means "not healthy", and says which
        report["database"] = f"unavailable: {exc.__class__.__name__}"
        healthy = False
    if settings.redis_url:
        try:
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
            client.ping()
            client.close()
            report["redis"] = "ok"
        except redis.RedisError as exc:
            report["redis"] = f"unavailable: {exc.__class__.__name__}"
            healthy = False
    if report["database"] == "ok":
        now = utcnow()
        report["queues"] = {
            queue: (
                {"last_heartbeat_seconds_ago": round((now - beats[queue]).total_seconds())}
                if queue in beats
                else {"last_heartbeat_seconds_ago": None}
            )
            for queue in QUEUES
        }
    return healthy, report


router = APIRouter(tags=["operations"])


_HEALTH_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status", "mode", "database"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "mode": {"type": "string", "enum": ["embedded", "distributed"]},
                "database": {"type": "string"},
                "redis": {"type": "string"},
                "queues": {"type": "object", "additionalProperties": {"type": "object"}},
            },
        }
    }
}


@router.get(
    "/healthz",
    responses={
        200: {"description": "Healthy.", "content": _HEALTH_BODY},
        503: {"description": "The database or Redis does not answer.", "content": _HEALTH_BODY},
    },
)
def healthz(request: Request) -> JSONResponse:
    """200 when the database (and Redis in distributed mode) answer, 503 otherwise."""
    database = getattr(request.app.state, "database", None) or get_database()
    healthy, report = check_health(database)
    report["status"] = "ok" if healthy else "unavailable"
    return JSONResponse(report, status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
