"""SMS/MMS providers, one module each behind ``base.Provider``, chosen by HUIFANG_SMS_PROVIDER."""

from __future__ import annotations

import functools

from huifang.settings import get_settings
from messaging.providers.base import Provider


@functools.cache
def get_provider() -> Provider:
    """The configured provider, built once per process."""
    settings = get_settings()
    if settings.sms_provider == "console":
        from messaging.providers.console import ConsoleProvider

        return ConsoleProvider()
    if settings.sms_provider == "twilio":
        from messaging.providers.twilio import TwilioProvider

        return TwilioProvider(account_sid=settings.twilio_account_sid or "",
                              auth_token=settings.twilio_auth_token or "",
                              api_base=settings.twilio_api_base,
                              from_number=settings.twilio_from_number,
                              messaging_service_sid=settings.twilio_messaging_service_sid)
    from messaging.providers.aliyun import AliyunProvider

    return AliyunProvider(access_key_id=settings.aliyun_access_key_id or "",
                          access_key_secret=settings.aliyun_access_key_secret or "",
                          template_code=settings.aliyun_template_code,
                          api_base=settings.aliyun_api_base, region_id=settings.aliyun_region_id)
