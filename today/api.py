"""``GET /v1/today``: the office's day in one call."""

from __future__ import annotations

from fastapi import APIRouter

from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from today import service
from today.schemas import TodayRead

router = APIRouter(tags=["today"])


@router.get("/today", response_model=TodayRead)
def read_today(session: SessionDep, tenant: TenantDep) -> TodayRead:
    """Bookings to answer, complaints and replies with their response clocks, reports being
    built, campaign sends today and tomorrow (company time zone). Cheap enough to poll."""
    return service.today(session=session, tenant=tenant, now=utcnow())
