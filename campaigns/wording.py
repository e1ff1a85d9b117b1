"""Campaign rules in Chinese, for the office console (``rules.describe`` is the API's
English line). Built from the rule itself, so the two cannot disagree on the numbers."""

from __future__ import annotations

from campaigns import rules
from visits.service_types import label


def _offset(days: int, anchor: str) -> str:
    if days == 0:
        return f"{anchor}当天"
    return f"{anchor}前{-days}天" if days < 0 else f"{anchor}后{days}天"


def describe(rule: rules.Rule) -> str:
    """One line a person reads in the campaign list, e.g. 每次空调清洗后90天提醒……"""
    at = f"，当地时间{rule.send_time:%H:%M}发送"
    if isinstance(rule, rules.Cadence):
        return (
            f"上次{label(rule.service_type)}后每{rule.every_days}天提醒一次"
            f"（错过时最多晚{rule.catch_up_days}天补发）{at}"
        )
    if isinstance(rule, rules.SolarTermOffset):
        return f"每年{_offset(rule.offset_days, rule.term)}{at}"
    if isinstance(rule, rules.LunarOffset):
        return f"每年{_offset(rule.offset_days, rule.festival)}{at}"
    if isinstance(rule, rules.PlumRainOffset):
        where = rule.region or "客户所在地区"
        return f"每年{_offset(rule.offset_days, '入梅')}（{where}）{at}"
    if isinstance(rule, rules.FixedDate):
        return f"每年{rule.month}月{rule.day}日{at}"
    return f"每年首次服务的周年日{at}"
