"""Request bodies are capped before anything reads them.

A route reads its body before its dependencies run (FastAPI parses JSON and forms first), so
without a cap a stranger's 200 MB post is read whole before the key is checked. This
middleware gives each class of route a ceiling, which ``create_app`` composes from what the
domains declare:

- a declared ``Content-Length`` over the ceiling is refused with 413 before a byte is read;
- a body without one (chunked) is counted as it arrives, and reading stops at the ceiling;
- a route that streams its own upload and counts it against its own caps (``None``) is left
  to do so;
- on the paths that need an API key, a body sent without ``Authorization: Bearer …`` is
  refused with 401 before it is read. A key of the right form is checked against the
  database by the route, after at most the ceiling was read.

Starlette has a body limiter of its own, but it answers in plain text and its signals are
private; every refusal here is JSON with a sentence, like the rest of the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STREAMED = None  # the route counts its own body against its own caps


@dataclass(frozen=True)
class BodyLimit:
    """Requests to ``path`` (a route template such as ``/v1/visits/{visit_id}/media``, or a
    prefix ending in ``/``) take at most ``max_bytes`` (plus ``slack`` for a multipart form's
    own parts); ``STREAMED`` for a route that counts its own. ``what`` names the request in
    the refusal."""

    path: str
    max_bytes: int | None
    what: str = "This request"
    slack: int = 0

    @property
    def ceiling(self) -> int | None:
        return None if self.max_bytes is None else self.max_bytes + self.slack

    def matches(self, path: str) -> bool:
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return _regex(self.path).match(path) is not None


_compiled: dict[str, re.Pattern[str]] = {}


def _regex(template: str) -> re.Pattern[str]:
    pattern = _compiled.get(template)
    if pattern is None:
        pattern = _compiled[template] = compile_path(template)[0]
    return pattern


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    return f"{limit // 1024} KB"


def too_large(limit: BodyLimit) -> str:
    assert limit.max_bytes is not None
    return (
        f"{limit.what} is over {_size(limit.max_bytes)}, the most this address takes; "
        "send less at a time."
    )


@dataclass(frozen=True)
class KeyRequired:
    """Paths under ``prefix`` need ``Authorization: Bearer`` with a key starting ``key_prefix``;
    ``sentence`` is what a request without one is told (the route's own 401 wording)."""

    prefix: str
    key_prefix: str
    sentence: str


class BodyLimitMiddleware:
    """Caps every request body by the first ``limits`` entry its path matches, else
    ``default``; refuses bodies sent without a key where ``key`` says one is needed."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Sequence[BodyLimit],
        default: BodyLimit,
        key: KeyRequired | None = None,
    ) -> None:
        self.app = app
        self.limits = tuple(limits)
        self.default = default
        self.key = key

    def limit_for(self, path: str) -> BodyLimit:
        return next((limit for limit in self.limits if limit.matches(path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorization = value
        if not chunked and not length:
            await self.app(scope, receive, send)  # no body to read
            return
        path: str = scope["path"]
        if (
            self.key is not None
            and path.startswith(self.key.prefix)
            and not _bearer(authorization, self.key.key_prefix)
        ):
            await _refuse(send, 401, self.key.sentence, {"www-authenticate": "Bearer"})
            return
        limit = self.limit_for(path)
        ceiling = limit.ceiling
        if ceiling is None:
            await self.app(scope, receive, send)
            return
        if length is not None and length > ceiling:
            await _refuse(send, 413, too_large(limit), {"connection": "close"})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > ceiling:
                    # Raised inside the route's read: the app's handlers turn it into the
                    # JSON answer, and nothing past the ceiling is read.
                    raise HTTPException(413, too_large(limit), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def _bearer(header: bytes, key_prefix: str) -> bool:
    scheme, _, credentials = header.decode("latin-1").strip().partition(" ")
    return scheme.lower() == "bearer" and credentials.strip().startswith(key_prefix)


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((name.encode(), value.encode()) for name, value in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
