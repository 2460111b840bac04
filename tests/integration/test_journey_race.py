"""Two renters say YES to the same slot at the same moment: exactly one of them gets it."""

from __future__ import annotations

import asyncio

from bot.app import Runtime
from storage.models import Booking, BookingState, Message
from tests.conftest import FakeClock
from tests.support import inbound


async def test_two_renters_racing_for_one_slot(runtime: Runtime, clock: FakeClock) -> None:
    first, second = "+15550100001", "+15550100002"
    for address in (first, second):
        await runtime.engine.handle(
            inbound("BOOK T1 tomorrow 10-14", address=address, at=clock.now())
        )
    await asyncio.gather(
        runtime.engine.handle(inbound("YES", address=first, at=clock.now())),
        runtime.engine.handle(inbound("YES", address=second, at=clock.now())),
    )
    holding = await Booking.filter(state=BookingState.AWAITING_PAYMENT)
    assert len(holding) == 1
    replies = {
        address: await Message.filter(conversation__address=address, direction="out")
        .order_by("-id")
        .first()
        for address in (first, second)
    }
    texts = sorted(str(reply.body if reply else "") for reply in replies.values())
    assert any("holding T1" in text for text in texts)
    assert any("That time is taken" in text for text in texts)
