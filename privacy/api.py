"""Routes of a customer's PIPL rights (export, erasure) and of retention."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from access.roles import Permission
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.fields import Id
from privacy import erasure, export, retention
from privacy.schemas import ErasureRead, UpcomingRead

router = APIRouter(tags=["privacy"])


@router.get(
    "/customers/{customer_id}/export",
    response_class=FileResponse,
    dependencies=[key_may(Permission.POLICY)],
    responses={200: {"content": {"application/zip": {}}}},
)
def export_customer(customer_id: Id, session: SessionDep, tenant: TenantDep) -> FileResponse:
    """Everything held about the customer as one ZIP: ``index.html`` (Chinese), ``data.json``
    and ``files/`` (photos, clips, report images, signatures)."""
    path, filename = export.write_zip(
        session=session, tenant=tenant, customer_id=customer_id, now=utcnow()
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=filename,
        headers={"Cache-Control": "private, no-store"},
        background=BackgroundTask(Path(path).unlink, missing_ok=True),
    )


@router.post(
    "/customers/{customer_id}/erase",
    response_model=ErasureRead,
    dependencies=[key_may(Permission.POLICY)],
)
def erase_customer(
    customer_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ErasureRead:
    """Erase the customer's personal information (name, number, texts, replies, evidence,
    every photo and clip); counts are kept and the audit log says who did it."""
    done = erasure.erase_customer(
        session=session, tenant=tenant, customer_id=customer_id, now=utcnow(), actor=actor
    )
    return ErasureRead(**dataclasses.asdict(done))


@router.get("/retention/upcoming", response_model=list[UpcomingRead])
def upcoming(
    session: SessionDep,
    tenant: TenantDep,
    days: int = Query(default=7, ge=1, le=365, description="Look this many days ahead."),
) -> list[UpcomingRead]:
    """What the daily retention job deletes next, kind by kind."""
    return [
        UpcomingRead(**dataclasses.asdict(item))
        for item in retention.upcoming(
            session=session, tenant_id=tenant.id, now=utcnow(), within_days=days
        )
    ]
