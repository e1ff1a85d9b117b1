"""The daily retention job: each company's periods enforced, a company per transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import each_on_its_own, task
from privacy import retention


@task(queue="default")
def enforce_retention(*, session: Session) -> None:
    now = utcnow()
    each_on_its_own(
        session,
        "enforce_retention",
        retention.companies(session=session),
        lambda tenant_id: retention.enforce(session=session, tenant_id=tenant_id, now=now),
        what="tenant_id",
    )
