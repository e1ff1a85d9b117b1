"""What every local stand-in for an SMS provider's HTTP API shares, whatever its wire format.

``twilio_fake.py`` and ``aliyun_fake.py`` each speak one provider's dialect; the machinery
around it is the same and lives here once, so that a fix to it (a hang that outlives the
test, a keep-alive quirk) reaches both fakes:

- a threaded HTTP server on 127.0.0.1 with a random port, started and stopped by ``with``;
- the queue of misbehaviours for the next request(s) (an error answer, a rate limit, a hang,
  a dropped connection), under the lock the handler threads share;
- ``received`` (every request read in full, whatever the answer) and ``accepted`` (those
  that sent a message, including the ones whose answer was then lost);
- the request handler that reads a request, records it, applies the next misbehaviour and
  writes the answer.

A provider's fake subclasses ``LocalFake`` and says only what its provider says: how a
request's parameters and credentials are read (``parse``), what the API answers
(``handle``), which answers mean a message went out (``accepts``), how an answer is encoded
(``encode``, ``answer_headers``) and what a server error and a rate limit look like
(``server_error_payload``, ``rate_limit_payload``).
"""

from __future__ import annotations

import abc
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

FORM = "application/x-www-form-urlencoded"


@dataclass
class ReceivedRequest:
    """A request as the fake read it; each provider's fake adds its own view of the body."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    answer_status: int | None = None  # None when the answer was withheld (hang, drop)
    answer: dict[str, Any] | None = None  # the JSON sent back, or that would have been


RequestT = TypeVar("RequestT", bound=ReceivedRequest)


@dataclass
class Misbehaviour:
    """What to do instead of (or after) answering the next request."""

    kind: str  # error | hang | drop
    status: int = 0  # error: the HTTP status of the answer
    payload: dict[str, Any] | None = None  # error: the JSON; None for a non-JSON body
    headers: dict[str, str] = field(default_factory=dict)  # error: extra answer headers
    seconds: float = 0.0  # hang: how long to say nothing
    deliver: bool = True  # hang/drop: send the message first (the ambiguous case)
    reset: bool = False  # drop: RST instead of a clean close


class LocalFake(abc.ABC, Generic[RequestT]):
    """A threaded HTTP server on 127.0.0.1 with a random port; use it as a context manager."""

    request_type: type[RequestT]  # the provider's ReceivedRequest
    server_version = "LocalFake/1.0"
    disable_nagle = False  # FakeTwilio turns it on: bench/send.py times requests against it

    def __init__(self, *, latency: float = 0.0) -> None:
        # Seconds each answer takes, as a real API's round trip does (benchmarks only).
        self.latency = latency
        self.received: list[RequestT] = []
        self.accepted: list[RequestT] = []
        self._plan: deque[Misbehaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        owner: LocalFake[Any] = self

        class Handler(_Handler):
            fake = owner
            server_version = owner.server_version
            disable_nagle_algorithm = owner.disable_nagle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- misbehaviour for the next request(s) ---------------------------------------------

    def server_error_next(
        self, *, status: int = 500, json_body: bool = True, times: int = 1
    ) -> None:
        """Answer the next request(s) with a server error, in the provider's JSON or not."""
        payload = self.server_error_payload(status)
        self._answer_next(status, payload if json_body else None, times=times)

    def rate_limit_next(self, *, retry_after: str | None = "3", times: int = 1) -> None:
        """Answer the next request(s) with HTTP 429, saying when to come back if told."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._answer_next(429, self.rate_limit_payload(), headers=headers, times=times)

    def hang_next(self, *, seconds: float = 5.0, deliver: bool = True, times: int = 1) -> None:
        """Read the request (sending the message when ``deliver``), then say nothing."""
        self._queue(Misbehaviour("hang", seconds=seconds, deliver=deliver), times)

    def drop_next(self, *, deliver: bool = True, reset: bool = False, times: int = 1) -> None:
        """Read the request (sending the message when ``deliver``), then close the socket."""
        self._queue(Misbehaviour("drop", deliver=deliver, reset=reset), times)

    def _answer_next(
        self,
        status: int,
        payload: dict[str, Any] | None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next request(s) with this, without looking at them."""
        self._queue(Misbehaviour("error", status, payload, dict(headers or {})), times)

    def _queue(self, step: Misbehaviour, times: int) -> None:
        with self._lock:
            self._plan.extend([step] * times)

    def _next_step(self) -> Misbehaviour | None:
        with self._lock:
            return self._plan.popleft() if self._plan else None

    # -- the provider's wire format ---------------------------------------------------------

    @abc.abstractmethod
    def parse(self, request: RequestT, query: str, http_headers: Message) -> None:
        """Fill in the provider's view of a request read in full (parameters, credentials)."""

    @abc.abstractmethod
    def handle(self, request: RequestT) -> tuple[int, dict[str, Any]]:
        """Authenticate, validate and send, as the provider does; returns (status, JSON)."""

    @abc.abstractmethod
    def accepts(self, status: int, payload: dict[str, Any]) -> bool:
        """Whether ``handle``'s answer means a message went out."""

    @abc.abstractmethod
    def encode(self, payload: dict[str, Any] | None) -> tuple[str, bytes]:
        """Content-Type and body of an answer; ``None``: the non-JSON page of a sick gateway."""

    @abc.abstractmethod
    def answer_headers(self) -> dict[str, str]:
        """Headers every answer carries besides Content-Type and Content-Length."""

    @abc.abstractmethod
    def server_error_payload(self, status: int) -> dict[str, Any]:
        """The provider's JSON for an internal error."""

    @abc.abstractmethod
    def rate_limit_payload(self) -> dict[str, Any]:
        """The provider's JSON for too many requests (HTTP 429)."""


class _Handler(BaseHTTPRequestHandler):
    fake: LocalFake[Any]
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    timeout = 10  # idle keep-alive connections give up eventually

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: pytest shows failures, not access logs

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = fake.request_type(
            method=self.command,
            path=url.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=raw,
        )
        fake.parse(request, url.query, self.headers)
        with fake._lock:
            fake.received.append(request)
        if fake.latency:
            time.sleep(fake.latency)
        step = fake._next_step()

        if step is not None and step.kind == "error":
            request.answer_status, request.answer = step.status, step.payload
            self._answer(step.status, step.payload, step.headers)
            return
        status, payload = fake.handle(request)
        request.answer = payload
        if fake.accepts(status, payload) and (step is None or step.deliver):
            with fake._lock:
                fake.accepted.append(request)
        if step is None:
            request.answer_status = status
            self._answer(status, payload, {})
        elif step.kind == "hang":
            fake._stopping.wait(step.seconds)
            self._drop(reset=False)
        else:
            self._drop(reset=step.reset)

    def _answer(self, status: int, payload: dict[str, Any] | None, headers: dict[str, str]) -> None:
        content_type, data = self.fake.encode(payload)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in [*self.fake.answer_headers().items(), *headers.items()]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, *, reset: bool) -> None:
        self.close_connection = True
        if reset:  # close with SO_LINGER 0 sends an RST: "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


def closed_port() -> tuple[socket.socket, int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening.

    Keep the socket open while it is used (nobody else can take the port), close it after.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
