"""Twilio, in one folder: sending (``provider``), what it posts to us and how it is signed
(``webhooks``), and what its statuses and error codes mean (``statuses``)."""

from messaging.providers.twilio.provider import DEFAULT_API_BASE, DEFAULT_TIMEOUT, TwilioProvider

__all__ = ["DEFAULT_API_BASE", "DEFAULT_TIMEOUT", "TwilioProvider"]
