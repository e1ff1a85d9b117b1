"""Alert delivery on the worker: at once after the event, and a periodic retry sweep."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from alerts import service
from alerts.models import Alert, AlertDelivery
from huifang import rls
from huifang.db import utcnow
from huifang.worker import task


@task(queue="default", company=(Alert, "alert_id"))
def deliver_alert(*, session: Session, alert_id: int) -> None:
    deliver(session=session, delivery_ids=service.deliveries_of(session=session, alert_id=alert_id))


@task(queue="default")
def deliver_due_alerts(*, session: Session) -> None:
    """Every 30 s: deliveries whose retry is due (a worker that died mid-send left its
    claim, which comes due after the backoff like any failure)."""
    due = service.due_deliveries(session=session, now=utcnow())
    for tenant_id, ids in rls.by_tenant(session, AlertDelivery, due).items():
        if tenant_id is not None:
            rls.scope_to_tenant(session, tenant_id)  # each company's under its own scope
        try:
            deliver(session=session, delivery_ids=ids)
            session.commit()
        finally:
            rls.forget(session)


def deliver(*, session: Session, delivery_ids: Sequence[int]) -> None:
    """Claim (committed), send with no transaction open, and record these deliveries (those
    that are due)."""
    claimed = service.claim(session=session, delivery_ids=delivery_ids, now=utcnow())
    session.commit()
    if not claimed:
        return
    outcomes = service.send(claimed)
    service.record(session=session, outcomes=outcomes, now=utcnow())
