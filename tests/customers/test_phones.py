"""The fast path for mainland mobiles decides exactly as phonenumbers does.

``normalize_phone`` reads plainly written mainland mobiles without phonenumbers' parser;
every number here goes through both ``normalize_phone`` and the phonenumbers-only path, and
the two must agree: the same E.164, or the same refusal with the same sentence. The numbers
are generated to cover every 1xx and 1xxx prefix (valid, unassigned, carrier prefixes,
data-only ranges), wrong lengths, landlines, service numbers and other countries, in the
spellings offices type.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from customers import phones
from huifang.errors import Invalid

REGIONS = ("CN", "US", "HK", "GB")


def reference(raw: str, region: str) -> str:
    """What phonenumbers alone makes of ``raw``: E.164, or the refusal's sentence."""
    try:
        return phones._with_phonenumbers(raw, raw.strip(), region)
    except Invalid as exc:
        return f"refused: {exc.detail}"


def ours(raw: str, region: str) -> str:
    try:
        return phones.normalize_phone(raw, region=region)
    except Invalid as exc:
        return f"refused: {exc.detail}"


def spellings(national: str, rng: random.Random) -> Iterator[str]:
    """``national`` written as people do: bare, grouped, with 86, +86, 0086."""
    grouped = f"{national[:3]} {national[3:7]} {national[7:]}"
    dashed = f"{national[:3]}-{national[3:7]}-{national[7:]}"
    yield national
    yield grouped
    yield dashed
    yield "86" + national
    yield "+86" + national
    yield "+86 " + grouped
    yield "+86-" + dashed
    yield "(+86) " + national
    yield "0086 " + national
    yield "+ 86 " + national
    yield f" {national} "
    # separators dropped in at random places, doubled, mixed
    chars = list("+86" + national if rng.random() < 0.5 else national)
    for _ in range(rng.randint(1, 4)):
        chars.insert(rng.randint(1, len(chars)), rng.choice([" ", "-", "  ", "--", " - "]))
    yield "".join(chars)


def mainland_numbers(rng: random.Random) -> Iterator[str]:
    """Every four-digit prefix 1000–1999 with a random tail, and wrong lengths."""
    for prefix in range(1000, 2000):
        tail = "".join(rng.choice("0123456789") for _ in range(7))
        yield f"{prefix}{tail}"
        # one digit short and one too many
        yield f"{prefix}{tail[:-1]}"
        yield f"{prefix}{tail}{rng.randint(0, 9)}"
    # the five-digit carrier prefixes the parser strips (17951, 12593 …) before a mobile
    for carrier in ("17951", "17911", "12593", "11808", "10193"):
        yield carrier + "139" + "".join(rng.choice("0123456789") for _ in range(8))


OTHER_NUMBERS = (
    "010 6552 9988",  # Beijing landline
    "021-62345678",
    "0755 8888 1234",
    "+86 10 6552 9988",
    "8610 6552 9988",
    "400 820 8820",  # company hotline
    "800 820 8820",
    "95588",
    "+1 415 555 2671",
    "415 555 2671",
    "+852 6123 4567",
    "+44 7700 900123",
    "+886 912 345 678",
    "1.38001E+10",
    "１３９１２３４５６７８",  # full-width digits
    "139１２３４５６７８",
    "tel:+8613912345678",
    "13912345678 ext 12",
    "+86139123456789",
    "+8613912345678",
    "+0086 13912345678",
    "139 1234 5678x",
    "abc",
    "-13912345678",
    "+-8613912345678",
    "++8613912345678",
)


def test_fast_path_agrees_with_phonenumbers_on_generated_numbers() -> None:
    rng = random.Random(20261206)
    cases = 0
    fast = 0
    for national in mainland_numbers(rng):
        for raw in spellings(national, rng):
            for region in ("CN", "US"):
                expected = reference(raw, region)
                assert ours(raw, region) == expected, (raw, region)
                cases += 1
                fast += phones._mainland_mobile(raw.strip(), region) is not None
    # The comparison must have exercised both paths, and the fast one a lot.
    assert cases > 60_000
    assert fast > 5_000


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("raw", OTHER_NUMBERS)
def test_everything_else_is_left_to_phonenumbers(raw: str, region: str) -> None:
    assert ours(raw, region) == reference(raw, region)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("139 1234 5678", "CN", "+8613912345678"),
        ("139-1234-5678", "CN", "+8613912345678"),
        ("8613912345678", "CN", "+8613912345678"),
        ("+86 139 1234 5678", "US", "+8613912345678"),
        ("16101234567", "CN", "+8616101234567"),
        ("17400123456", "CN", "+8617400123456"),
    ],
)
def test_plain_mainland_mobiles_take_the_fast_path(raw: str, region: str, e164: str) -> None:
    assert phones._mainland_mobile(raw, region) == e164
    assert reference(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("14012345678", "CN"),  # 140: not a mobile range
        ("17406123456", "CN"),  # 1740 beyond 17405: satellite ranges not in the mobile plan
        ("17951 13912345678", "CN"),  # a carrier prefix the parser strips
        ("13912345678", "US"),  # no country code, read in the US
        ("0086 13912345678", "CN"),  # spelled in a way the fast path does not read
        ("１３９１２３４５６７８", "CN"),
    ],
)
def test_the_fast_path_declines_what_it_does_not_read(raw: str, region: str) -> None:
    assert phones._mainland_mobile(raw, region) is None
