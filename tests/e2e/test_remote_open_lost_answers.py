"""An unlock that may have reached the lock is never sent a second time, whatever was lost.

The renter writes OPEN by signed Twilio webhook; the Trailer Bay 1 lock is a device on the fake
Seam, Nuki or igloohome cloud (reached through the real adapters), the Main gate a simulated lock
that opens at once. What is lost: the vendor's answer to the unlock (the connection drops once
the vendor has taken it), the attempt itself (cut by the dispatcher's timeout for an effect), or
the commit that records an unlock the lock confirmed. Each time the renter is told the lock has
not confirmed (try the handle, use the code or AGENT), and the vendor sees one unlock.

Nuki's smartlock log counts only the unlock Keyturn asked for: a person unlocking at the door
meanwhile is not taken for its confirmation.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient

import storage.uow
from storage.models import Lock, OpsAlert, OutboxEffect
from tests.e2e.test_channel_journeys import TwilioRenter, World, world
from tests.e2e.test_remote_open_confirmation import (
    BAY_UNCONFIRMED,
    IGLOO_LOCK,
    NUKI_LOCK,
    igloohome,
    nuki,
)
from tests.e2e.test_remote_open_outage import (
    ASKED,
    BAY_OPEN,
    GATE_OPEN,
    UNLOCK,
    pass_time,
    renting,
    seam,
)
from tests.fakes.igloohome import FakeIgloohome
from tests.fakes.nuki import FakeNuki
from tests.fakes.seam import FakeSeam

__all__ = ["igloohome", "nuki", "seam", "world"]  # the fixtures, imported for these tests

#: Nuki log triggers: a person turning the knob, the lock's button.
MANUAL, BUTTON = 1, 2


async def ask_to_open(world: World) -> tuple[TwilioRenter, list[str]]:
    renter = TwilioRenter(world)
    await renting(world, renter)
    asking = await renter.say("OPEN")
    assert asking[0].startswith(ASKED) and GATE_OPEN in asking, asking
    assert BAY_OPEN not in asking
    return renter, asking


def bay_messages(texts: list[str]) -> list[str]:
    return [text for text in texts if "Trailer Bay 1" in text and not text.startswith(ASKED)]


def vendor_unlocks(world: World, vendor: str, fake: Any) -> int:
    if vendor == "seam":
        seam_fake: FakeSeam = fake
        return seam_fake.requests.count(UNLOCK)
    if vendor == "nuki":
        nuki_fake: FakeNuki = fake
        return len([a for a in nuki_fake.actions if a == (NUKI_LOCK, 1)])
    igloo: FakeIgloohome = fake
    return len([j for j in igloo.jobs if j["deviceId"] == IGLOO_LOCK])


def lose_the_unlock_answer(vendor: str, fake: Any) -> None:
    if vendor == "seam":
        fake.lose_answer_next(UNLOCK[1])
    elif vendor == "nuki":
        fake.faults.lose_answer_next(f"/smartlock/{NUKI_LOCK}/action")
    else:
        fake.faults.lose_answer_next(f"/devices/{IGLOO_LOCK}/jobs/bridges/")


async def lost_answer_is_not_confirmed_and_never_sent_again(
    world: World, vendor: str, fake: Any
) -> None:
    lose_the_unlock_answer(vendor, fake)
    renter, asking = await ask_to_open(world)

    await pass_time(world, 60)
    told = bay_messages(asking + await renter.inbox())
    assert len(told) == 1 and told[0].startswith(BAY_UNCONFIRMED), told
    assert vendor_unlocks(world, vendor, fake) == 1, "the vendor took it once"
    [alert] = await OpsAlert.filter(kind="remote_open_unconfirmed")
    assert alert.params["lock"] == "Trailer Bay 1"
    assert await OpsAlert.filter(kind="remote_open_failed") == []

    await pass_time(world, 600, step=60)
    assert await renter.inbox() == []
    assert vendor_unlocks(world, vendor, fake) == 1, "never sent again"


async def test_a_seam_unlock_whose_answer_was_lost_is_never_sent_again(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    await lost_answer_is_not_confirmed_and_never_sent_again(world, "seam", seam[0])


async def test_a_nuki_unlock_whose_answer_was_lost_is_never_sent_again(
    world: World, nuki: FakeNuki
) -> None:
    await lost_answer_is_not_confirmed_and_never_sent_again(world, "nuki", nuki)


async def test_an_igloohome_unlock_whose_answer_was_lost_is_never_queued_again(
    world: World, igloohome: FakeIgloohome
) -> None:
    await lost_answer_is_not_confirmed_and_never_sent_again(world, "igloohome", igloohome)


async def test_an_attempt_keeps_within_the_dispatchers_timeout_and_is_never_cut_once_sent(
    world: World, seam: tuple[FakeSeam, str]
) -> None:
    """Seam would be polled for longer than the dispatcher lets an effect run; the attempt
    stops polling in time and hands the pending unlock on, instead of being cut and sent again.
    (The timeouts are scaled down: 2 s for an effect, 1 s for an attempt.)"""
    fake, _ = seam
    world.runtime.dispatcher.effect_timeout = 2.0
    world.runtime.journey.remote_opens.unlock_budget = 1.0
    world.runtime.locks["seam"].unlock_wait = 5.0  # type: ignore[attr-defined]
    fake.unlock_outcome = "pending"
    renter, asking = await ask_to_open(world)

    await pass_time(world, 60)
    told = bay_messages(asking + await renter.inbox())
    assert len(told) == 1 and told[0].startswith(BAY_UNCONFIRMED), told
    assert fake.requests.count(UNLOCK) == 1
    await pass_time(world, 600, step=60)
    assert fake.requests.count(UNLOCK) == 1, "never sent again"


class CommitLost(RuntimeError):
    """The commit that never happened."""


class LoseOpenCommit:
    """Stands in for the transaction under ``storage.uow.unit_of_work``: the first one the
    dispatcher opens to record the open of ``lock_id`` rolls back at its end."""

    def __init__(
        self, real: Callable[..., AbstractAsyncContextManager[BaseDBAsyncClient]], lock_id: int
    ) -> None:
        self.real = real
        self.lock_id = lock_id
        self.lost = 0

    def __call__(self, *args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        return self._transaction(self._recording_the_open(), *args, **kwargs)

    @asynccontextmanager
    async def _transaction(self, lose: bool, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with self.real(*args, **kwargs) as conn:
            yield conn
            if lose and not self.lost:
                self.lost += 1
                raise CommitLost("the open's result")

    def _recording_the_open(self) -> bool:
        for frame in inspect.stack()[2:6]:
            effect = frame.frame.f_locals.get("effect")
            if (
                frame.function == "_attempt"
                and isinstance(effect, OutboxEffect)
                and effect.kind == "lock.open"
                and effect.payload.get("lock") == self.lock_id
            ):
                return True
        return False


async def test_an_unlock_whose_result_was_not_committed_is_never_sent_again(
    world: World, seam: tuple[FakeSeam, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = seam
    world.runtime.locks["seam"].unlock_wait = 0.1  # type: ignore[attr-defined]
    bay = await Lock.get(key="harbor-t1")
    lose = LoseOpenCommit(storage.uow.in_transaction, bay.id)
    monkeypatch.setattr(storage.uow, "in_transaction", lose)
    renter, asking = await ask_to_open(world)

    await pass_time(world, 60)
    assert lose.lost == 1, "the confirmed unlock's commit was lost"
    assert fake.requests.count(UNLOCK) == 1, "not sent again"
    told = bay_messages(asking + await renter.inbox())
    assert len(told) == 1 and told[0].startswith(BAY_UNCONFIRMED), told
    await pass_time(world, 600, step=60)
    assert fake.requests.count(UNLOCK) == 1


@pytest.mark.parametrize("trigger", [MANUAL, BUTTON])
async def test_a_person_unlocking_a_nuki_lock_is_not_taken_for_keyturns_unlock(
    world: World, nuki: FakeNuki, trigger: int
) -> None:
    nuki.action_outcome = "never"  # the lock never carries out Keyturn's unlock
    renter, asking = await ask_to_open(world)
    nuki.add_log_entry(NUKI_LOCK, 1, state=0, trigger=trigger)  # someone at the door

    await pass_time(world, 60)
    told = bay_messages(asking + await renter.inbox())
    assert len(told) == 1 and told[0].startswith(BAY_UNCONFIRMED), told
    assert nuki.actions == [(NUKI_LOCK, 1)]
