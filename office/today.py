"""今日: where a signed-in office person lands."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from office import web

router = APIRouter()


@router.get("/today")
def today_page(request: Request, person: web.OfficeUser) -> Response:
    return web.render(request, "office/today.html", person=person)
