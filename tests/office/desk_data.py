"""A company's day for the 今日 and 回复与预约 pages: a complaint past its response clock, a
question waiting, booking requests at the coming working slots, staff to send."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bookings import links as short_links
from bookings import service as booking
from bookings.models import Booking
from bookings.service import book_from_reply
from customers import service as customers
from customers.models import Customer
from huifang.db import utcnow
from messaging import inbound
from messaging.models import InboundMessage
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Staff


@dataclass
class Day:
    wang: Customer
    li: Customer
    zhao: Customer
    complaint: InboundMessage
    question: InboundMessage
    first: Booking
    second: Booking
    zhang: Staff
    chen: Staff


def reply(
    session: Session, tenant: Tenant, customer: Customer, text: str, sid: str, at: dt.datetime
) -> InboundMessage:
    received = inbound.receive(
        session=session,
        provider="console",
        provider_message_id=sid,
        on_book=book_from_reply,
        phone=customer.phone,
        text=text,
        tenant=tenant,
        now=at,
    )
    return inbound.replies(session=session, received=received)[0]


def make_day(
    session: Session,
    tenant: Tenant,
    *,
    phones: tuple[str, str, str] = ("13800138000", "13800138001", "13800138002"),
) -> Day:
    now = utcnow()
    wang, li, zhao = (
        customers.create_customer(session=session, tenant=tenant, name=name, phone=phone)
        for name, phone in zip(("王女士", "李先生", "赵阿姨"), phones, strict=True)
    )
    complaint = reply(
        session, tenant, wang, "阿姨没擦干净，很失望", f"c-{wang.id}", now - dt.timedelta(hours=3)
    )
    question = reply(
        session, tenant, li, "上次的发票还没收到", f"q-{li.id}", now - dt.timedelta(minutes=20)
    )
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    chen = visits.create_staff(session=session, tenant=tenant, name="陈师傅")
    # What a customer may book: at least 12 hours ahead (the desk's openings start sooner,
    # so late in the evening their first slots are not a customer's to take).
    slots = [start for start, _ in booking.free_slots(session=session, tenant=tenant, now=now)]
    first, second = (
        booking.book(
            session=session,
            note=note,
            now=now,
            slot_start=slot,
            link=short_links.link_for(
                session=session,
                tenant=tenant,
                customer=who,
                source_type="visit_report",
                source_id=f"{who.id}",
                service_type=service,
                now=now,
            ),
        )
        for who, service, slot, note in (
            (zhao, "ac_cleaning", slots[1], "请带梯子"),
            (li, "deep_cleaning", slots[2], None),
        )
    )
    session.flush()
    return Day(wang, li, zhao, complaint, question, first, second, zhang, chen)
