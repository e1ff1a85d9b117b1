"""The services' refusals, as the staff phone shows them: in Chinese.

Services speak English to ``/v1`` callers (programs, and the people who write them). A staff
member on the phone reads Chinese, so each sentence the phone can meet (an upload refused,
a photo that failed processing, a visit that is not theirs) has its Chinese sentence here,
matched by the English sentence's start; numbers in it (sizes, megapixels, bytes) are
carried over. A sentence not listed falls back to a Chinese sentence for its HTTP status.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from huifang.errors import HuifangError
from huifang.i18n import _
from visits.schemas import AreaProgressRead, VisitProgressRead

Words = Callable[[re.Match[str]], str]

_ACCEPTED = "JPEG、PNG、HEIC、WebP、AVIF 照片，或 MP4、MOV、WebM 视频"


def _fixed(text: str) -> Words:
    return lambda _match: _(text)


def _too_large(match: re.Match[str]) -> str:
    return _("文件超过 {size} 的上限：照片请用手机正常尺寸，视频请拍短一些或用 1080p。").format(
        size=match.group("size")
    )


_TABLE: tuple[tuple[re.Pattern[str], Words], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        # permission to photograph the home (compliance.capture)
        (
            r"^The customer has not given permission to photograph",
            _fixed("客户还没有同意拍照录像，不能上传照片或视频。请先请客户在下方勾选同意并签名。"),
        ),
        (
            r"^The customer's permission does not cover being photographed",
            _fixed("客户的授权不包括拍照，不能上传照片。请重新请客户勾选“拍照”并签名。"),
        ),
        (
            r"^The customer's permission does not cover being filmed",
            _fixed("客户的授权不包括录像，不能上传视频。请重新请客户勾选“录像”并签名。"),
        ),
        (r"^Permission needs the customer to tick", _fixed("请客户勾选“我同意”后再签名提交。")),
        (r"^A signed permission needs", _fixed("请客户在签名框里签名后再提交。")),
        (r"^The signature", _fixed("签名没有保存成功，请清除后重新签名。")),
        (r"^Permission must cover", _fixed("请至少勾选“拍照”或“录像”中的一项。")),
        (r"^This customer already gave permission", _fixed("客户已经同意过拍照录像。")),
        # the file itself
        (r"^The file is empty", _fixed("文件是空的，请重新拍摄或重新选择。")),
        (r"^This (file|upload) is over (?P<size>[\d.]+ MB)", _too_large),
        (
            r"^This photo has far too many pixels",
            _fixed("这张照片像素多得不正常，请用手机相机的普通模式重新拍摄。"),
        ),
        (
            r"^This photo is (?P<mp>\d+) megapixels, more than the (?P<cap>\d+)",
            lambda m: _(
                "这张照片有 {mp} 百万像素，超过 {cap} 百万像素的上限；请把相机设为 12MP 或 "
                "50MP 模式后重拍。"
            ).format(mp=m.group("mp"), cap=m.group("cap")),
        ),
        (r"^This photo has no pixels", _fixed("这张照片没有内容，请重新拍摄。")),
        (r"^The upload was cut off before the end", _fixed("照片没有传完整，请重新上传。")),
        (
            r"^This file hides far more data",
            _fixed("这个文件里藏了远超照片的数据，请直接用手机相机拍的照片。"),
        ),
        (r"^This photo is damaged", _fixed("照片已损坏，无法读取；请重拍或换一张。")),
        (
            r"^(This is .*, not a photo or clip|This file is not a photo or clip"
            r"|This file is not an MP4, MOV or WebM clip)",
            _fixed("这不是能接收的照片或视频；请上传 " + _ACCEPTED + "。"),
        ),
        (
            r"^This clip was recorded at",
            _fixed("视频分辨率超过 4K，请把相机设为 4K 或 1080p 后重新录制。"),
        ),
        (
            r"^This clip took too long to process",
            _fixed("视频处理时间过长，请在手机上剪短（1080p 以下）后重新上传。"),
        ),
        (
            r"^This clip stops after|^This clip could not be",
            _fixed("视频已损坏或没有传完整，请重新录制或重新导出后上传。"),
        ),
        (
            r"^We could not process this photo",
            _fixed("照片处理失败，请重新上传；两次都失败请换一张。"),
        ),
        (
            r"^We could not process this clip",
            _fixed("视频处理失败，请重新上传；两次都失败请从手机重新导出。"),
        ),
        # the upload's form and metadata
        (
            r"^Say which moment this shows",
            _fixed("请说明这是哪个阶段的照片（服务前、服务中、服务后或日报照片）。"),
        ),
        (r"^The area .* is too long", _fixed("区域名称太长，请用“客厅”这样的简短名称。")),
        (r"^The note is longer than", _fixed("备注太长，请控制在 2000 字以内。")),
        (
            r"^Upload-Metadata|^The Upload-Metadata",
            _fixed("上传信息无法读取，请刷新页面后重新选择文件。"),
        ),
        (r"^Say the file's size", _fixed("无法读取文件大小，请重新选择文件。")),
        (
            r"^Send one file per upload",
            _fixed("一次只能上传一个文件。要一次选多张，请使用支持 JavaScript 的浏览器。"),
        ),
        (r"^No file was sent", _fixed("还没有选择照片或视频，请先选择文件。")),
        (r"^The field .* is too long", _fixed("填写的内容太长，请缩短后再上传。")),
        (
            r"^The upload arrived damaged|^Send the upload as multipart",
            _fixed("上传的内容不完整，请重新上传。"),
        ),
        # the upload's course
        (
            r"^There is no such upload|^This upload was removed meanwhile",
            _fixed("这次上传已失效（未完成的上传保留一天），请重新上传。"),
        ),
        (
            r"^This upload waited over a day",
            _fixed("这次上传超过一天没有继续，已过期，请重新上传。"),
        ),
        (
            r"^The server holds (?P<held>\d+) bytes",
            lambda m: _("服务器已收到 {held} 字节，将从这里继续上传。").format(
                held=m.group("held")
            ),
        ),
        (r"^This piece goes past", _fixed("上传的数据超出了文件大小，将从断点重新发送。")),
        (r"^This upload was refused", _fixed("这个文件被拒收了，请重新选择文件。")),
        # the visit
        (r"^There is no visit", _fixed("找不到这个服务记录，可能已被删除。")),
        (
            r"^This visit is another staff member's",
            _fixed("这个服务记录不是分配给你的；你只能查看和上传自己的服务记录。"),
        ),
        (r"^This visit is already finished", _fixed("这次服务已经完成，报告已在完成时生成。")),
    )
)

_BY_STATUS = {
    401: "登录已过期，请重新打开店里发给你的登录链接。",
    403: "没有权限进行这个操作。",
    404: "找不到要找的内容，可能已被删除。",
    409: "操作和当前状态冲突，请刷新页面后再试。",
    410: "这次上传已失效，请重新上传。",
    413: "文件太大：照片请用手机正常尺寸，视频请短一些。",
    415: "不是能接收的照片或视频；请上传 " + _ACCEPTED + "。",
    422: "内容无法接收，请检查后重新上传。",
}


def chinese(detail: str | None, status: int = 422) -> str:
    """The Chinese sentence for a service's English ``detail`` (refused with ``status``)."""
    text = (detail or "").strip()
    for pattern, words in _TABLE:
        found = pattern.search(text)
        if found:
            return words(found)
    return _(_BY_STATUS.get(status, "操作没有成功，请稍后再试。"))


