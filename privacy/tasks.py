"""Periodic privacy work: report media that expire (every 10 minutes, a report per
transaction) and the daily retention job (a company per transaction)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang import rls
from huifang.db import utcnow
from huifang.worker import each_on_its_own, task
from privacy import files, retention
from reports import expiry
from reports.models import Report


@task(queue="default")
def enforce_retention(*, session: Session) -> None:
    now = utcnow()
    each_on_its_own(
        session,
        "enforce_retention",
        retention.companies(session=session),
        lambda tenant_id: retention.enforce(session=session, tenant_id=tenant_id, now=now),
        what="tenant_id",
        scope=rls.COMPANIES,
    )


@task(queue="default")
def expire_report_media(*, session: Session) -> None:
    """Delete the media files of reports whose time ran out (kept N days, or N days after
    the customer first viewed them); a photo a sending campaign uses stays until it ends."""
    now = utcnow()

    each_on_its_own(
        session,
        "expire_report_media",
        expiry.due(session=session, now=now),
        lambda report_id: expiry.expire_media(
            session=session,
            report_id=report_id,
            now=now,
            held=lambda media: files.used_by_campaign(session, media),
        ),
        what="report_id",
        scope=Report,
    )
