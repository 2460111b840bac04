"""The quote, YES and extension steps driven without a database: the journey reads the
inventory and the bookings in the way from memory, and what the renter is told is asserted."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from flows.access import AccessCodes
from flows.booking import Journey, JourneySettings
from flows.bookings import blocked_range
from flows.dialog import DialogState
from flows.engine import StepResult, Turn
from flows.i18n import Translator
from flows.messages import InboundMessage
from flows.payments import PaymentProvider
from storage.kinds import AlertKind
from storage.models import BookingState
from storage.sealing import Sealer
from tests.unit.memory import (
    AssetRow,
    BookingRow,
    CodeRow,
    LocationRow,
    MemoryBookings,
    MemoryInventory,
    as_asset,
    as_booking,
)

#: Wednesday 10 March 2027, 07:00 in New York.
NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
RENTER = 7
KAYAK = AssetRow(
    id=1,
    code="K1",
    label="Kayak",
    location=LocationRow(buffer_before_minutes=0, buffer_after_minutes=15),
    price_per_hour_cents=1000,
    price_per_day_cents=5000,
    deposit_cents=2000,
)
TRANSLATOR = Translator()


class FixedClock:
    def now(self) -> datetime:
        return NOW


async def no_media(channel: str, url: str) -> tuple[bytes, str]:
    raise ValueError("no media in these tests")


def journey(
    bookings: MemoryBookings,
    settings: JourneySettings | None = None,
    assets: tuple[AssetRow, ...] = (KAYAK,),
) -> Journey:
    """The journey with its reads in memory; nothing here reaches a lock, Stripe or the seal."""
    return Journey(
        TRANSLATOR,
        FixedClock(),
        cast(AccessCodes, None),
        cast(PaymentProvider, None),
        cast(Sealer, None),
        no_media,
        settings,
        inventory=MemoryInventory(list(assets)),
        reads=bookings,
    )


def turn(
    text: str,
    state: str = DialogState.ASSET,
    data: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> Turn:
    message = InboundMessage("sandbox", "+15550100", text, f"m-{text}", now)
    return Turn(message, text, state, data or {}, "en", RENTER, now, TRANSLATOR)


def said(result: StepResult) -> list[str]:
    return [reply.text for reply in result.outcome.replies]


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant given in New York's winter time (before 14 March)."""
    return datetime(2027, 3, day, hour + 5, minute, tzinfo=UTC)


def taken(
    booking_id: int, start: datetime, end: datetime, state: BookingState = BookingState.CONFIRMED
) -> BookingRow:
    window = blocked_range(as_asset(KAYAK), start, end)
    return BookingRow(
        id=booking_id,
        asset_id=KAYAK.id,
        renter_id=99,
        state=state,
        start_at=start,
        end_at=end,
        blocked_from=window.starts_at,
        blocked_until=window.ends_at,
    )


async def test_a_free_slot_is_quoted_in_the_locations_time_and_the_items_currency() -> None:
    result = await journey(MemoryBookings()).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")

    assert result.state == DialogState.QUOTE
    (text,) = said(result)
    assert text.startswith("K1 Kayak at Harbour\n")
    assert "Price: $20.00. Deposit held on your card: $20.00." in text
    assert result.data["start"] == local(11, 10).isoformat()
    assert result.data["end"] == local(11, 12).isoformat()
    assert (result.data["price"], result.data["deposit"]) == (2000, 2000)


async def test_a_rental_across_the_spring_forward_is_quoted_for_its_real_hours() -> None:
    """New York's clocks skip 02:00-03:00 on 14 March 2027: midnight to 06:00 is five hours."""
    hourly = AssetRow(id=2, code="H1", label="Hand cart", price_per_day_cents=0)
    saturday = datetime(2027, 3, 13, 15, 0, tzinfo=UTC)

    result = await journey(MemoryBookings(), assets=(hourly,)).when(
        turn("tomorrow 0-6", now=saturday), "H1", "tomorrow 0-6"
    )

    assert result.state == DialogState.QUOTE
    assert "Price: $50.00." in said(result)[0]
    assert result.data["start"] == datetime(2027, 3, 14, 5, 0, tzinfo=UTC).isoformat()
    assert result.data["end"] == datetime(2027, 3, 14, 10, 0, tzinfo=UTC).isoformat()


