"""Test data, made one way: through the domains' services, with plain defaults.

A test names only what it cares about (``make_customer(session, tenant, phone=…)``); the
rest is a believable default. Everything is flushed, not committed: the ``session``
fixture rolls it back.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from compliance import capture
from compliance import service as compliance
from compliance.models import CaptureConsent, ConsentRecord
from customers import service as customers
from customers.models import Customer
from tenancy import service as tenancy
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Staff, Visit


@dataclass
class Account:
    """A company and an API key of it."""

    tenant: Tenant
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_company(session: Session, name: str | None = None, **kwargs: str) -> Account:
    """A company (a unique name unless given, signature 测试家政) and an owner's API key."""
    tenant = tenancy.create_tenant(
        session=session,
        name=name or f"测试家政 {uuid.uuid4().hex[:6]}",
        signature=kwargs.pop("signature", "测试家政"),
        **kwargs,
    )
    _, key = tenancy.create_api_key(session=session, tenant=tenant)
    session.flush()
    return Account(tenant, key)


make_account = make_company  # the name the tests knew first


def make_customer(
    session: Session,
    tenant: Tenant,
    *,
    name: str = "王女士",
    phone: str = "13800138000",
    capture_consent: bool = True,
    **kwargs: Any,
) -> Customer:
    """A customer of ``tenant`` (region, city, timezone, tags… as keywords), who allowed
    photos and clips of the home (``capture_consent=False``: not asked yet)."""
    customer = customers.create_customer(
        session=session, tenant=tenant, name=name, phone=phone, **kwargs
    )
    if capture_consent:
        make_capture_consent(session, tenant, customer)
    return customer


def make_capture_consent(
    session: Session,
    tenant: Tenant,
    customer: Customer,
    *,
    scopes: Sequence[str] = ("photos", "clips", "marketing"),
    now: dt.datetime | None = None,
) -> CaptureConsent:
    """The customer's permission to photograph and film the home and to use the photos in
    marketing, given in person."""
    return capture.record_capture_consent(
        session=session,
        tenant=tenant,
        customer=customer,
        source="in_person",
        evidence="上门时客户口头同意拍照录像",
        scopes=list(scopes),
        now=now or dt.datetime.now(dt.UTC),
    )


def make_staff(session: Session, tenant: Tenant, *, name: str = "李秀兰", **kwargs: Any) -> Staff:
    """A staff member of ``tenant``."""
    return visits.create_staff(session=session, tenant=tenant, name=name, **kwargs)


def make_visit(
    session: Session,
    tenant: Tenant,
    *,
    customer: Customer | None = None,
    staff: Staff | None = None,
    service_type: str = "ac_cleaning",
    areas: Sequence[str] = (),
    **kwargs: Any,
) -> Visit:
    """A visit to ``customer`` (a new one unless given) by ``staff`` (none unless given);
    ``scheduled_at``, ``finished_at``… as keywords."""
    customer = customer or make_customer(session, tenant)
    return visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        staff_id=staff.id if staff else None,
        service_type=service_type,
        areas=list(areas),
        **kwargs,
    )


def make_consent(
    session: Session,
    tenant: Tenant,
    customer: Customer,
    *,
    now: dt.datetime,
    granted_at: dt.datetime | None = None,
    source: str = "in_person",
    evidence: str = "首次上门时签字确认",
) -> ConsentRecord:
    """The customer's marketing consent, given in person (at ``now`` unless given)."""
    return compliance.record_consent(
        session=session,
        tenant_id=tenant.id,
        customer=customer,
        source=source,
        evidence=evidence,
        granted_at=granted_at or now,
        now=now,
    )


def create_consenting_customer(*, session: Session, tenant: Tenant, **kwargs: Any) -> Customer:
    """``customers.create_customer`` (same keywords) for a customer who allowed photos and
    clips of the home: for tests that upload media to the customer's visits."""
    customer = customers.create_customer(session=session, tenant=tenant, **kwargs)
    make_capture_consent(session, tenant, customer)
    return customer
