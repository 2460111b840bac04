"""A whole rental in which the commit of every kind of handler is lost once.

Each runner commits a handler's state change and its effects in one unit of work. Here the first
commit from each runner's call site fails at the last moment, as a crash before the commit or a
claim lost to another worker would: everything the handler did is rolled back. Then the rental
goes on the way the world would carry it on: a renter told "send it again" sends it again, Stripe
delivers its event again after a 500, the timer runner and the dispatcher try again after their
backoff. At the end every booking and code must be in its right state, each renter message must
have arrived once, and every ended code must be off its lock.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient

import bot.dispatcher
import flows.engine
import storage.uow
from storage.models import (
    AccessCode,
    AccessCodeState,
    Booking,
    BookingState,
    EffectState,
    IdentityCheck,
    Lock,
    OutboxEffect,
    Payment,
    Timer,
)
from tests.e2e.test_channel_journeys import (
    END,
    PHONE,
    START,
    World,
    approve,
    checkout_session,
    return_confirmed,
    world,
)
from tests.fakes.stripe import WebhookDelivery

__all__ = ["world"]  # the fixture, imported for these tests

ROOT = Path(__file__).resolve().parents[2]
NOT_STORED = "Sorry, we could not take your message just now"
#: Frames that belong to the unit of work itself, not to the runner that opened it.
PLUMBING = {"storage/uow.py", "flows/staging.py"}


class CommitLost(RuntimeError):
    """The commit that never happened."""


class LoseFirstCommits:
    """Stands in for the transaction under ``storage.uow.unit_of_work``: the first unit of work
    opened from each runner call site rolls back at its end instead of committing."""

    def __init__(self, real: Callable[..., AbstractAsyncContextManager[BaseDBAsyncClient]]):
        self.real = real
        self.lost: Counter[str] = Counter()
        self.committed: Counter[str] = Counter()

    def __call__(self, *args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        return self._transaction(self._site(), *args, **kwargs)

    @asynccontextmanager
    async def _transaction(self, site: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with self.real(*args, **kwargs) as conn:
            yield conn
            if not self.lost[site]:
                self.lost[site] += 1
                raise CommitLost(site)
        self.committed[site] += 1

    @staticmethod
    def _site() -> str:
        for frame in inspect.stack()[2:]:
            path = Path(frame.filename)
            if not path.is_relative_to(ROOT):
                continue
            rel = path.relative_to(ROOT).as_posix()
            if rel in PLUMBING or rel.startswith(".venv/"):
                continue
            site = f"{rel}:{frame.function}"
            # One loss per kind of effect or timer, not one for the whole dispatcher.
            for name in ("effect", "timer"):
                kind = getattr(frame.frame.f_locals.get(name), "kind", None)
                if kind is not None:
                    return f"{site}:{kind}"
            return site
        return "unknown"

    def single_statement(self, write: Callable[..., Any], site: str) -> Callable[..., Any]:
        """``write`` commits by itself, in one statement with no unit of work around it (a
        turn that only answers, a send's completion on PostgreSQL): its first call at ``site``
        is lost the same way, before anything is written."""

        async def lose_first(*args: Any, **kwargs: Any) -> Any:
            if not self.lost[site]:
                self.lost[site] += 1
                raise CommitLost(site)
            result = await write(*args, **kwargs)
            self.committed[site] += 1
            return result

        return lose_first


@pytest.fixture
def lost(world: World, monkeypatch: pytest.MonkeyPatch) -> LoseFirstCommits:
    injector = LoseFirstCommits(storage.uow.in_transaction)
    monkeypatch.setattr(storage.uow, "in_transaction", injector)
    for module, name, site in (
        (flows.engine, "save_answered_turn", "flows/engine.py:_store:answered"),
        (bot.dispatcher, "mark_sent", "bot/dispatcher.py:_attempt:send_message"),
    ):
        monkeypatch.setattr(module, name, injector.single_statement(getattr(module, name), site))
    return injector


async def say(world: World, text: str) -> list[str]:
    """The renter texts; told it was not taken, they send it again, as a person would."""
    for _ in range(3):
        form, headers = world.twilio.inbound(from_=PHONE, body=text)
        response = await world.client.post("/webhooks/twilio", data=form, headers=headers)
        assert response.status == 200
        if NOT_STORED not in await response.text():
            return await inbox(world)
    raise AssertionError(f"{text!r} was never taken")


async def send_id(world: World, content: bytes) -> list[str]:
    for _ in range(3):
        url = world.twilio.add_media(content, "image/jpeg")
        form, headers = world.twilio.inbound(from_=PHONE, media=[(url, "image/jpeg")])
        response = await world.client.post("/webhooks/twilio", data=form, headers=headers)
        assert response.status == 200
        if NOT_STORED not in await response.text():
            return await inbox(world)
    raise AssertionError("the ID photo was never taken")


SEEN: dict[int, int] = {}


async def inbox(world: World) -> list[str]:
    """What reached the phone since the last look, once the workers have caught up: a timer or
    an effect whose commit was lost is tried again after its backoff, so time moves on a little."""
    for _ in range(3):
        await world.run()
        world.clock.advance(timedelta(minutes=3))
    await world.run()
    mine = [m.body or "" for m in world.twilio.sent if m.to == PHONE]
    seen = SEEN.get(id(world), 0)
    SEEN[id(world)] = len(mine)
    return mine[seen:]


async def stripe_delivers(world: World, delivery: WebhookDelivery) -> None:
    """Stripe posts an event until it gets a 2xx."""
    for _ in range(3):
        if await world.stripe_webhook(delivery) == 200:
            return
    raise AssertionError("Stripe's event was never taken")


async def test_a_rental_survives_losing_the_commit_of_every_kind_of_handler(
    world: World, lost: LoseFirstCommits
) -> None:
    [quote] = await say(world, "BOOK T1 tomorrow 10-14")
    assert "Reply YES" in quote
    holding, link = await say(world, "YES")
    assert "holding T1" in holding
    booking = await Booking.get()
    await stripe_delivers(world, world.stripe.complete(checkout_session(world, link)))
    [ask_id] = await inbox(world)
    assert f"Payment received for {booking.reference}" in ask_id
    [thanks] = await send_id(world, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    assert "checking your ID" in thanks
    check = await IdentityCheck.get(booking=booking)
    decided = False
    for _ in range(3):  # the operator presses Approve again after an error
        try:
            decided = await approve(world, check.id)
            break
        except CommitLost:
            continue
    assert decided
    [confirmed] = await inbox(world)
    assert f"Booking {booking.reference} is confirmed" in confirmed

    await world.at(START - timedelta(hours=1))
    [pin_message] = await inbox(world)
    assert f"Your door codes for booking {booking.reference}" in pin_message
    pin = pin_message.split("Trailer Bay 1: ")[1][:6]
    bay = await Lock.get(key="harbor-t1")
    await world.at(START + timedelta(minutes=5))
    await inbox(world)
    assert await world.keypad().try_keypad(bay.device_id, pin, world.clock.now())
    await world.at(END)
    texts = await inbox(world)
    assert any("Thank you for renting with us!" in text for text in texts), texts
    await world.at(END + timedelta(minutes=15))
    await inbox(world)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"

    returned = world.clock.now()
    for _ in range(3):  # the renter's DONE is taken again after an error
        try:
            await return_confirmed(world, booking, returned)
            break
        except CommitLost:
            continue
    await world.at(returned + world.runtime.journey.settings.returns.damage_review)
    texts = await inbox(world)
    assert [t for t in texts if "Deposit of $100.00: released" in t], texts

    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    assert (await Payment.get(booking=booking, purpose="rental")).status == "paid"
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"
    codes = await AccessCode.filter(booking=booking)
    assert len(codes) == 2 and {c.state for c in codes} == {AccessCodeState.REMOVED}
    for code in codes:
        lock = await Lock.get(id=code.lock_id)
        assert not await world.keypad().try_keypad(lock.device_id, pin, END), "off its lock"
    assert not await OutboxEffect.filter(state=EffectState.PENDING).exists()
    assert not await Timer.filter(kind__startswith="access.revoke", state="pending").exists()
    sent = [m.body for m in world.twilio.sent if m.to == PHONE]
    assert len(sent) == len(set(sent)), "each message reached the renter once"

    # Every kind of runner lost a commit and then made it.
    kinds = {site.split(":")[0] for site in lost.lost}
    assert {
        "flows/engine.py",
        "bot/payment_routes.py",
        "bot/dispatcher.py",
        "flows/timers.py",
        "tests/e2e/test_channel_journeys.py",  # the operator's decision, as the ops bot runs it
    } <= kinds, lost.lost
    for effect in ("send_message", "payment.checkout", "access.set", "access.remove"):
        assert f"bot/dispatcher.py:_attempt:{effect}" in lost.lost
    assert "bot/dispatcher.py:_attempt:payment.release_deposit" in lost.lost
    for timer in ("booking.deliver_pin", "booking.end", "access.revoke", "booking.damage_review"):
        assert f"flows/timers.py:fire_timer:{timer}" in lost.lost
    # A failed attempt whose record was lost is made good by a later attempt of that effect
    # (the claim runs out and the effect runs again), not necessarily by another failure.
    assert all(
        lost.committed[site] or lost.committed[site.replace(":_failed:", ":_attempt:")]
        for site in lost.lost
    ), (lost.lost, lost.committed)
