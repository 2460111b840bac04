"""The dialog's declared routing: every state a conversation is stored in is declared, and a
step says whether it understood the message (what the hand-off counts before offering a
person)."""

from __future__ import annotations

from typing import Any

from flows.dialog import DialogState, RenterDialog
from flows.engine import Turn
from flows.i18n import Translator
from tests.conftest import FakeClock
from tests.support import inbound, small_inventory

TRANSLATOR = Translator()


def turn(text: str, state: DialogState, data: dict[str, Any], clock: FakeClock) -> Turn:
    return Turn(
        message=inbound(text, at=clock.now()),
        text=text,
        state=state,
        data=data,
        language="en",
        renter_id=1,
        now=clock.now(),
        translator=TRANSLATOR,
    )


async def test_a_step_says_whether_it_understood(database: str, clock: FakeClock) -> None:
    await small_inventory()
    dialog = RenterDialog(TRANSLATOR)
    started = await dialog.step(turn("hello", DialogState.START, {}, clock))
    assert started.state == DialogState.PICK_LOCATION and started.understood
    locations = started.data

    wrong = await dialog.step(turn("99", DialogState.PICK_LOCATION, locations, clock))
    assert not wrong.understood
    assert wrong.state == DialogState.PICK_LOCATION
    assert "number" in wrong.outcome.replies[0].text

    picked = await dialog.step(turn("1", DialogState.PICK_LOCATION, locations, clock))
    assert picked.understood and picked.state == DialogState.PICK_ASSET

    lost = await dialog.step(turn("what?", DialogState.BOOKED, {}, clock))
    assert not lost.understood
    assert lost.outcome.replies[0].text == TRANSLATOR.text("en", "dialog.not_understood")

    helped = await dialog.step(turn("HELP", DialogState.BOOKED, {}, clock))
    assert helped.understood and helped.state == DialogState.BOOKED


async def test_a_state_stored_before_it_was_declared_gets_the_fallback(
    database: str, clock: FakeClock
) -> None:
    dialog = RenterDialog(TRANSLATOR)
    result = await dialog.step(turn("what?", "retired_state", {}, clock))  # type: ignore[arg-type]
    assert not result.understood
    assert result.state == "retired_state"
