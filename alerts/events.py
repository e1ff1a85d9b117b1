"""What the office hears, in Chinese: each event of the product as one alert.

Callers raise these inside the transaction of the event itself (a booking made, a
complaint received), so an alert exists exactly when its event committed; the hot path of
an opt-out raises nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import phonenumbers
from sqlalchemy.orm import Session

from alerts import service
from customers import phones
from customers.models import Customer
from huifang import i18n
from tenancy.models import Tenant
from visits.service_types import label

if TYPE_CHECKING:
    from bookings.models import Booking
    from messaging.models import InboundMessage
    from visits.models import Staff


def who(customer: Customer | None, phone: str | None = None) -> str:
    number = phones.masked(customer.phone if customer else phone or "")
    return f"{customer.name}（{number}）" if customer else number


def _readable(number: str) -> str:
    try:
        return phones.display(number)
    except phonenumbers.NumberParseException:
        return number


def mainland_mobile(number: str | None) -> str | None:
    """A mainland China mobile number as the robots take it (``13800138000``, no +86);
    None for anything else, which they cannot mention."""
    try:
        parsed = phonenumbers.parse(number or "")
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 86 or phonenumbers.number_type(parsed) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    national = str(parsed.national_number)
    return national if len(national) == 11 else None


def booking_requested(*, session: Session, booking: Booking) -> None:
    tenant = session.get(Tenant, booking.tenant_id)
    customer = session.get(Customer, booking.customer_id)
    if tenant is None:
        return
    what = label(booking.service_type) if booking.service_type else "服务"
    when = (
        i18n.format_datetime(booking.slot_start, tenant.timezone)
        if booking.slot_start
        else "时间待定（回复预约）"
    )
    text = f"{who(customer)} 预约了{what}：{when}。"
    if booking.note:
        text += f"\n备注：{booking.note[:200]}"
    service.raise_alert(
        session=session,
        tenant_id=tenant.id,
        event="booking.new",
        dedupe_key=f"booking:{booking.id}",
        title="新预约待确认",
        text=text,
        link=service.office_link("/office/inbox"),
        facts={"booking_id": booking.id, "customer_id": booking.customer_id},
    )


def complaint(*, session: Session, reply: InboundMessage) -> None:
    if reply.tenant_id is None:
        return
    customer = session.get(Customer, reply.customer_id) if reply.customer_id else None
    text = f"{who(customer, reply.phone)} 回复：{reply.body[:300]}"
    service.raise_alert(
        session=session,
        tenant_id=reply.tenant_id,
        event="complaint",
        dedupe_key=f"complaint:{reply.id}",
        title="客户投诉，请尽快处理",
        text=text,
        link=service.office_link("/office/inbox"),
        facts={"reply_id": reply.id, "customer_id": reply.customer_id},
    )


def visit_reminder(
    *, session: Session, booking: Booking, staff: Staff, customer: Customer, tenant: Tenant
) -> None:
    """The day before a confirmed visit: the staff member is reminded where the office's
    channels are (the group they are in), named with their phone and, where it is a mainland
    mobile, mentioned by it (DingTalk and WeCom notify the group member with that number)."""
    if booking.slot_start is None:
        return
    what = label(booking.service_type) if booking.service_type else "上门服务"
    when = i18n.format_datetime(booking.slot_start, tenant.timezone)
    contact = f"（{_readable(staff.phone)}）" if staff.phone else ""
    text = f"@{staff.name}{contact} {when} 上门：{what}，客户 {who(customer)}。"
    address = booking.address or customer.address
    if address:
        text += f"\n地址：{address}"
    service.raise_alert(
        session=session,
        tenant_id=tenant.id,
        event="visit.reminder",
        dedupe_key=f"visit-reminder:{booking.id}@{int(booking.slot_start.timestamp())}",
        title=f"明日上门提醒：{staff.name}",
        text=text,
        link=service.office_link("/office/today"),
        facts={
            "booking_id": booking.id,
            "visit_id": booking.visit_id,
            "staff_id": staff.id,
            "staff_phone": staff.phone,
        },
        mention=[mobile] if (mobile := mainland_mobile(staff.phone)) else [],
    )


def campaign_finished(
    *,
    session: Session,
    tenant_id: int,
    campaign_id: int,
    name: str,
    local_date: str,
    sent: int,
    held: dict[str, int],
) -> None:
    """Every occurrence of one of a campaign's send days has been handed to the outbox or
    held back: the office hears once per campaign and day, with the counts."""
    text = f"「{name}」{local_date} 这一轮已全部交给短信发送：{sent} 条。"
    if held:
        reasons = {
            "opted_out": "已退订",
            "booked_early": "已预约",
            "render_failed": "内容无法生成",
            "campaign_paused": "活动暂停",
            "campaign_archived": "活动已归档",
        }
        text += "\n未发送：" + "，".join(
            f"{reasons.get(reason, reason)} {count} 人" for reason, count in sorted(held.items())
        )
    service.raise_alert(
        session=session,
        tenant_id=tenant_id,
        event="campaign.finished",
        dedupe_key=f"campaign-finished:{campaign_id}:{local_date}",
        title=f"营销活动已发完：{name}",
        text=text,
        link=service.office_link(f"/office/campaigns/{campaign_id}"),
        facts={"campaign_id": campaign_id, "local_date": local_date, "sent": sent, **held},
    )


def rating_low(
    *,
    session: Session,
    tenant_id: int,
    rating_id: int,
    customer: Customer | None,
    service_type: str,
    staff_name: str | None,
    problems: list[str],
    comment: str | None,
    ticket_id: int | None,
) -> None:
    """A customer answered 不满意 on a visit report: the office should call them back."""
    what = label(service_type) if service_type else "服务"
    text = f"{who(customer)} 对{what}"
    if staff_name:
        text += f"（服务人员 {staff_name}）"
    text += "评价：不满意"
    if problems:
        text += f"，问题：{'、'.join(problems)}"
    text += "。"
    if comment:
        text += f"\n留言：{comment[:300]}"
    service.raise_alert(
        session=session,
        tenant_id=tenant_id,
        event="rating.low",
        dedupe_key=f"rating:{rating_id}",
        title="客户差评（不满意），请尽快回访",
        text=text,
        link=service.office_link(
            f"/office/inbox/threads/{customer.id}" if customer else "/office/inbox"
        ),
        facts={
            "rating_id": rating_id,
            "customer_id": customer.id if customer else None,
            "ticket_id": ticket_id,
        },
    )
