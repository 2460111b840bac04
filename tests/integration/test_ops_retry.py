"""The Retry button on an alert starts nothing twice: an effect still pending (maybe running
under a worker's claim right now) is left to its own next attempt, and a code with a push still
pending gets no second push."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from locks import LockUnavailable
from locks.port import CodeRequest, ProgrammedCode
from storage.journal import raise_alert
from storage.models import AccessCode, AccessCodeState, Lock, OutboxEffect
from storage.outbox import claim_due_effects
from tests.integration.ops_harness import MANAGER, Ops, altstadt_booking, buttons, ops_app


class _Unreachable:
    """A provider whose locks take no code (the rest is the simulated one's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        self.creates += 1
        raise LockUnavailable("the bridge does not answer")


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running:
        yield running


async def _pushes(code: AccessCode) -> list[OutboxEffect]:
    effects = await OutboxEffect.filter(kind="access.set").order_by("id")
    return [effect for effect in effects if effect.payload.get("code") == code.id]


async def _retry(ops: Ops, group_key: str, kind: str, message_key: str) -> str:
    await raise_alert(
        None, now=ops.clock.now(), kind=kind, group_key=group_key, message_key=message_key
    )
    await ops.deliver()
    message = ops.ops_messages()[-1]
    [(label, data), _resolve] = buttons(message)
    assert label == "Retry"
    return await ops.press(MANAGER, message, data)


async def test_retry_leaves_a_pending_push_to_its_own_attempt(ops: Ops) -> None:
    down = _Unreachable(ops.runtime.access.providers["simulated"])
    ops.runtime.access.providers["simulated"] = down
    booking = await altstadt_booking(ops)
    code = await AccessCode.filter(booking=booking).first()
    assert code is not None and code.state == AccessCodeState.PROGRAMMING
    [push] = await _pushes(code)
    lock = await Lock.get(id=code.lock_id)

    answer = await _retry(ops, f"code-not-set:{lock.key}", "code_not_set", "ops.code_not_set")
    assert await _pushes(code) == [push], "no second push of the same code"
    assert "still being tried" in answer, answer

    # Another worker has the push claimed and is running it: Retry does not make it due.
    ops.clock.advance(timedelta(minutes=20))
    claims = await claim_due_effects(
        ops.clock.now(), limit=10, lease=timedelta(minutes=2), worker="box-b/7"
    )
    [claimed] = [effect for effect in claims if effect.id == push.id]
    creates = down.creates
    answer = await _retry(ops, f"effect:{push.id}", "effect_failing", "ops.effect_failing")
    await ops.runtime.dispatcher.run_once()
    assert down.creates == creates, "nobody else runs the claimed push"
    await push.refresh_from_db()
    assert push.next_attempt_at == claimed.next_attempt_at
    assert "still being tried" in answer, answer
