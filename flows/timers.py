"""Timers as flow events: a due timer runs its handler, and the handler's outcome is committed
in the same transaction that marks the timer done, so it fires once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.effects import Outcome
from flows.staging import stage_outcome
from storage.models import Timer
from storage.timers import finish_timer
from storage.uow import unit_of_work


@dataclass(frozen=True)
class TimerFired:
    timer_id: int
    kind: str
    key: str | None
    payload: Mapping[str, Any]
    due_at: datetime
    fired_at: datetime


TimerHandler = Callable[[TimerFired], Awaitable[Outcome]]


class UnknownTimer(LookupError):
    pass


async def fire_timer(timer: Timer, handlers: Mapping[str, TimerHandler], now: datetime) -> None:
    handler = handlers.get(timer.kind)
    if handler is None:
        raise UnknownTimer(f"no handler for timer kind {timer.kind!r}")
    event = TimerFired(timer.id, timer.kind, timer.key, dict(timer.payload), timer.due_at, now)
    outcome = await handler(event)
    async with unit_of_work() as conn:
        await finish_timer(conn, timer, now)
        await stage_outcome(conn, outcome, now)
