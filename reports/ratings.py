"""Satisfaction on the report page, and what the page saw, counted by our server.

A customer answers 满意 / 一般 / 不满意 on their report, with a comment if they like and,
for 不满意, what went wrong. One answer per report: answering again changes it. The first
不满意 opens a service-recovery ticket through messaging (``inbound.open_ticket``): an open
complaint in the office's inbox, with the complaint clock, owner, response and resolution
a complaint reply has, and the same hold on the customer's marketing until it is resolved;
the office's group chats hear of it at once (``alerts.events.rating_low``). A later answer
never opens a second ticket; while the ticket is open it shows the latest answer.

The figures group the ratings of a period by staff member, service type or month, with
how fast their tickets were answered and resolved.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import events as alert_events
from customers.models import Customer
from huifang.db import as_utc
from huifang.errors import Invalid
from messaging import inbound
from messaging.models import OPEN, InboundMessage
from reports.models import BAD, PROBLEMS, SCORES, Report, ReportRating, ReportViews
from tenancy.models import Tenant
from visits.models import Staff, Visit
from visits.service_types import label

MAX_COMMENT = 500
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

GroupBy = Literal["staff", "service", "month"]
GROUPS: tuple[GroupBy, ...] = ("staff", "service", "month")


@dataclass(frozen=True)
class Rated:
    """What an answer did: the rating, its ticket, and whether this answer opened it."""

    rating: ReportRating
    ticket: InboundMessage | None
    ticket_opened: bool
    changed: bool  # an answer given before was changed


def _comment(value: str | None) -> str | None:
    text = (value or "").strip()
    if _UNSTORABLE.search(text):
        raise Invalid("留言里有无法保存的字符，请删掉后再提交。")
    if len(text) > MAX_COMMENT:
        raise Invalid(f"留言请控制在 {MAX_COMMENT} 字以内。")
    return text or None


def _problems(score: str, values: Iterable[str]) -> list[str]:
    chosen = [v for v in dict.fromkeys(values) if v]
    unknown = [v for v in chosen if v not in PROBLEMS]
    if unknown:
        raise Invalid("请从列出的问题中选择：" + "、".join(PROBLEMS.values()) + "。")
    return [k for k in PROBLEMS if k in chosen] if score == BAD else []


def ticket_text(rating: ReportRating, *, service: str, staff_name: str | None) -> str:
    """The ticket's text in the inbox: the customer's latest answer, in their words."""
    parts = [f"【服务报告评价】{service}"]
    if staff_name:
        parts[0] += f"（服务人员 {staff_name}）"
    parts.append(f"评价：{SCORES[rating.score]}")
    if rating.problems:
        parts.append("问题：" + "、".join(PROBLEMS[p] for p in rating.problems))
    if rating.comment:
        parts.append(f"留言：{rating.comment}")
    if rating.changes:
        parts.append(f"（客户已修改过 {rating.changes} 次评价，以上为最新）")
    return "；".join(parts)


def rating_of(*, session: Session, report_id: int) -> ReportRating | None:
    return session.scalars(select(ReportRating).where(ReportRating.report_id == report_id)).first()


def rate(
    *,
    session: Session,
    report: Report,
    score: str,
    problems: Iterable[str] = (),
    comment: str | None = None,
    now: dt.datetime,
) -> Rated:
    """The customer's answer on their report (from the page's form): saved, or changed.

    Refused (422, in Chinese) for a score that is not one of 满意 / 一般 / 不满意, a problem
    not on the list, or a comment too long to keep.
    """
    if score not in SCORES:
        raise Invalid("请选择 满意、一般 或 不满意。")
    chosen = _problems(score, problems)
    words = _comment(comment)
    visit = session.get(Visit, report.visit_id)
    assert visit is not None  # a report is deleted with its visit
    rating = rating_of(session=session, report_id=report.id)
    changed = rating is not None
    if rating is None:
        rating = ReportRating(
            tenant_id=report.tenant_id,
            report_id=report.id,
            visit_id=visit.id,
            customer_id=visit.customer_id,
            staff_id=visit.staff_id,
            service_type=visit.service_type,
            score=score,
            problems=chosen,
            comment=words,
            rated_at=now,
            changed_at=now,
            changes=0,
        )
        try:
            with session.begin_nested():  # two taps at once: the second changes the first
                session.add(rating)
                session.flush()
        except IntegrityError:
            return rate(
                session=session, report=report, score=score, problems=chosen, comment=words, now=now
            )
    else:
        if (rating.score, list(rating.problems), rating.comment) == (score, chosen, words):
            ticket = session.get(InboundMessage, rating.ticket_id) if rating.ticket_id else None
            return Rated(rating, ticket, False, False)
        rating.score, rating.problems, rating.comment = score, chosen, words
        rating.changed_at, rating.changes = now, rating.changes + 1
    customer = session.get(Customer, visit.customer_id)
    staff = session.get(Staff, visit.staff_id) if visit.staff_id else None
    service = label(visit.service_type)
    ticket = session.get(InboundMessage, rating.ticket_id) if rating.ticket_id else None
    opened = False
    if ticket is None and score == BAD and customer is not None:
        ticket, opened = inbound.open_ticket(
            session=session,
            tenant_id=report.tenant_id,
            customer=customer,
            key=f"rating-{report.id}",
            body=ticket_text(rating, service=service, staff_name=staff.name if staff else None),
            now=now,
        )
        rating.ticket_id = ticket.id
    elif ticket is not None and ticket.state == OPEN:
        # The office reads the latest answer; the clock keeps running from the first.
        ticket.body = ticket_text(rating, service=service, staff_name=staff.name if staff else None)
    session.flush()
    if opened:
        alert_events.rating_low(
            session=session,
            tenant_id=report.tenant_id,
            rating_id=rating.id,
            customer=customer,
            service_type=visit.service_type,
            staff_name=staff.name if staff else None,
            problems=[PROBLEMS[p] for p in rating.problems],
            comment=rating.comment,
            ticket_id=ticket.id if ticket else None,
        )
    return Rated(rating, ticket, opened, changed)


# --- what the page saw --------------------------------------------------------------------

EVENTS = ("video_started", "video_ended", "long_image", "book_pressed")


def count_view(*, session: Session, report: Report, event: str, now: dt.datetime) -> None:
    """Count one thing the page saw: ``opened`` (the page itself) or one of ``EVENTS``."""
    if event != "opened" and event not in EVENTS:
        raise Invalid("Unknown report event; one of opened, " + ", ".join(EVENTS) + ".")
    table = ReportViews.__table__.c
    values: dict[str, Any]
    if event == "opened":
        values = {
            "opens": table.opens + 1,
            "first_opened_at": func.coalesce(table.first_opened_at, now),
            "last_opened_at": now,
        }
    else:
        values = {event: table[event] + 1}
    statement = update(ReportViews).where(ReportViews.report_id == report.id).values(**values)
    if session.execute(statement).rowcount:  # type: ignore[attr-defined]
        return
    row = ReportViews(
        report_id=report.id,
        tenant_id=report.tenant_id,
        opens=0,
        video_started=0,
        video_ended=0,
        long_image=0,
        book_pressed=0,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        pass  # another request made it first
    session.execute(statement)
    session.expire_all()


def views_of(*, session: Session, report_id: int) -> dict[str, Any]:
    row = session.get(ReportViews, report_id)
    return {
        "first_opened_at": as_utc(row.first_opened_at) if row else None,
        "last_opened_at": as_utc(row.last_opened_at) if row else None,
        "opens": row.opens if row else 0,
        "video_started": row.video_started if row else 0,
        "video_ended": row.video_ended if row else 0,
        "long_image": row.long_image if row else 0,
        "book_pressed": row.book_pressed if row else 0,
    }


# --- figures --------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 1)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 1)


def _minutes(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
    end, start = as_utc(later), as_utc(earlier)
    return None if end is None or start is None else (end - start).total_seconds() / 60


@dataclass
class RatingGroup:
    key: str
    label: str
    ratings: int = 0
    good: int = 0
    ok: int = 0
    bad: int = 0
    tickets: int = 0
    open_tickets: int = 0
    responded: int = 0
    resolved: int = 0
    median_minutes_to_first_response: float | None = None
    median_minutes_to_resolution: float | None = None

    @property
    def satisfied_percent(self) -> float | None:
        return round(100 * self.good / self.ratings, 1) if self.ratings else None


def rating_figures(
    *,
    session: Session,
    tenant: Tenant,
    by: GroupBy,
    since: dt.datetime,
    until: dt.datetime,
) -> list[RatingGroup]:
    """Ratings given in [since, until) per staff member, service type or local month, with
    their tickets' median minutes to the first response and to resolution (one query)."""
    if by not in GROUPS:
        raise Invalid("by must be staff, service or month.")
    if since >= until:
        raise Invalid("The period must start before it ends.")
    rows = session.execute(
        select(
            ReportRating.score,
            ReportRating.rated_at,
            ReportRating.staff_id,
            ReportRating.service_type,
            Staff.name,
            InboundMessage.received_at,
            InboundMessage.first_response_at,
            InboundMessage.resolved_at,
            InboundMessage.state,
        )
        .outerjoin(Staff, Staff.id == ReportRating.staff_id)
        .outerjoin(InboundMessage, InboundMessage.id == ReportRating.ticket_id)
        .where(
            ReportRating.tenant_id == tenant.id,
            ReportRating.rated_at >= since,
            ReportRating.rated_at < until,
        )
    ).all()
    zone = ZoneInfo(tenant.timezone)
    groups: dict[str, RatingGroup] = {}
    times: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        if by == "staff":
            key = str(row.staff_id) if row.staff_id is not None else "none"
            name = row.name or "未指定服务人员"
        elif by == "service":
            key, name = row.service_type, label(row.service_type)
        else:
            rated = as_utc(row.rated_at)
            assert rated is not None
            key = f"{rated.astimezone(zone):%Y-%m}"
            name = f"{key[:4]}年{int(key[5:])}月"
        group = groups.setdefault(key, RatingGroup(key=key, label=name))
        group.ratings += 1
        setattr(group, row.score, getattr(group, row.score) + 1)
        if row.received_at is not None:
            group.tickets += 1
            group.open_tickets += row.state == OPEN
            response, resolution = times.setdefault(key, ([], []))
            if (minutes := _minutes(row.first_response_at, row.received_at)) is not None:
                group.responded += 1
                response.append(minutes)
            if (minutes := _minutes(row.resolved_at, row.received_at)) is not None:
                group.resolved += 1
                resolution.append(minutes)
    for key, (response, resolution) in times.items():
        groups[key].median_minutes_to_first_response = _median(response)
        groups[key].median_minutes_to_resolution = _median(resolution)
    ordered = sorted(groups.values(), key=lambda g: g.key)
    if by != "month":
        ordered.sort(key=lambda g: (-g.ratings, g.label))
    return ordered


def list_ratings(
    *,
    session: Session,
    tenant_id: int,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    score: str | None = None,
    limit: int = 100,
) -> list[ReportRating]:
    """The company's ratings, the latest answer first."""
    query = select(ReportRating).where(ReportRating.tenant_id == tenant_id)
    if since is not None:
        query = query.where(ReportRating.rated_at >= since)
    if until is not None:
        query = query.where(ReportRating.rated_at < until)
    if score is not None:
        if score not in SCORES:
            raise Invalid("score must be good, ok or bad.")
        query = query.where(ReportRating.score == score)
    return list(
        session.scalars(
            query.order_by(ReportRating.changed_at.desc(), ReportRating.id.desc()).limit(limit)
        )
    )
