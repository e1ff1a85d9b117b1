"""SMS/MMS providers behind ``base.Provider``, registered by name, chosen by HUIFANG_SMS_PROVIDER.

Each provider keeps its own knowledge: a module (``console``) or, with webhooks and status
codes of its own, a folder (``twilio/``, ``aliyun/``). A new one is a class with a ``name``,
its ``capabilities``, its ``status_map`` and ``from_settings``, registered below; the
settings' ``sms_provider`` names it (and refuses names that are not registered).
"""

from __future__ import annotations

import functools

from huifang.settings import get_settings
from messaging.providers.aliyun import AliyunProvider
from messaging.providers.base import Capabilities, Provider, StatusMap
from messaging.providers.console import ConsoleProvider
from messaging.providers.twilio import TwilioProvider

PROVIDERS: dict[str, type[Provider]] = {}


def register(provider: type[Provider]) -> type[Provider]:
    """Make ``provider`` available under its ``name``."""
    if not provider.name or provider.name in PROVIDERS:
        raise ValueError(f"a provider needs a name of its own, not {provider.name!r}")
    PROVIDERS[provider.name] = provider
    return provider


for _provider in (ConsoleProvider, TwilioProvider, AliyunProvider):
    register(_provider)


def _registered(name: str) -> type[Provider]:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"no provider named {name!r}; known: {known}") from None


@functools.cache
def get_provider() -> Provider:
    """The configured provider, built once per process."""
    settings = get_settings()
    return _registered(settings.sms_provider).from_settings(settings)


def capabilities(name: str) -> Capabilities:
    """What the provider of that name carries, without building it (no credentials needed)."""
    return _registered(name).capabilities


def status_map(name: str) -> StatusMap:
    """What the receipts of the provider of that name mean; empty for a name we do not know."""
    provider = PROVIDERS.get(name)
    return provider.status_map if provider is not None else StatusMap()


__all__ = ["PROVIDERS", "capabilities", "get_provider", "register", "status_map"]
