"""Routes the settings screen calls for the watermark: a preview of a layout, unsaved."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from media import watermark_preview

router = APIRouter(tags=["media"])


@router.get(
    "/watermark/preview",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}},
            "description": "A sample photo with the company's watermark in that layout.",
        }
    },
)
def preview_watermark(
    session: SessionDep,
    tenant: TenantDep,
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"] | None = None,
    scale: Annotated[float | None, Query(ge=0.5, le=2.5)] = None,
    show_capture_time: bool | None = None,
) -> Response:
    """The company's watermark (name, logo) on a sample photo in the given layout; what is
    left out is the saved layout's. Nothing is saved."""
    data = watermark_preview.render(
        session=session,
        tenant=tenant,
        now=utcnow(),
        position=position,
        scale=scale,
        show_capture_time=show_capture_time,
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
