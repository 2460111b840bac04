"""The Money value: what each currency can hold, how readers write it, and the units Stripe's
API expects for it (its zero-decimal list, ISK and HUF two-decimal there, three-decimal
currencies in steps of ten)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.money import MAX_MINOR, Money, MoneyError


@pytest.mark.parametrize(
    ("written", "currency", "minor", "stripe"),
    [
        ("12.50", "USD", 1250, 1250),
        ("12,50", "eur", 1250, 1250),
        ("1000", "JPY", 1000, 1000),
        ("1000", "KRW", 1000, 1000),
        ("1000", "UGX", 1000, 1000),
        ("1000", "ISK", 1000, 100000),  # Stripe: two decimals, in multiples of 100
        ("1000", "HUF", 1000, 100000),
        ("5.120", "KWD", 5120, 5120),
        ("5.12", "BHD", 5120, 5120),
        ("0", "USD", 0, 0),
    ],
)
def test_an_amount_is_read_in_its_currency_and_sent_in_stripes_units(
    written: str, currency: str, minor: int, stripe: int
) -> None:
    amount = Money.parse(written, currency)

    assert amount == Money(minor, currency.upper())
    assert amount.to_stripe() == stripe
    assert Money.from_stripe(stripe, currency.lower()) == amount


@pytest.mark.parametrize(
    ("written", "currency", "reason"),
    [
        ("12.5", "JPY", "has decimal places, and JPY has none"),
        ("1,000", "JPY", "has decimal places, and JPY has none"),
        ("12.505", "USD", "has more than 2 decimal places for USD"),
        ("5.125", "KWD", "which Stripe charges in steps of 0.010"),
        ("-5", "USD", "must not be negative"),
        ("1e3", "USD", "must be an amount like '12.50'"),
        ("١٢", "USD", "must be an amount like"),  # Arabic-Indic digits are not read
        ("", "USD", "must be an amount like"),
        (str(MAX_MINOR + 1), "JPY", "is too large"),
        ("9" * 4000, "JPY", "is too large"),
        ("5", "EURO", "is not an ISO 4217 currency code"),
    ],
)
def test_what_a_currency_cannot_hold_is_refused_with_the_reason(
    written: str, currency: str, reason: str
) -> None:
    with pytest.raises(MoneyError, match=reason):
        Money.parse(written, currency)


def test_readers_see_the_amount_the_way_their_language_writes_it() -> None:
    yen = Money(1000, "JPY")
    assert [yen.format(lang) for lang in ("en", "de")] == ["¥1,000", "1.000\xa0¥"]
    assert Money(1250, "EUR").format("fr") == "12,50\xa0€"
    assert Money(5120, "KWD").format("en") == "KWD5.120"


def test_amounts_add_and_compare_only_within_a_currency() -> None:
    assert Money(500, "JPY") + Money(700, "JPY") == Money(1200, "JPY")
    assert 3 * Money(1000, "JPY") > Money(2999, "JPY")
    with pytest.raises(ValueError, match="cannot combine"):
        _ = Money(500, "JPY") + Money(500, "USD")
    with pytest.raises(ValueError, match="cannot combine"):
        _ = Money(500, "JPY") < Money(500, "USD")


def test_a_share_rounds_down_to_what_can_be_charged() -> None:
    assert Money(1001, "JPY").part(1, 2) == Money(500, "JPY")
    assert Money(5010, "KWD").part(1, 2) == Money(2500, "KWD")
    assert Money(1001, "USD").part(1, 2) == Money(500, "USD")


def test_a_stripe_amount_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        Money.from_stripe(4010, "isk")  # 40.10 kr: the króna has no decimals any more


@given(
    st.integers(min_value=0, max_value=MAX_MINOR),
    st.sampled_from(["USD", "EUR", "JPY", "ISK", "HUF", "KRW", "UGX", "CHF"]),
)
def test_what_is_written_reads_back_and_stripe_round_trips(minor: int, currency: str) -> None:
    amount = Money(minor, currency)
    assert Money.parse(str(amount.amount), currency) == amount
    assert Money.from_stripe(amount.to_stripe(), currency) == amount
