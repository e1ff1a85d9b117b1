"""The gate's decisions in the words the office reads (Chinese), one sentence per reason.

The gate records its reasons as codes with an English detail for the API; a person at the
console is told in Chinese what stopped a message and what to do about it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from compliance.models import (
    ALLOWED,
    COMPLAINT_HOLD,
    FREQUENCY_CAP,
    MESSAGE_RULES,
    NO_CONSENT,
    OPTED_OUT,
    QUIET_HOURS,
)
from huifang.i18n import _

_SENTENCES = {
    ALLOWED: "可以发送。",
    OPTED_OUT: "客户已退订，不能再给这个号码发短信；客户回复“订阅”后才能恢复。",
    NO_CONSENT: "客户没有同意接收营销短信；先在客户页记录同意（及其凭证），再发送优惠信息。",
    FREQUENCY_CAP: "客户近期收到的营销短信已达公司上限，这条不能再发。",
    COMPLAINT_HOLD: "客户有未处理完的投诉或差评（不满意），处理完毕前暂停营销短信；"
    "服务类短信照常发送。",
    MESSAGE_RULES: "短信内容不符合运营商规则：正文里不能有【】（只有签名可以用），"
    "且加上签名和退订提示后不能超出长度上限。",
}
_UNKNOWN = "这条短信未能发送，请稍后再试或联系管理员。"


def reason_text(
    reason: str | None, *, not_before: dt.datetime | None = None, timezone: str = "Asia/Shanghai"
) -> str:
    """Why the gate held or stopped a message, as one Chinese sentence."""
    if reason == QUIET_HOURS:
        if not_before is None:
            return _("客户所在地现在是免打扰时段，短信会在发送时段开始时发出。")
        local = not_before.astimezone(ZoneInfo(timezone))
        return _(
            "客户所在地现在是免打扰时段，短信将于{month}月{day}日 {clock}（客户当地时间）发出。"
        ).format(month=local.month, day=local.day, clock=f"{local:%H:%M}")
    if reason is None:
        return _(_UNKNOWN)
    return _(_SENTENCES.get(reason, _UNKNOWN))
