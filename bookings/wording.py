"""What the customer is told about a booking, in their language (Chinese unless they or the
company chose English): received, confirmed, another time proposed, declined, the day-before
reminder.

Every one is a service message through the gate (``compliance``); the company's signature
and footer are added there, not here.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from customers.models import Customer
from tenancy.languages import language_for
from tenancy.models import Tenant
from visits import service_types

WEEKDAYS_ZH = "一二三四五六日"


def english(tenant: Tenant, customer: Customer) -> bool:
    return language_for(customer.language, tenant.language) == "en"


def service_name(code: str | None, *, en: bool = False) -> str:
    if not code:
        return "home service" if en else "上门服务"
    return service_types.label(code)


def when(tenant: Tenant, start: dt.datetime, *, en: bool = False) -> str:
    """A visit's start in the company's time zone: 12月08日（周二）10:00 / Tue 8 Dec, 10:00."""
    local = start.astimezone(ZoneInfo(tenant.timezone))
    if en:
        return f"{local:%a} {local.day} {local:%b}, {local:%H:%M}"
    return f"{local:%m月%d日}（周{WEEKDAYS_ZH[local.weekday()]}）{local:%H:%M}"


def confirmed(
    tenant: Tenant,
    customer: Customer,
    *,
    service: str | None,
    start: dt.datetime,
    staff: str | None,
) -> str:
    """Confirmed at ``start``; ``staff`` None when nobody is named yet (the API's answer)."""
    if english(tenant, customer):
        with_whom = f", with {staff}" if staff else ""
        return (
            f"Your {service_name(service, en=True)} is confirmed: "
            f"{when(tenant, start, en=True)}{with_whom}."
        )
    if staff is None:
        return f"您预约的{service_name(service)}已确认：{when(tenant, start)}，届时上门。"
    return f"您预约的{service_name(service)}已确认：{when(tenant, start)}，由{staff}上门服务。"


def received(tenant: Tenant, customer: Customer, *, service: str | None) -> str:
    """Taken without a time (a reply asking for a visit): the company calls to agree one."""
    if english(tenant, customer):
        return (
            f"We have your {service_name(service, en=True)} booking and will call you soon "
            "to agree a time."
        )
    return f"您预约的{service_name(service)}已收到，我们会尽快致电与您确认上门时间。"


def proposed(
    tenant: Tenant,
    customer: Customer,
    *,
    service: str | None,
    start: dt.datetime,
    staff: str,
    url: str,
) -> str:
    if english(tenant, customer):
        return (
            f"The time you asked for is taken. Could {staff} come for your "
            f"{service_name(service, en=True)} on {when(tenant, start, en=True)}? "
            f"Accept or pick another time: {url}"
        )
    return (
        f"您预约的{service_name(service)}原时间已约满，建议改为{when(tenant, start)}，"
        f"由{staff}上门。请点击确认或另选时间：{url}"
    )


def declined(tenant: Tenant, customer: Customer, *, service: str | None, reason: str) -> str:
    if english(tenant, customer):
        return (
            f"Sorry, we cannot take your {service_name(service, en=True)} booking: {reason}. "
            "We will contact you soon to find another time."
        )
    return (
        f"抱歉，您预约的{service_name(service)}暂时无法安排：{reason}。我们会尽快与您联系另约时间。"
    )


def reminder(
    tenant: Tenant,
    customer: Customer,
    *,
    service: str | None,
    start: dt.datetime,
    staff: str | None,
    address: str | None,
) -> str:
    if english(tenant, customer):
        text = (
            f"Reminder: your {service_name(service, en=True)} is tomorrow, "
            f"{when(tenant, start, en=True)}"
        )
        text += f", with {staff}" if staff else ""
        text += f", at {address}." if address else "."
        return text + " To change it, reply to this message."
    text = f"温馨提醒：您预约的{service_name(service)}在明天 {when(tenant, start)}"
    text += f"，由{staff}上门" if staff else ""
    text += f"，地址：{address}。" if address else "。"
    return text + "如需改期，请回复本短信。"
