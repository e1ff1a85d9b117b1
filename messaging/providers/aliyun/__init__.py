"""Aliyun SMS, in one folder: sending through SendSms (``provider``), what it pushes to us
(``webhooks``), and what its delivery reports mean (``statuses``)."""

from messaging.providers.aliyun.provider import (
    API_VERSION,
    CONTENT_PARAM,
    DEFAULT_API_BASE,
    DEFAULT_TIMEOUT,
    AliyunProvider,
    aliyun_number,
    business_limit_wait,
    encode_form,
    percent_encode,
    signature,
    strip_signature,
)

__all__ = [
    "API_VERSION",
    "CONTENT_PARAM",
    "DEFAULT_API_BASE",
    "DEFAULT_TIMEOUT",
    "AliyunProvider",
    "aliyun_number",
    "business_limit_wait",
    "encode_form",
    "percent_encode",
    "signature",
    "strip_signature",
]
