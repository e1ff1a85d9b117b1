"""The requests each kind of channel takes, as their makers document them.

- WeCom group robot (企业微信群机器人): ``POST`` to the robot's address (``…/cgi-bin/webhook/
  send?key=…``) with ``{"msgtype": "markdown", "markdown": {"content": …}}``; it answers
  ``{"errcode": 0, "errmsg": "ok"}``, any other ``errcode`` is a refusal. Markdown content
  is at most 4,096 bytes. Markdown cannot mention anyone by mobile number; only
  ``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": ["138…"]}}`` can
  (content at most 2,048 bytes). An alert meant for one person (``Content.mention``: the day-
  before reminder to a staff member) is therefore sent as that one text message, with the
  link written out: one request per delivery keeps a delivery's retries whole, where a
  markdown message followed by a mentioning text could be half taken and sent twice.
- DingTalk custom robot (钉钉自定义机器人): ``POST`` to ``…/robot/send?access_token=…``
  with ``{"msgtype": "markdown", "markdown": {"title": …, "text": …}}``. A mention by mobile
  number is ``"at": {"atMobiles": ["138…"], "isAtAll": false}`` with ``@138…`` written in
  the text (DingTalk shows it as the member's name; without it nobody is notified). With 加签 the
  address also carries ``timestamp`` (milliseconds) and ``sign`` = Base64 of
  HMAC-SHA256 over ``"{timestamp}\\n{secret}"`` keyed by the secret, URL-encoded. It answers
  ``{"errcode": 0, "errmsg": "ok"}`` too.
- A generic webhook: ``POST`` of the alert as JSON with ``Huifang-Timestamp`` (Unix seconds)
  and ``Huifang-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``, the scheme Stripe
  and GitHub use; the receiver recomputes it and refuses old timestamps. Any 2xx is taken.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

from alerts.models import DINGTALK, WECOM

WECOM_MAX_BYTES = 4096
WECOM_TEXT_MAX_BYTES = 2048
# The key of an alert's facts that holds the mobile numbers it mentions.
MENTION = "mention_mobiles"


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Content:
    event: str
    title: str
    text: str
    link: str | None
    company: str
    alert_id: int
    created_at: str
    facts: dict[str, Any]
    # Mainland mobile numbers (11 digits, no +86) of the people the alert is for.
    mention: tuple[str, ...] = ()


def markdown(content: Content, *, at: bool = False) -> str:
    """The alert as markdown; with ``at`` each mentioned number written ``@138…``, as
    DingTalk needs it in the text."""
    lines = [f"### {content.title}", "", content.text]
    if at and content.mention:
        lines += ["", " ".join(f"@{mobile}" for mobile in content.mention)]
    if content.link:
        lines += ["", f"[在回访中查看]({content.link})"]
    lines += ["", f'<font color="comment">{content.company} · {content.created_at}</font>']
    return "\n".join(lines)


def plain(content: Content) -> str:
    """The alert as plain text, for a WeCom text message (which can mention)."""
    lines = [content.title, content.text]
    if content.link:
        lines.append(f"在回访中查看：{content.link}")
    lines.append(f"{content.company} · {content.created_at}")
    return "\n".join(lines)


def _cut_utf8(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "…"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(extra, quote_via=quote_plus)) if q)
    return urlunsplit(parts._replace(query=query))


def build(kind: str, url: str, secret: str | None, content: Content, *, now: float) -> Request:
    """The request that delivers ``content`` to a channel, at Unix time ``now``."""
    json_headers = {"Content-Type": "application/json; charset=utf-8"}
    body: dict[str, Any]
    if kind == WECOM and content.mention:
        body = {
            "msgtype": "text",
            "text": {
                "content": _cut_utf8(plain(content), WECOM_TEXT_MAX_BYTES),
                "mentioned_mobile_list": list(content.mention),
            },
        }
        return Request(url, json.dumps(body, ensure_ascii=False).encode(), json_headers)
    if kind == WECOM:
        body = {
            "msgtype": "markdown",
            "markdown": {"content": _cut_utf8(markdown(content), WECOM_MAX_BYTES)},
        }
        return Request(url, json.dumps(body, ensure_ascii=False).encode(), json_headers)
    if kind == DINGTALK:
        body = {
            "msgtype": "markdown",
            "markdown": {"title": content.title, "text": markdown(content, at=True)},
        }
        if content.mention:
            body["at"] = {"atMobiles": list(content.mention), "isAtAll": False}
        if secret:
            timestamp_ms = int(now * 1000)
            url = _with_query(
                url, {"timestamp": str(timestamp_ms), "sign": dingtalk_sign(secret, timestamp_ms)}
            )
        return Request(url, json.dumps(body, ensure_ascii=False).encode(), json_headers)
    payload = {
        "id": content.alert_id,
        "event": content.event,
        "title": content.title,
        "text": content.text,
        "link": content.link,
        "company": content.company,
        "created_at": content.created_at,
        "facts": content.facts,
    }
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    timestamp = int(now)
    headers = {
        **json_headers,
        "Huifang-Timestamp": str(timestamp),
        "Huifang-Signature": webhook_signature(secret or "", timestamp, data),
    }
    return Request(url, data, headers)


def accepted(kind: str, status: int, body: bytes) -> str | None:
    """None when the channel took the request; otherwise why not, in a short sentence."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if kind in (WECOM, DINGTALK):
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            return "the robot's answer is not JSON"
        code = answer.get("errcode") if isinstance(answer, dict) else None
        if code != 0:
            message = answer.get("errmsg", "") if isinstance(answer, dict) else ""
            return f"errcode {code}: {str(message)[:200]}"
    return None
