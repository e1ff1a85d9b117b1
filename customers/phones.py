"""Phone numbers: read what people type, keep E.164, refuse what cannot receive SMS.

Nearly every number an office types or imports is a mainland mobile written as digits with
spaces or dashes, bare or after 86 / +86. Those are decided without phonenumbers' general
parser (about 20 µs a number, half of a customer import), by the very tests phonenumbers
applies, on its own metadata for CN: the number's general pattern, then each type in the
order ``number_type`` tries them. Anything else, and every refusal, goes through
phonenumbers itself; ``tests/customers/test_phones.py`` compares the two over many
generated numbers.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberType
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


# Digits with spaces or dashes, perhaps after a plus: the only spellings the fast path reads.
_PLAIN = re.compile(r"\+?[0-9][0-9 \-]*", re.ASCII)


class _MainlandMobiles:
    """Mainland (CN) mobile numbers of 11 digits, accepted exactly when phonenumbers
    accepts them."""

    LENGTH = 11

    def __init__(self) -> None:
        meta = PhoneMetadata.metadata_for_region("CN")
        assert meta is not None and meta.country_code == 86
        # A national number the parser would strip a prefix from (a carrier's 179xx, 0)
        # is left to phonenumbers.
        self.national_prefix = re.compile(meta.national_prefix_for_parsing or "$^")
        self.general = self._pattern(meta.general_desc)
        # Types number_type() tries before fixed line and mobile: a match is not a mobile.
        others = (
            meta.premium_rate,
            meta.toll_free,
            meta.shared_cost,
            meta.voip,
            meta.personal_number,
            meta.pager,
            meta.uan,
            meta.voicemail,
        )
        self.others = [p for p in map(self._pattern, others) if p is not None]
        # Fixed line or not, a number matching the mobile pattern is MOBILE or
        # FIXED_LINE_OR_MOBILE, both SMS-capable (unless the two patterns are the same).
        self.mobile = self._pattern(meta.mobile)
        self.usable = not meta.same_mobile_and_fixed_line_pattern

    @classmethod
    def _pattern(cls, desc: PhoneNumberDesc | None) -> re.Pattern[str] | None:
        """phonenumbers' test of one type, for numbers of LENGTH digits: None when no such
        number can match it (no pattern, or other lengths only), else its pattern."""
        if desc is None or not desc.national_number_pattern:
            return None
        if desc.possible_length and cls.LENGTH not in desc.possible_length:
            return None
        return re.compile(desc.national_number_pattern)

    def accepts(self, national: str) -> bool:
        return (
            self.usable
            and len(national) == self.LENGTH
            and national[0] == "1"
            and self.general is not None
            and self.mobile is not None
            and self.national_prefix.match(national) is None
            and self.general.fullmatch(national) is not None
            and not any(p.fullmatch(national) for p in self.others)
            and self.mobile.fullmatch(national) is not None
        )


_MAINLAND = _MainlandMobiles()


def _mainland_mobile(text: str, region: str) -> str | None:
    """E.164 of a plainly written mainland mobile, or None to ask phonenumbers."""
    if len(text) > 32 or _PLAIN.fullmatch(text) is None:
        return None
    digits = text.replace(" ", "").replace("-", "")
    if digits[0] == "+":
        if len(digits) != 14 or not digits.startswith("+86"):
            return None
        national = digits[3:]
    elif region != "CN":
        return None
    elif len(digits) == 11:
        national = digits
    elif len(digits) == 13 and digits.startswith("86"):
        national = digits[2:]
    else:
        return None
    return "+86" + national if _MAINLAND.accepts(national) else None


def normalize_phone(raw: str, *, region: str) -> str:
    """``raw`` as E.164 (``+8613800138000``), or Invalid with a sentence saying what is wrong.

    Accepts spaces, dashes, brackets, ``+86``/``0086``/``86`` prefixes and full-width digits;
    numbers without a country code are read in ``region``.
    """
    text = (raw or "").strip()
    if not text:
        raise Invalid("The phone number is empty; enter a mobile number such as 138 0013 8000.")
    return _mainland_mobile(text, region) or _with_phonenumbers(raw, text, region)


def _with_phonenumbers(raw: str, text: str, region: str) -> str:
    """``normalize_phone`` by phonenumbers alone: every spelling, every refusal."""
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
