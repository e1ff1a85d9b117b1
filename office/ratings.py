"""满意度: what customers answered on their reports, per staff member, service type or
month, with how fast the tickets of 不满意 answers were first answered and resolved; and the
latest 不满意 answers, each linked to its ticket in 回复与预约. Thin: the figures are
``reports.ratings.rating_figures``, which ``GET /v1/ratings/figures`` returns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from customers.models import Customer
from huifang.db import utcnow
from huifang.deps import SessionDep
from office import web
from reports import ratings
from reports.models import PROBLEMS, SCORES

router = APIRouter(prefix="/ratings")
GROUPS = {"staff": "按服务人员", "service": "按服务项目", "month": "按月份"}
COLUMN = {"staff": "服务人员", "service": "服务项目", "month": "月份"}
PERIODS = {30: "近 30 天", 90: "近 90 天", 365: "近一年"}
LATEST = 20


@router.get("")
def ratings_page(
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    by: Annotated[str, Query(max_length=8)] = "staff",
    days: Annotated[int, Query(ge=1, le=366)] = 90,
) -> Response:
    now = utcnow()
    by = by if by in GROUPS else "staff"
    days = days if days in PERIODS else 90
    since = now - dt.timedelta(days=days)
    groups = ratings.rating_figures(
        session=session,
        tenant=person.tenant,
        by=by,  # type: ignore[arg-type]
        since=since,
        until=now,
    )
    low = ratings.list_ratings(
        session=session, tenant_id=person.tenant.id, since=since, score="bad", limit=LATEST
    )
    ids = {r.customer_id for r in low if r.customer_id is not None}
    names = (
        {c.id: c.name for c in session.query(Customer).filter(Customer.id.in_(ids))} if ids else {}
    )
    return web.render(
        request,
        "office/ratings.html",
        {
            "groups": groups,
            "by": by,
            "days": days,
            "GROUPS": GROUPS,
            "column": COLUMN[by],
            "PERIODS": PERIODS,
            "low": low,
            "names": names,
            "SCORES": SCORES,
            "PROBLEMS": PROBLEMS,
            "total": sum(g.ratings for g in groups),
            "bad": sum(g.bad for g in groups),
        },
        person=person,
    )
