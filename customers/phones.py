"""Phone numbers: read what people type, keep E.164, refuse what cannot receive SMS."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as phone_timezones

from huifang.errors import Invalid

# What Excel shows for a long number in a General cell: 1.38001E+10.
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")

# Types a text message can reach. FIXED_LINE_OR_MOBILE is how NANP numbers (US, Canada)
# are classified: their numbering does not tell mobiles from landlines.
SMS_CAPABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

_TYPE_WORDS = {
    PhoneNumberType.FIXED_LINE: "a fixed-line (landline) number",
    PhoneNumberType.TOLL_FREE: "a toll-free service number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost service number",
    PhoneNumberType.VOIP: "an internet (VoIP) number",
    PhoneNumberType.PAGER: "a pager number",
    PhoneNumberType.UAN: "a company hotline number",
    PhoneNumberType.VOICEMAIL: "a voicemail number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal forwarding number",
}


def normalize_phone(raw: str, *, region: str) -> str:
    """``raw`` as E.164 (``+8613800138000``), or Invalid with a sentence saying what is wrong.

    Accepts spaces, dashes, brackets, ``+86``/``0086``/``86`` prefixes and full-width digits;
    numbers without a country code are read in ``region``.
    """
    text = (raw or "").strip()
    if not text:
        raise Invalid("The phone number is empty; enter a mobile number such as 138 0013 8000.")
    if _SCIENTIFIC.match(text):
        raise Invalid(
            f"{raw!r} is a number Excel shortened to scientific notation, and its last digits "
            "are lost; format the phone column as Text in Excel, type the numbers again "
            "and re-import."
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise Invalid(
            f"{raw!r} is not a phone number; enter a mobile number such as 138 0013 8000 "
            "or +1 415 555 2671."
        ) from None
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region
        raise Invalid(
            f"{raw!r} is not a valid phone number in {where}; check the digits "
            "(a mainland China mobile number has 11 digits starting with 1)."
        )
    kind = phonenumbers.number_type(number)
    if kind not in SMS_CAPABLE:
        what = _TYPE_WORDS.get(kind, "a number that cannot receive text messages")
        raise Invalid(
            f"{raw!r} is {what}, which cannot receive text messages; "
            "enter the customer's mobile number instead."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def timezone_for(e164: str) -> str | None:
    """The time zone of a number's country when it has exactly one, else None."""
    zones = phone_timezones.time_zones_for_number(phonenumbers.parse(e164))
    real = [z for z in zones if z != "Etc/Unknown"]
    return real[0] if len(real) == 1 else None


def display(e164: str) -> str:
    """A number as people read it in its own country (``138 0013 8000``); what is not a
    number (an erased customer's placeholder) as it is."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def masked(e164: str) -> str:
    """A number with all but its last four digits hidden (``+86 ••• •••• 8000``)."""
    try:
        prefix, national = f"+{phonenumbers.parse(e164).country_code} ", display(e164)
    except phonenumbers.NumberParseException:
        prefix, national = "", e164
    shown = sum(ch.isdigit() for ch in national) - 4
    out = []
    for ch in national:
        if ch.isdigit():
            out.append("•" if shown > 0 else ch)
            shown -= 1
        else:
            out.append(ch)
    return prefix + "".join(out)
