"""Alert channels, raising alerts, and delivering them with retries.

An event raises one alert per ``dedupe_key`` (a booking's id, a reply's id): raising it
again — a webhook delivered twice, a periodic scan seeing the same late reply — does
nothing. Each active channel of the company that takes the event gets a delivery, sent by
the worker once the raising transaction commits, in three steps like a clip's processing:
claim (committed by ``alerts.tasks.deliver``, so two workers never send one delivery at
once), the HTTP call with no transaction open, then the outcome. A failure is tried again
after 30 s, 2 min, 10 min, 30 min and 2 h, then given up with its reason, which the
delivery log shows.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from alerts import formats
from alerts.models import (
    EVENTS,
    FAILED,
    KINDS,
    PENDING,
    SENT,
    WEBHOOK,
    Alert,
    AlertChannel,
    AlertDelivery,
)
from huifang import i18n
from huifang.db import as_utc, utcnow
from huifang.errors import Invalid, NotFound
from huifang.i18n import _
from huifang.settings import get_settings
from tenancy.models import Tenant

log = structlog.get_logger(__name__)

BACKOFF = (
    dt.timedelta(seconds=30),
    dt.timedelta(minutes=2),
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
TIMEOUT = httpx.Timeout(5.0)
CHANNELS_PER_COMPANY = 10
_MAINLAND_MOBILE = re.compile(r"1\d{10}")
KIND_NAMES = {"wecom": "企业微信群机器人", "dingtalk": "钉钉群机器人", "webhook": "通用 Webhook"}


# --- channels ---------------------------------------------------------------------------


def _check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 500:
        raise Invalid(_("请填写机器人或接收方的完整地址（https:// 开头，最长 500 个字符）。"))
    local = parts.hostname in ("localhost",)
    try:
        address = ipaddress.ip_address(parts.hostname)
        local = local or address.is_private or address.is_loopback or address.is_link_local
    except ValueError:
        pass
    production = get_settings().environment == "production"
    if production and (local or parts.scheme != "https"):
        raise Invalid(_("告警地址必须是公网的 https 地址。"))
    if parts.scheme != "https" and not local:
        raise Invalid(_("告警地址必须以 https:// 开头。"))
    return url


def create_channel(
    *,
    session: Session,
    tenant: Tenant,
    kind: str,
    name: str,
    url: str,
    secret: str | None = None,
    events: Sequence[str] = (),
    actor: Actor | None = None,
) -> AlertChannel:
    """A channel; a generic webhook without a secret gets one made (shown in the console,
    for the receiver to check signatures with)."""
    if kind not in KINDS:
        raise Invalid(_("告警渠道只能是企业微信群机器人、钉钉群机器人或通用 Webhook。"))
    name = " ".join((name or "").split()) or KIND_NAMES[kind]
    if len(name) > 50:
        raise Invalid(_("名称最多 50 个字。"))
    unknown = [e for e in events if e not in EVENTS or e == "test"]
    if unknown:
        raise Invalid(_("不认识的事件：{events}。").format(events="、".join(unknown)))
    secret = (secret or "").strip() or None
    if secret is not None and len(secret) > 200:
        raise Invalid(_("密钥最长 200 个字符。"))
    if kind == WEBHOOK and secret is None:
        secret = "whsec_" + secrets.token_urlsafe(24)
    count = len(
        session.scalars(select(AlertChannel.id).where(AlertChannel.tenant_id == tenant.id)).all()
    )
    if count >= CHANNELS_PER_COMPANY:
        raise Invalid(_("每个公司最多 {n} 个告警渠道。").format(n=CHANNELS_PER_COMPANY))
    channel = AlertChannel(
        tenant_id=tenant.id,
        kind=kind,
        name=name,
        url=_check_url(url),
        secret=secret,
        events=list(dict.fromkeys(events)),
        active=True,
        created_at=utcnow(),
    )
    session.add(channel)
    session.flush()
    audit.record(
        session,
        actor,
        "alert_channel.created",
        f"alert_channel:{channel.id}",
        {"kind": kind, "name": name},
        tenant_id=tenant.id,
    )
    return channel


def list_channels(*, session: Session, tenant_id: int) -> Sequence[AlertChannel]:
    return session.scalars(
        select(AlertChannel).where(AlertChannel.tenant_id == tenant_id).order_by(AlertChannel.id)
    ).all()


def get_channel(*, session: Session, tenant_id: int, channel_id: int) -> AlertChannel:
    channel = session.get(AlertChannel, channel_id)
    if channel is None or channel.tenant_id != tenant_id:
        raise NotFound(_("没有这个告警渠道。"))
    return channel


def delete_channel(
    *, session: Session, tenant_id: int, channel_id: int, actor: Actor | None = None
) -> None:
    channel = get_channel(session=session, tenant_id=tenant_id, channel_id=channel_id)
    audit.record(
        session,
        actor,
        "alert_channel.deleted",
        f"alert_channel:{channel.id}",
        {"kind": channel.kind, "name": channel.name},
        tenant_id=tenant_id,
    )
    session.delete(channel)
    session.flush()


# --- raising ----------------------------------------------------------------------------


def _enqueue(session: Session, alert_id: int) -> None:
    from alerts import tasks  # the task module imports this one
    from huifang.worker import enqueue

    enqueue(session, tasks.deliver_alert, alert_id=alert_id)


def raise_alert(
    *,
    session: Session,
    tenant_id: int,
    event: str,
    dedupe_key: str,
    title: str,
    text: str,
    link: str | None = None,
    facts: dict[str, object] | None = None,
    only_channel: int | None = None,
    mention: Sequence[str] = (),
) -> Alert | None:
    """Raise an alert once per ``dedupe_key``; None when it was raised before or no channel
    of the company takes it. ``mention``: mainland mobile numbers (11 digits) of the people
    it is for, whom the robots mention (kept in its facts, so a webhook sees them too)."""
    if any(not _MAINLAND_MOBILE.fullmatch(mobile) for mobile in mention):
        raise ValueError(f"mention takes 11-digit mainland mobile numbers, not {mention!r}")
    channels = [
        c
        for c in list_channels(session=session, tenant_id=tenant_id)
        if c.active
        and (only_channel is None or c.id == only_channel)
        and (only_channel is not None or not c.events or event in c.events)
    ]
    if not channels:
        return None
    alert = Alert(
        tenant_id=tenant_id,
        event=event,
        dedupe_key=dedupe_key[:100],
        title=title[:100],
        text=text,
        link=link,
        facts={**(facts or {}), **({formats.MENTION: list(mention)} if mention else {})},
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(alert)
            session.flush()
    except IntegrityError:
        return None
    now = utcnow()
    for channel in channels:
        session.add(
            AlertDelivery(
                tenant_id=tenant_id,
                alert_id=alert.id,
                channel_id=channel.id,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
            )
        )
    session.flush()
    _enqueue(session, alert.id)
    return alert


def office_link(path: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}{path}"


def send_test(
    *, session: Session, tenant_id: int, channel_id: int, actor: Actor | None = None
) -> Alert | None:
    channel = get_channel(session=session, tenant_id=tenant_id, channel_id=channel_id)
    who = actor.name if actor else i18n._("系统")
    return raise_alert(
        session=session,
        tenant_id=tenant_id,
        event="test",
        dedupe_key=f"test:{channel.id}:{time.time_ns()}",
        title=_("回访告警测试"),
        text=_("这是一条测试消息，由{who}发出。收到说明“{name}”配置正确。").format(
            who=who, name=channel.name
        ),
        link=office_link("/office/settings/alerts"),
        only_channel=channel.id,
    )


# --- delivering -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    kind: str
    request: formats.Request


def _content(alert: Alert, company: Tenant) -> formats.Content:
    return formats.Content(
        event=alert.event,
        title=alert.title,
        text=alert.text,
        link=alert.link,
        company=company.name,
        alert_id=alert.id,
        facts=alert.facts,
        created_at=i18n.format_datetime(alert.created_at, company.timezone),
        mention=tuple(str(m) for m in alert.facts.get(formats.MENTION) or ()),
    )


def claim(*, session: Session, delivery_ids: Sequence[int], now: dt.datetime) -> list[Claimed]:
    """Take the due ones of these deliveries for this worker: each moves its next attempt
    ahead by its backoff first, so another worker skips it while this one sends."""
    claimed = []
    for delivery in session.scalars(
        select(AlertDelivery).where(
            AlertDelivery.id.in_(delivery_ids), AlertDelivery.status == PENDING
        )
    ).all():
        due = as_utc(delivery.next_attempt_at)
        if due is not None and due > now:
            continue
        backoff = BACKOFF[min(delivery.attempts, len(BACKOFF) - 1)]
        taken = session.execute(
            update(AlertDelivery)
            .where(
                AlertDelivery.id == delivery.id,
                AlertDelivery.attempts == delivery.attempts,
                AlertDelivery.status == PENDING,
            )
            .values(attempts=delivery.attempts + 1, next_attempt_at=now + backoff)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            continue
        alert = session.get(Alert, delivery.alert_id)
        channel = session.get(AlertChannel, delivery.channel_id)
        company = session.get(Tenant, delivery.tenant_id)
        if alert is None or channel is None or company is None:
            continue
        claimed.append(
            Claimed(
                delivery.id,
                channel.kind,
                formats.build(
                    channel.kind,
                    channel.url,
                    channel.secret,
                    _content(alert, company),
                    now=now.timestamp(),
                ),
            )
        )
    return claimed


Poster = Callable[[formats.Request], tuple[int, bytes]]


def _post(request: formats.Request) -> tuple[int, bytes]:
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        answer = client.post(request.url, content=request.body, headers=request.headers)
        return answer.status_code, answer.content[:2000]


def send(claimed: Sequence[Claimed], post: Poster = _post) -> dict[int, str | None]:
    """Make the calls (no transaction open): delivery id → None when taken, else why not."""
    outcomes: dict[int, str | None] = {}
    for item in claimed:
        try:
            status, body = post(item.request)
            outcomes[item.delivery_id] = formats.accepted(item.kind, status, body)
        except httpx.HTTPError as exc:
            outcomes[item.delivery_id] = f"{type(exc).__name__}: {exc}"[:300]
    return outcomes


def record(*, session: Session, outcomes: dict[int, str | None], now: dt.datetime) -> None:
    for delivery_id, error in outcomes.items():
        delivery = session.get(AlertDelivery, delivery_id)
        if delivery is None:
            continue
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = SENT, now, None
            continue
        delivery.last_error = error[:300]
        if delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = FAILED
            log.warning("alert given up", delivery_id=delivery_id, error=error)
        else:
            log.info(
                "alert not taken; will try again",
                delivery_id=delivery_id,
                error=error,
                attempt=delivery.attempts,
            )
    session.flush()


def due_deliveries(*, session: Session, now: dt.datetime, limit: int = 200) -> list[int]:
    return list(
        session.scalars(
            select(AlertDelivery.id)
            .where(AlertDelivery.status == PENDING, AlertDelivery.next_attempt_at <= now)
            .order_by(AlertDelivery.next_attempt_at)
            .limit(limit)
        )
    )


def deliveries_of(*, session: Session, alert_id: int) -> list[int]:
    return list(session.scalars(select(AlertDelivery.id).where(AlertDelivery.alert_id == alert_id)))


@dataclass(frozen=True)
class LogLine:
    alert: Alert
    delivery: AlertDelivery
    channel_name: str


def delivery_log(*, session: Session, tenant_id: int, limit: int = 50) -> list[LogLine]:
    """The newest deliveries of the company with their alerts, for the console."""
    rows = session.execute(
        select(AlertDelivery, Alert, AlertChannel.name)
        .join(Alert, Alert.id == AlertDelivery.alert_id)
        .join(AlertChannel, AlertChannel.id == AlertDelivery.channel_id)
        .where(AlertDelivery.tenant_id == tenant_id)
        .order_by(AlertDelivery.id.desc())
        .limit(limit)
    ).all()
    return [LogLine(alert, delivery, name) for delivery, alert, name in rows]
