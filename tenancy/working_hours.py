"""A company's working hours as the settings screen shows them, before or after saving:
the days in Chinese and the visit slots a day holds (the times the booking page offers on a
working day, ``messaging.booking``; a test holds the two to the same slots)."""

from __future__ import annotations

from dataclasses import dataclass

from huifang.errors import Invalid

DAY_NAMES = {
    "1": "周一",
    "2": "周二",
    "3": "周三",
    "4": "周四",
    "5": "周五",
    "6": "周六",
    "7": "周日",
}


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def slot_minutes_of_day(start: int, end: int, slot: int) -> list[int]:
    """The slots' starts, in minutes after midnight: one every ``slot`` minutes from
    ``start`` while a whole slot fits before ``end``."""
    if not (0 <= start <= 24 * 60 and 0 <= end <= 24 * 60 and slot > 0):
        raise Invalid(
            "Working hours are minutes within a day and a slot is a positive number of minutes."
        )
    return list(range(start, end - slot + 1, slot))


def days_text(work_days: str) -> str:
    """ "123456" → 周一至周六; "135" → 周一、周三、周五."""
    days = sorted(set(work_days) & set(DAY_NAMES))
    if not days:
        return "不接受预约"
    numbers = [int(d) for d in days]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{DAY_NAMES[days[0]]}至{DAY_NAMES[days[-1]]}"
    return "、".join(DAY_NAMES[d] for d in days)


@dataclass(frozen=True)
class WorkingHours:
    days: str  # 周一至周六
    hours: str  # 08:00–18:00
    slots: list[tuple[str, str]]  # ("08:00", "10:00"), …
    summary: str  # one Chinese line


def describe(
    *, work_days: str, work_start_minute: int, work_end_minute: int, slot_minutes: int
) -> WorkingHours:
    """What customers will be offered with these settings (saved or proposed)."""
    starts = slot_minutes_of_day(work_start_minute, work_end_minute, slot_minutes)
    slots = [(_clock(m), _clock(m + slot_minutes)) for m in starts]
    days, hours = days_text(work_days), f"{_clock(work_start_minute)}–{_clock(work_end_minute)}"
    if not slots:
        summary = f"{days} {hours}：放不下一次{slot_minutes}分钟的上门，客户将无法预约。"
    else:
        summary = (
            f"{days} {hours}，每次上门{slot_minutes}分钟，每天{len(slots)}个时段："
            + "、".join(start for start, _ in slots)
            + "。"
        )
    return WorkingHours(days, hours, slots, summary)
