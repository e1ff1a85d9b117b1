"""Webhook payloads as the providers post them, kept as files in ``fixtures/``.

In the manner of zulip's ``webhooks/*/fixtures``: a test replays a payload whole, or changes
only the fields its story needs (the message it speaks of, the text a customer sent).
Form-encoded payloads (Twilio) are ``.txt`` files holding the body as sent; JSON pushes
(Aliyun) are ``.json`` files holding the array.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

FIXTURES = Path(__file__).with_name("fixtures")


def raw(name: str) -> bytes:
    """The payload's bytes, exactly as the provider sends them."""
    return (FIXTURES / name).read_bytes()


def form(name: str, **changes: str) -> dict[str, str]:
    """A form-encoded payload's fields, in the order sent, with ``changes`` made."""
    fields = dict(parse_qsl(raw(name).decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    return {**fields, **changes}


def item(name: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """One item of a JSON push, with ``changes`` made."""
    items = json.loads(raw(name))
    return {**items[index], **changes}
