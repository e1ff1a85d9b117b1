"""Loopback stand-ins for a WeCom group robot, a DingTalk robot and a webhook receiver.

Each checks what its real counterpart checks, as their documentation describes it: the
WeCom robot takes ``msgtype`` markdown with ``content`` of at most 4,096 bytes, or
``msgtype`` text with ``content`` of at most 2,048 bytes and an optional
``mentioned_mobile_list``; the DingTalk robot takes markdown with ``title`` and ``text`` and
an optional ``at`` (``atMobiles``, ``isAtAll``), and with 加签 recomputes ``sign`` from
``timestamp`` and its secret and refuses a timestamp more than an hour off (errcode
310000); the receiver of a generic webhook recomputes the HMAC-SHA256 of
``"{timestamp}.{body}"``. Each answers as the real one does (``{"errcode": 0, "errmsg":
"ok"}`` for the robots), or as a test tells it to fail.

``mentioned`` holds, per message taken, whom the group would see mentioned, by the robots'
rules: WeCom mentions the numbers of ``mentioned_mobile_list`` in a text message only (a
markdown message mentions nobody); DingTalk mentions a number of ``atMobiles`` only when the
text also contains ``@`` and that number. Both only know a group member by the 11-digit
mainland number of their account, so ``+86…`` mentions nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MEMBER_MOBILE = re.compile(r"1\d{10}")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fake:
    kind: str
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses to answer first
    url: str = ""
    mentioned: list[list[str]] = field(default_factory=list)  # per message taken

    def check(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.fail_next:
            return self.fail_next.pop(0), {"errcode": -1, "errmsg": "system busy"}
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return 400, {"errcode": 40001, "errmsg": "content type"}
        body = request.json
        if self.kind == "wecom":
            msgtype = body.get("msgtype")
            limit = {"markdown": 4096, "text": 2048}.get(msgtype, 0)
            content = body.get(msgtype, {}).get("content") if limit else None
            if not isinstance(content, str):
                return 200, {"errcode": 40008, "errmsg": "invalid message type"}
            if len(content.encode()) > limit:
                return 200, {"errcode": 40058, "errmsg": "content exceed max length"}
            mobiles = body[msgtype].get("mentioned_mobile_list", [])
            if not _strings(mobiles):
                return 200, {"errcode": 40008, "errmsg": "invalid mentioned_mobile_list"}
            if "key" not in request.query:
                return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        if self.kind == "dingtalk":
            markdown = body.get("markdown", {})
            if (
                body.get("msgtype") != "markdown"
                or not markdown.get("title")
                or not markdown.get("text")
            ):
                return 200, {"errcode": 40035, "errmsg": "missing parameter"}
            at = body.get("at", {})
            if (
                not isinstance(at, dict)
                or not _strings(at.get("atMobiles", []))
                or not isinstance(at.get("isAtAll", False), bool)
            ):
                return 200, {"errcode": 40035, "errmsg": "invalid parameter at"}
            if self.secret:
                timestamp = request.query.get("timestamp", [""])[0]
                sign = request.query.get("sign", [""])[0]
                expected = base64.b64encode(
                    hmac.new(
                        self.secret.encode(), f"{timestamp}\n{self.secret}".encode(), hashlib.sha256
                    ).digest()
                ).decode()
                if not timestamp.isdigit() or abs(int(timestamp) / 1000 - time.time()) > 3600:
                    return 200, {"errcode": 310000, "errmsg": "timestamp invalid"}
                if not hmac.compare_digest(sign, expected):
                    return 200, {"errcode": 310000, "errmsg": "sign not match"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        timestamp = request.headers.get("huifang-timestamp", "")
        signature = request.headers.get("huifang-signature", "")
        expected = (
            "v1="
            + hmac.new(
                (self.secret or "").encode(),
                f"{timestamp}.".encode() + request.body,
                hashlib.sha256,
            ).hexdigest()
        )
        if not hmac.compare_digest(signature, expected):
            return 401, {"error": "bad signature"}
        return 204, {}

    def mentions(self, body: dict[str, Any]) -> list[str]:
        """Whom the group sees mentioned by a message the robot took."""
        if self.kind == "wecom":
            # Markdown has no mention list: what it carries there is ignored.
            text = body["text"] if body["msgtype"] == "text" else {}
            mobiles = text.get("mentioned_mobile_list", [])
            return [m for m in mobiles if MEMBER_MOBILE.fullmatch(m)]
        if self.kind == "dingtalk":
            text = body["markdown"]["text"]
            return [
                m
                for m in body.get("at", {}).get("atMobiles", [])
                if MEMBER_MOBILE.fullmatch(m) and f"@{m}" in text
            ]
        return []


class _Handler(BaseHTTPRequestHandler):
    fake: Fake

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        parts = urlsplit(self.path)
        request = Received(
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length),
        )
        status, answer = self.fake.check(request)
        if status < 300 and answer.get("errcode", 0) == 0:
            self.fake.received.append(request)
            self.fake.mentioned.append(self.fake.mentions(request.json))
        else:
            self.fake.refusals.append(json.dumps(answer, ensure_ascii=False))
        data = b"" if status == 204 else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class Robots:
    """The three fakes on loopback ports, stopped by ``close``."""

    def __init__(self) -> None:
        self.fakes: dict[str, Fake] = {}
        self.servers: list[ThreadingHTTPServer] = []
        paths = {
            "wecom": "/cgi-bin/webhook/send?key=test-key",
            "dingtalk": "/robot/send?access_token=test-token",
            "webhook": "/hooks/huifang",
        }
        secrets = {"wecom": None, "dingtalk": "SEC0123456789abcdef", "webhook": "whsec_test"}
        for kind, path in paths.items():
            fake = Fake(kind, secrets[kind])
            handler = type(f"{kind}Handler", (_Handler,), {"fake": fake})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            fake.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
            self.fakes[kind] = fake
            self.servers.append(server)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
