"""今日: where a signed-in office person lands — what waits for the office today.

The page and its fragment (polled every 20 s by ``office.js``) render the same
``today.service.today`` that ``GET /v1/today`` returns; without JavaScript the page is
complete as served and a reload brings it up to date.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from huifang.db import utcnow
from huifang.deps import SessionDep
from office import web
from today import service as today

router = APIRouter()
POLL_SECONDS = 20


def _context(session: SessionDep, person: web.SignedIn) -> dict[str, object]:
    now = utcnow()
    return {
        "day": today.today(session=session, tenant=person.tenant, now=now),
        "now": now,
        "poll_seconds": POLL_SECONDS,
    }


@router.get("/today")
def today_page(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    return web.render(request, "office/today.html", _context(session, person), person=person)


@router.get("/today/panel")
def today_panel(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    """The page's counts and lists alone, for the page to refresh itself."""
    return web.render(request, "office/today_panel.html", _context(session, person), person=person)
