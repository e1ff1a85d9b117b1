"""Sending a visit's report to its customer: MMS when the provider carries it, else SMS + link.

The message is an ordinary outbox row of category ``service`` whose cause is the visit
(``visit_report``, the visit id): sending twice gives the same message, never two. The
gate applies at send time (an opt-out of the channel stops it; no marketing consent is
needed for a report of the customer's own visit).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from customers.models import Customer
from huifang.errors import Conflict, NotFound
from messaging import sms_templates
from messaging.models import Message
from messaging.providers.base import Provider
from messaging.service import schedule
from reports import mms
from reports import service as reports
from reports.models import Report
from tenancy.models import Tenant
from visits import service as visits
from visits import service_types

SOURCE_TYPE = "visit_report"


def _body(text: str, tenant: Tenant) -> str:
    """Our texts open with 【signature】; the gate puts it there itself, exactly once."""
    return text.strip().removeprefix(tenant.sms_signature).strip()


def payload_for(*, report: Report, provider: Provider) -> mms.MmsPayload:
    """The report as this provider can carry it (SMS and a link when it takes no MMS)."""
    name = provider.name if provider.capabilities.supports_mms else "sms"
    try:
        profile = mms.profile_for(name)
    except ValueError:
        profile = mms.profile_for("sms")
    return reports.mms_payload(report=report, profile=profile)


def send_report(
    *, session: Session, tenant: Tenant, visit_id: int, provider: Provider, now: dt.datetime
) -> tuple[Message, bool]:
    """Schedule the visit's report for its customer now; the message and whether it is new.

    Builds the report first when there is none yet (or it has expired), so one call does it.
    """
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    try:
        report: Report | None = reports.get_report(
            session=session, tenant_id=tenant.id, visit_id=visit.id
        )
    except NotFound:
        report = None
    if report is None or reports.is_expired(report, now=now):
        report, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id, now=now)
    customer = session.get(Customer, visit.customer_id)
    if customer is None:
        raise Conflict("This visit has no customer to send its report to.")
    payload = payload_for(report=report, provider=provider)
    if payload.mode == "mms":
        text = "\n".join(p.text for p in payload.parts if p.kind == "text" and p.text)
        body, channel, media_urls = (
            _body(text or payload.sms_text, tenant),
            "mms",
            payload.media_urls,
        )
    else:
        body, channel, media_urls = _body(payload.sms_text, tenant), "sms", ()
    return schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel=channel,
        category="service",
        source_type=SOURCE_TYPE,
        source_id=str(visit.id),
        body=body,
        due_at=now,
        media_urls=media_urls,
        purpose=sms_templates.REPORT_READY,
        variables={
            "customer_name": customer.name,
            "service": service_types.label(visit.service_type),
            "report_token": report.token,
        },
    )