async def test_a_taken_slot_offers_the_nearest_free_ones() -> None:
    bookings = MemoryBookings([taken(1, local(11, 9), local(11, 13))])

    result = await journey(bookings).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")

    assert result.state == DialogState.ALTERNATIVES
    assert said(result) == ["That time is taken. The nearest free times are:"]
    slots = [
        (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in result.data["slots"]
    ]
    # the booking takes 09:00-13:15; a slot's own turnaround must end by 09:00
    assert slots == [
        (local(11, 6, 30), local(11, 8, 30)),
        (local(11, 13, 30), local(11, 15, 30)),
        (local(11, 14), local(11, 16)),
    ]
    assert len(result.outcome.replies[0].choices) == 3


async def test_a_cancelled_booking_whose_offline_code_still_works_keeps_its_slot() -> None:
    cancelled = replace(
        taken(1, local(11, 10), local(11, 12), BookingState.CANCELLED),
        codes=(CodeRow(local(11, 9), local(11, 13)),),
    )
    steps = journey(MemoryBookings([cancelled]))

    result = await steps.when(turn("tomorrow 12-14"), "K1", "tomorrow 12-14")
    assert result.state == DialogState.ALTERNATIVES  # the code works until 13:00

    taken_off = replace(cancelled, codes=(CodeRow(local(11, 9), local(11, 13), provider_ref=None),))
    result = await journey(MemoryBookings([taken_off])).when(
        turn("tomorrow 12-14"), "K1", "tomorrow 12-14"
    )
    assert result.state == DialogState.QUOTE


async def test_yes_holds_the_slot_and_says_for_how_long() -> None:
    quoted = await journey(MemoryBookings()).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")

    result = await journey(MemoryBookings()).answer(turn("YES", quoted.state, quoted.data), True)

    assert result.state == DialogState.PAYING
    reference = result.data["booking"]
    assert said(result) == [
        f"Booking {reference}: I am holding K1 for you for 30 minutes. Your payment link follows."
    ]
    assert result.apply is not None  # the hold, made in the turn's unit of work


async def test_yes_on_a_slot_taken_since_the_quote_offers_alternatives() -> None:
    quoted = await journey(MemoryBookings()).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")
    bookings = MemoryBookings([taken(1, local(11, 11), local(11, 12))])

    result = await journey(bookings).answer(turn("YES", quoted.state, quoted.data), True)

    assert result.state == DialogState.ALTERNATIVES
    assert said(result) == ["That time is taken. The nearest free times are:"]
    assert result.apply is None


async def test_yes_with_too_many_unpaid_holds_is_refused() -> None:
    quoted = await journey(MemoryBookings()).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")
    unpaid = [
        BookingRow(
            id=n,
            asset_id=KAYAK.id,
            renter_id=RENTER,
            state=BookingState.AWAITING_PAYMENT,
            start_at=local(20 + n, 10),
            end_at=local(20 + n, 12),
            blocked_from=local(20 + n, 10),
            blocked_until=local(20 + n, 12, 15),
        )
        for n in (1, 2)
    ]

    result = await journey(MemoryBookings(unpaid)).answer(
        turn("YES", quoted.state, quoted.data), True
    )

    assert result.state == DialogState.START
    assert said(result) == [
        "You already have as many bookings waiting for payment as one renter may (2). "
        "Pay or CANCEL one of them before booking another."
    ]
    assert result.apply is None


async def test_yes_for_an_item_taken_out_of_service_since_the_quote_is_refused() -> None:
    quoted = await journey(MemoryBookings()).when(turn("tomorrow 10-12"), "K1", "tomorrow 10-12")

    result = await journey(MemoryBookings(inactive=frozenset({KAYAK.id}))).answer(
        turn("YES", quoted.state, quoted.data), True
    )

    assert result.state == DialogState.QUOTE
    assert result.apply is None
    assert "K1" in said(result)[0]


def confirmed(**fields: Any) -> BookingRow:
    return BookingRow(
        **{
            "id": 5,
            "asset_id": KAYAK.id,
            "renter_id": RENTER,
            "state": BookingState.CONFIRMED,
            "start_at": local(11, 10),
            "end_at": local(11, 12),
            "blocked_from": local(11, 10),
            "blocked_until": local(11, 12, 15),
            "reference": "KCDEFGH",
            "price_cents": 2000,
            **fields,
        }
    )


async def test_an_extension_is_quoted_for_the_extra_hours() -> None:
    mine = confirmed()
    steps = journey(MemoryBookings([mine]))

    result = await steps.extend_quote(turn("EXTEND 2h", DialogState.BOOKED), as_booking(mine), "2h")

    assert result.state == DialogState.EXTEND_QUOTE
    (text,) = said(result)
    assert text.startswith("Extend until ")
    assert text.endswith(" for $20.00? Reply YES or NO.")
    assert result.data["new_end"] == local(11, 14).isoformat()
    assert result.data["price"] == 2000


async def test_an_extension_into_the_next_booking_is_refused_and_the_desk_told() -> None:
    mine = confirmed()
    # the next booking starts at 13:00: two more hours (and the turnaround) would reach it
    steps = journey(MemoryBookings([mine, taken(6, local(11, 13), local(11, 15))]))

    result = await steps.extend_quote(turn("EXTEND 2h", DialogState.BOOKED), as_booking(mine), "2h")

    assert said(result) == [
        "Sorry, someone has booked it right after you, so it cannot be extended."
    ]
    assert [alert.kind for alert in result.outcome.alerts] == [AlertKind.EXTENSION_CONFLICT]


async def test_an_extension_that_only_reaches_the_next_turnaround_start_is_quoted() -> None:
    mine = confirmed()
    # 45 minutes more end at 12:45 and its turnaround at 13:00, when the next one starts
    steps = journey(MemoryBookings([mine, taken(6, local(11, 13), local(11, 15))]))

    result = await steps.extend_quote(
        turn("EXTEND 45m", DialogState.BOOKED), as_booking(mine), "45m"
    )

    assert result.state == DialogState.EXTEND_QUOTE
    assert result.data["price"] == 1000


@pytest.mark.parametrize(
    ("now", "refund"),
    [
        (local(10, 9), "$20.00"),  # 25 hours before
        (local(11, 9), "$10.00"),  # an hour before
    ],
)
async def test_cancel_quotes_the_refund_of_its_window(now: datetime, refund: str) -> None:
    mine = confirmed()
    at_now = Turn(
        InboundMessage("sandbox", "+15550100", "CANCEL", "m-cancel", now),
        "CANCEL",
        DialogState.BOOKED,
        {},
        "en",
        RENTER,
        now,
        TRANSLATOR,
    )

    result = await journey(MemoryBookings([mine])).cancel_quote(at_now, as_booking(mine))

    assert said(result) == [f"Cancel booking KCDEFGH? You get {refund} back. Reply YES or NO."]
