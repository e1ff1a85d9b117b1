"""Compliance entry points."""

from __future__ import annotations

from sqlalchemy.orm import Session

from compliance import service
from huifang.db import utcnow
from huifang.worker import task


@task(queue="default")
def purge_expired_consents(*, session: Session) -> None:
    """Daily: revoked consents older than the company's retention period are deleted."""
    service.purge_expired_consents(session=session, now=utcnow())
