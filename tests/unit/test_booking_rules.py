"""The booking rules that need no database: the booking state machine, the price of a rental,
the refund windows, the turnaround and the money a renter is shown and Stripe is asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.booking.common import refund_for
from flows.bookings import (
    Quote,
    QuoteRefused,
    blocked_range,
    extension_price,
    free_slots,
    quote,
)
from locks.windows import resolve_local
from storage.bookings import BOOKING_TRANSITIONS, BOOKINGS
from storage.models import BookingState
from storage.money import Money, MoneyError
from tests.unit.memory import AssetRow, LocationRow, as_asset

S = BookingState
NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
NEW_YORK = "America/New_York"


# -- the booking state machine -------------------------------------------------------------

DOMAIN_EDGES = [
    (S.DRAFT, S.AWAITING_PAYMENT),
    (S.AWAITING_PAYMENT, S.AWAITING_ID),
    (S.AWAITING_PAYMENT, S.CONFIRMED),  # no ID needed (verified recently)
    (S.AWAITING_ID, S.CONFIRMED),
    (S.CONFIRMED, S.ACTIVE),
    (S.ACTIVE, S.COMPLETED),
    (S.CONFIRMED, S.COMPLETED),  # ended without being opened
    (S.DRAFT, S.CANCELLED),
    (S.AWAITING_PAYMENT, S.CANCELLED),
    (S.AWAITING_ID, S.CANCELLED),
    (S.CONFIRMED, S.CANCELLED),
    (S.ACTIVE, S.CANCELLED),
    (S.DRAFT, S.EXPIRED),
    (S.AWAITING_PAYMENT, S.EXPIRED),  # the hold ran out unpaid
]
FINAL = (S.COMPLETED, S.CANCELLED, S.EXPIRED)


@pytest.mark.parametrize(("was", "to"), DOMAIN_EDGES)
def test_every_move_the_domain_names_is_allowed(was: BookingState, to: BookingState) -> None:
    assert to in BOOKING_TRANSITIONS[was]
    assert BOOKINGS.allows(was, to)
    assert BOOKINGS.allows(str(was), to)  # as read from the database


def test_the_table_allows_nothing_else_and_covers_every_state() -> None:
    declared = {(was, to) for was, nexts in BOOKING_TRANSITIONS.items() for to in nexts}
    assert declared == set(DOMAIN_EDGES)
    assert set(BOOKING_TRANSITIONS) == set(BookingState)


@pytest.mark.parametrize("final", FINAL)
def test_nothing_leaves_a_final_state(final: BookingState) -> None:
    assert BOOKING_TRANSITIONS[final] == frozenset()
    assert not any(BOOKINGS.allows(final, to) for to in BookingState)


@pytest.mark.parametrize(
    ("was", "to"),
    [
        (S.DRAFT, S.CONFIRMED),  # unpaid
        (S.AWAITING_ID, S.ACTIVE),  # ID not checked
        (S.AWAITING_ID, S.EXPIRED),  # paid: cancelled (and refunded), never expired
        (S.CONFIRMED, S.AWAITING_PAYMENT),
        (S.ACTIVE, S.CONFIRMED),
        (S.COMPLETED, S.ACTIVE),
        (S.CANCELLED, S.CONFIRMED),
        (S.EXPIRED, S.AWAITING_PAYMENT),
        (S.CONFIRMED, S.CONFIRMED),
    ],
)
def test_an_illegal_move_is_refused(was: BookingState, to: BookingState) -> None:
    assert not BOOKINGS.allows(was, to)
    assert not BOOKINGS.allows("no such state", to)


def test_a_move_is_guarded_by_exactly_its_predecessors() -> None:
    assert BOOKINGS.predecessors(S.CONFIRMED) == {S.AWAITING_PAYMENT, S.AWAITING_ID}
    assert BOOKINGS.predecessors(S.EXPIRED) == {S.DRAFT, S.AWAITING_PAYMENT}
    assert BOOKINGS.predecessors(S.DRAFT) == frozenset()


# -- the price of a rental -----------------------------------------------------------------

KAYAK = AssetRow(price_per_hour_cents=1000, price_per_day_cents=5000, deposit_cents=2000)


def at(hour: int, minute: int = 0, day: int = 11) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "price"),
    [
        (at(10), at(12), 2000),  # two hours, hourly
        (at(10), at(11, 1), 2000),  # a started hour counts whole
        (at(10), at(15), 5000),  # five hours cost the day price
        (at(10), at(22), 5000),  # twelve hours: one day is cheaper
        (at(10), at(12, day=12), 7000),  # a day and two hours
        (at(10), at(20, day=12), 10000),  # a day and ten hours: two days
    ],
)
def test_a_rental_costs_the_cheaper_of_hourly_and_daily(
    start: datetime, end: datetime, price: int
) -> None:
    assert quote(KAYAK, start, end, NOW) == Quote(Money(price, "USD"), Money(2000, "USD"))


def test_without_a_day_price_every_hour_is_paid() -> None:
    hourly = AssetRow(price_per_hour_cents=1000, price_per_day_cents=0)
    assert quote(hourly, at(10), at(10, day=12), NOW).price == Money(24000, "USD")


def test_a_free_item_quotes_zero_in_its_currency() -> None:
    free = AssetRow(price_per_hour_cents=0, price_per_day_cents=0, deposit_cents=0, currency="JPY")
    assert quote(free, at(10), at(12), NOW) == Quote(Money(0, "JPY"), Money(0, "JPY"))


def test_the_quote_carries_the_items_currency() -> None:
    yen = AssetRow(price_per_hour_cents=1500, price_per_day_cents=8000, currency="JPY")
    priced = quote(yen, at(10), at(13), NOW)
    assert priced.price == Money(4500, "JPY")
    assert priced.price.format("en") == "¥4,500"
    assert priced.deposit.currency == "JPY"


@pytest.mark.parametrize(
    ("start", "end", "key", "minutes"),
    [
        (at(10), at(10, 59), "journey.too_short", 60),
        (at(10), at(10, day=19), "journey.too_long", 7 * 24 * 60),
    ],
)
def test_the_minimum_and_maximum_duration_are_refused_with_the_limit(
    start: datetime, end: datetime, key: str, minutes: int
) -> None:
    with pytest.raises(QuoteRefused) as refused:
        quote(KAYAK, start, end, NOW)
    assert (refused.value.key, refused.value.params) == (key, {"minutes": minutes})


def test_the_exact_minimum_and_maximum_are_quoted() -> None:
    assert quote(KAYAK, at(10), at(11), NOW).price == Money(1000, "USD")
    assert quote(KAYAK, at(10), at(10, day=18), NOW).price == Money(35000, "USD")


def test_a_start_in_the_past_is_refused_after_five_minutes_of_grace() -> None:
    assert quote(KAYAK, NOW - timedelta(minutes=5), NOW + timedelta(hours=1), NOW)
    with pytest.raises(QuoteRefused, match=r"journey\.in_the_past"):
        quote(KAYAK, NOW - timedelta(minutes=5, seconds=1), NOW + timedelta(hours=1), NOW)


def test_across_the_spring_forward_the_hours_are_the_real_ones() -> None:
    """In New York on 14 March 2027 clocks go from 02:00 to 03:00: 00:00 to 06:00 local is five
    real hours, and five hours is what is charged (local times are resolved to UTC first, as
    the dialog does: a subtraction in one zone would count the wall clock's six)."""
    hourly = AssetRow(price_per_hour_cents=1000, price_per_day_cents=0)
    start = resolve_local(datetime(2027, 3, 14, 0, 0), NEW_YORK)
    end = resolve_local(datetime(2027, 3, 14, 6, 0), NEW_YORK)
    assert end - start == timedelta(hours=5)
    assert quote(hourly, start, end, NOW).price == Money(5000, "USD")
    day = resolve_local(datetime(2027, 3, 15, 0, 0), NEW_YORK)  # a local day of 23 hours
    assert quote(hourly, start, day, NOW).price == Money(23000, "USD")
    assert quote(KAYAK, start, day, NOW).price == Money(5000, "USD")


@pytest.mark.parametrize(
    ("extra", "price"),
    [
        (timedelta(minutes=15), 1000),  # a started hour
        (timedelta(hours=2), 2000),
        (timedelta(hours=6), 5000),  # the day price is cheaper
        (timedelta(hours=25), 10000),  # two started days
    ],
)
def test_extra_time_costs_started_hours_or_days_whichever_is_cheaper(
    extra: timedelta, price: int
) -> None:
    assert extension_price(KAYAK, extra) == price
    hourly = AssetRow(price_per_hour_cents=1000, price_per_day_cents=0)
    assert extension_price(hourly, timedelta(hours=25)) == 25000


# -- the turnaround ------------------------------------------------------------------------


def test_a_rental_takes_its_items_buffers_else_its_locations() -> None:
    located = as_asset(AssetRow(location=LocationRow(buffer_before_minutes=15)))
    taken = blocked_range(located, at(10), at(12))
    assert (taken.starts_at, taken.ends_at) == (at(9, 45), at(12, 15))
    own = as_asset(AssetRow(buffer_before_minutes=0, buffer_after_minutes=60))
    taken = blocked_range(own, at(10), at(12))
    assert (taken.starts_at, taken.ends_at) == (at(10), at(13))


def test_alternatives_are_the_nearest_slots_clear_of_the_taken_ranges() -> None:
    asset = as_asset(AssetRow(location=LocationRow(buffer_before_minutes=0)))
    wanted = blocked_range(asset, at(10), at(12))  # 10:00-12:15 with the turnaround after
    held = [(at(10), at(20))]
    assert free_slots(held, wanted, at(10), at(12), now=NOW) == [
        (at(6, 30), at(8, 30)),
        (at(7), at(9)),
        (at(7, 30), at(9, 30)),  # its turnaround ends at 09:45, clear of 10:00
    ]
    assert free_slots(held, wanted, at(10), at(12), now=at(7, 1)) == [
        (at(7, 30), at(9, 30)),
        (at(20), at(22)),
        (at(20, 30), at(22, 30)),
    ]


def test_a_slot_that_only_touches_a_taken_range_is_free() -> None:
    asset = as_asset(
        AssetRow(location=LocationRow(buffer_before_minutes=0, buffer_after_minutes=0))
    )
    wanted = blocked_range(asset, at(10), at(12))
    held = [(at(9), at(13))]
    assert free_slots(held, wanted, at(10), at(12), now=NOW, count=2) == [
        (at(7), at(9)),
        (at(13), at(15)),
    ]


# -- the refund windows --------------------------------------------------------------------

START = datetime(2027, 3, 20, 10, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
PRICE = Money(5000, "USD")


@pytest.mark.parametrize(
    ("now", "refund"),
    [
        (START - 3 * DAY, 5000),
        (START - DAY, 5000),  # the cutoff itself: still a full refund
        (START - DAY + timedelta(microseconds=1), 2500),
        (START - timedelta(microseconds=1), 2500),
        (START, 0),  # from the start on, nothing
        (START + timedelta(hours=1), 0),
    ],
)
def test_a_cancellation_refunds_by_how_long_before_the_start_it_comes(
    now: datetime, refund: int
) -> None:
    assert refund_for(PRICE, START, now, DAY) == Money(refund, "USD")


def test_half_a_refund_rounds_down_to_what_the_currency_can_be_charged_in() -> None:
    late = START - timedelta(hours=1)
    assert refund_for(Money(1001, "JPY"), START, late, DAY) == Money(500, "JPY")
    assert refund_for(Money(5010, "KWD"), START, late, DAY) == Money(2500, "KWD")
    assert refund_for(Money(5030, "BHD"), START, late, DAY) == Money(2510, "BHD")
    assert refund_for(Money(1001, "USD"), START, late, DAY) == Money(500, "USD")


def test_the_free_cancellation_window_is_the_operators() -> None:
    twelve = timedelta(hours=12)
    assert refund_for(PRICE, START, START - twelve, twelve) == PRICE
    assert refund_for(PRICE, START, START - twelve + timedelta(seconds=1), twelve) == Money(
        2500, "USD"
    )


# -- currencies without, and with three, decimals ------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "shown", "stripe"),
    [
        (1000, "JPY", "¥1,000", 1000),
        (15000, "KRW", "₩15,000", 15000),
        (1000, "ISK", "ISK1,000", 100000),  # no decimals in ISO, two at Stripe
        (1000, "HUF", "HUF1,000", 100000),
        (5120, "KWD", "KWD5.120", 5120),
        (5120, "BHD", "BHD5.120", 5120),
        (1250, "USD", "$12.50", 1250),
    ],
)
def test_an_amount_is_shown_in_its_currencys_units_and_sent_in_stripes(
    minor: int, currency: str, shown: str, stripe: int
) -> None:
    amount = Money(minor, currency)
    assert amount.format("en") == shown
    assert amount.to_stripe() == stripe
    assert Money.from_stripe(stripe, currency) == amount


def test_a_three_decimal_amount_not_ending_in_zero_is_not_sent_to_stripe() -> None:
    with pytest.raises(MoneyError, match="charged in steps"):
        Money(5125, "KWD").to_stripe()
    with pytest.raises(MoneyError, match=r"steps of 0\.010"):
        Money.parse("5.125", "BHD")


def test_zero_decimal_currencies_have_no_minor_units() -> None:
    assert Money(1000, "JPY").amount == 1000
    assert Money(1000, "KRW").exponent == 0
    with pytest.raises(MoneyError, match="KRW has none"):
        Money.parse("1000.5", "KRW")
