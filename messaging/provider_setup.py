"""What the settings screen shows about the SMS provider: which one sends, what it carries,
whether its credentials are set (never their values), and the addresses to paste into its
console for replies and delivery receipts, with what is wrong with them.

The provider is the installation's (``HUIFANG_SMS_PROVIDER``), not the company's; the
Aliyun addresses are the company's own (a secret path, ``tenancy.service.hook_key``).
Twilio signs what it posts against ``HUIFANG_PUBLIC_URL`` + the path, so the addresses
here are exactly the ones the signature is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from huifang.settings import Settings, get_settings
from messaging import providers
from tenancy import service as tenancy
from tenancy.models import Tenant

LABELS = {"console": "控制台（演示用，不真正发送）", "twilio": "Twilio", "aliyun": "阿里云短信"}
# The settings each provider needs, by environment variable; only whether each is set is shown.
CREDENTIALS = {
    "console": (),
    "twilio": (
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from_number",
        "twilio_messaging_service_sid",
    ),
    # Aliyun's templates are the company's, one per purpose (设置 › 短信模板), not a setting.
    "aliyun": ("aliyun_access_key_id", "aliyun_access_key_secret"),
}


@dataclass(frozen=True)
class Address:
    purpose: str  # Chinese: what the provider sends there
    where: str  # Chinese: the field of the provider's console to paste it into
    url: str
    secret: bool  # anyone holding it can post for this company


@dataclass(frozen=True)
class Credential:
    variable: str  # HUIFANG_…
    is_set: bool


@dataclass(frozen=True)
class ProviderSetup:
    name: str
    label: str
    supports_mms: bool
    max_body_chars: int
    rate_per_second: int | None
    credentials: list[Credential]
    addresses: list[Address]
    warnings: list[str]  # Chinese sentences


def aliyun_addresses(tenant_id: int, public_url: str) -> list[Address]:
    base = f"{public_url}/hooks/aliyun/{tenancy.hook_key(tenant_id)}"
    return [
        Address(
            "上行短信（客户回复）",
            "阿里云短信控制台 → 通用设置 → 消息回执 → 上行消息（SmsUp）：HTTP 批量推送地址",
            f"{base}/reply",
            True,
        ),
        Address(
            "短信回执（送达状态）",
            "阿里云短信控制台 → 通用设置 → 消息回执 → 发送回执（SmsReport）：HTTP 批量推送地址",
            f"{base}/report",
            True,
        ),
    ]


def twilio_addresses(public_url: str) -> list[Address]:
    return [
        Address(
            "客户回复",
            "Twilio 控制台 → 电话号码（或 Messaging Service）→ Messaging → "
            "A message comes in（Webhook，HTTP POST）",
            f"{public_url}/hooks/twilio/inbound",
            False,
        ),
        Address(
            "送达状态",
            "由我们随每条短信提交（StatusCallback），无需填写；"
            "如在 Messaging Service 里设置，请填此地址",
            f"{public_url}/hooks/twilio/status",
            False,
        ),
    ]


def _warnings(settings: Settings) -> list[str]:
    found = []
    parts = urlsplit(settings.public_url)
    host = (parts.hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local"):
        found.append(
            f"公开地址 {settings.public_url} 只有本机能访问，服务商无法推送回复和回执；"
            "请把 HUIFANG_PUBLIC_URL 设为公网可访问的 https 地址。"
        )
    elif parts.scheme != "https":
        found.append(
            "公开地址不是 https；服务商推送的回复和回执会以明文传输，"
            "请为 HUIFANG_PUBLIC_URL 配置 https。"
        )
    if settings.sms_provider == "console":
        found.append(
            "当前使用控制台模拟发送，客户收不到任何短信；上线前请设置 HUIFANG_SMS_PROVIDER。"
        )
    return found


def provider_setup(*, tenant: Tenant) -> ProviderSetup:
    """The provider as the settings screen shows it, read-only."""
    settings = get_settings()
    name = settings.sms_provider
    caps = providers.capabilities(name)
    addresses = {
        "twilio": twilio_addresses(settings.public_url),
        "aliyun": aliyun_addresses(tenant.id, settings.public_url),
    }.get(name, [])
    return ProviderSetup(
        name=name,
        label=LABELS.get(name, name),
        supports_mms=caps.supports_mms,
        max_body_chars=caps.max_body_chars,
        rate_per_second=caps.rate_per_second,
        credentials=[
            Credential(f"HUIFANG_{field.upper()}", bool(getattr(settings, field)))
            for field in CREDENTIALS.get(name, ())
        ],
        addresses=addresses,
        warnings=_warnings(settings),
    )
