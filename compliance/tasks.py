"""Compliance entry points."""

from __future__ import annotations

from sqlalchemy.orm import Session

from compliance import service
from huifang import rls
from huifang.db import utcnow
from huifang.worker import each_on_its_own, task


@task(queue="default")
def purge_expired_consents(*, session: Session) -> None:
    """Daily: revoked consents older than the company's retention period are deleted,
    a company per transaction (one that fails is logged and skipped)."""
    now = utcnow()
    each_on_its_own(
        session,
        "purge_expired_consents",
        service.companies_with_revoked_consents(session=session),
        lambda tenant_id: service.purge_expired_consents(
            session=session, now=now, tenant_id=tenant_id
        ),
        what="tenant_id",
        scope=rls.COMPANIES,
    )
