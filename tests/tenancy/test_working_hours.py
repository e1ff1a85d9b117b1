"""Working hours as the settings screen shows them, and the slots the booking page offers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from bookings import service as booking
from tenancy import service as tenancy
from tenancy import working_hours
from tenancy.schemas import TenantUpdate


def test_days_and_slots_in_chinese() -> None:
    found = working_hours.describe(
        work_days="123456", work_start_minute=8 * 60, work_end_minute=18 * 60, slot_minutes=120
    )
    assert (found.days, found.hours) == ("周一至周六", "08:00–18:00")
    assert found.slots[0] == ("08:00", "10:00") and found.slots[-1] == ("16:00", "18:00")
    assert found.summary.startswith("周一至周六 08:00–18:00，每次上门120分钟，每天5个时段")
    assert working_hours.days_text("135") == "周一、周三、周五"
    assert working_hours.days_text("67") == "周六、周日"
    none = working_hours.describe(
        work_days="12345", work_start_minute=600, work_end_minute=630, slot_minutes=60
    )
    assert none.slots == [] and "无法预约" in none.summary


def test_the_booking_page_offers_the_same_slots(session, account) -> None:
    tenant = tenancy.update_tenant(
        session=session,
        tenant=account.tenant,
        changes=TenantUpdate(
            work_days="1234567",
            work_start_minute=8 * 60 + 30,
            work_end_minute=17 * 60,
            slot_minutes=90,
        ),
    )
    now = dt.datetime(2026, 5, 1, 0, tzinfo=dt.UTC)
    zone = ZoneInfo(tenant.timezone)
    offered = booking._slots(tenant, now)
    day = (now + dt.timedelta(days=3)).astimezone(zone).date()
    on_day = [
        (s.astimezone(zone), e.astimezone(zone))
        for s, e in offered
        if s.astimezone(zone).date() == day
    ]
    shown = working_hours.describe(
        work_days=tenant.work_days,
        work_start_minute=tenant.work_start_minute,
        work_end_minute=tenant.work_end_minute,
        slot_minutes=tenant.slot_minutes,
    ).slots
    assert [(f"{s:%H:%M}", f"{e:%H:%M}") for s, e in on_day] == shown
