"""The languages automatic messages to customers are written in.

A company has a default (Chinese unless it says otherwise) and a customer may have their
own; what a customer typed never decides it ("T" is what the Chinese footer asks for).
"""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[str, ...] = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


def language_for(customer_language: str | None, company_language: str | None) -> str:
    """The customer's language, else the company's, else Chinese."""
    for choice in (customer_language, company_language):
        if choice in LANGUAGES:
            return choice
    return DEFAULT_LANGUAGE
