"""Prometheus metrics for requests and tasks."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "huifang_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "huifang_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS = Counter("huifang_tasks_total", "Tasks run, by outcome.", ["task", "outcome"])
TASK_DURATION = Histogram("huifang_task_duration_seconds", "Time a task ran.", ["task"])
# One campaign or company that a periodic loop could not do, skipped so the others are done.
PERIODIC_FAILURES = Counter(
    "huifang_periodic_failures_total",
    "Items (a campaign, a company) a periodic task failed on and skipped.",
    ["task"],
)
# One item of a provider's push that could not be taken; the rest of the push is kept.
WEBHOOK_ITEM_FAILURES = Counter(
    "huifang_webhook_item_failures_total",
    "Items of a provider push that failed and were left for the provider's retry.",
    ["hook"],
)


def _route_template(scope: Scope) -> str:
    """The path with its ids put back as names: /v1/customers/{customer_id}.

    Raw paths would make one time series per customer; unmatched paths share one label.
    """
    if scope.get("route") is None:
        return "unmatched"
    names = {str(value): f"{{{name}}}" for name, value in scope.get("path_params", {}).items()}
    return "/".join(names.get(part, part) for part in scope["path"].split("/"))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            record_request(
                scope["method"], _route_template(scope), status, time.perf_counter() - started
            )


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and how long it took."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)