def in_chinese(exc: HuifangError) -> HuifangError:
    """The same refusal (same status), its sentence in Chinese."""
    translated = HuifangError(chinese(exc.detail, exc.status_code))
    translated.status_code = exc.status_code
    return translated


PARTS = {"before": "服务前", "after": "服务后", "clip": "视频"}
PHASES = {"before": "服务前", "during": "服务中", "after": "服务后", "staff_report": "日报照片"}


def missing_words(area: AreaProgressRead) -> list[str]:
    return [_(PARTS[part]) for part in area.missing]


def what_is_missing(progress: VisitProgressRead) -> str:
    """Why the visit cannot be finished yet, in Chinese ("" when it can)."""
    parts = []
    for area in progress.areas:
        lacking = [_(PARTS[m]) for m in area.missing if m in ("before", "after")]
        if area.required and lacking:
            parts.append(
                _("{area}还缺{parts}照片").format(
                    area=area.area or _("本次服务"), parts="、".join(lacking)
                )
            )
    if parts:
        return _("还不能完成：") + "；".join(parts) + "。"
    if progress.processing:
        return _("还有 {n} 个文件在处理中，处理完成后才能生成报告，请稍等。").format(
            n=progress.processing
        )
    if progress.finished_at is not None:
        return _("这次服务已经完成，报告已在完成时生成。")
    return ""
