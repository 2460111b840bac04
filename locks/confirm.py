"""Waiting, within a bound, for a lock to confirm an action it was sent.

Vendors carry out an unlock asynchronously and say how it ended when asked again (Seam's action
attempt, igloohome's bridge job, Nuki's smartlock log). ``settle`` asks until the answer is
known or the wait is over; a question that cannot be answered now (network, 5xx) counts as
"not known yet", because the action was sent and may still happen: it must be polled, never sent
again.

``Budget`` is the time one unlock may take overall, from its start (the caller's own timeout,
less a margin): each step is cut at its end, and what a cut means depends on the step. Before
the unlock is sent nothing happened (``LockUnavailable``: try again); while it is sent the
vendor may have taken it (``LockOutcomeUnknown``: never send it again); while its outcome is
read, the unlock stays pending under its handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from locks.port import LockError, LockOutcomeUnknown, LockUnavailable

T = TypeVar("T")


class ActionFailed(Exception):
    """Raised by a read when the vendor reports the action ended in failure, with the port's
    error for it (which may be ``LockUnavailable``: the lock was offline). ``settle`` does not
    take it for a question that could not be answered."""

    def __init__(self, error: LockError) -> None:
        super().__init__(str(error))
        self.error = error


class Budget:
    """The time left to one call, from its start; unbounded when ``seconds`` is None."""

    def __init__(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._end = None if seconds is None else loop.time() + max(0.0, seconds)

    def left(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - self._loop.time())

    def cap(self, wait: float) -> float:
        left = self.left()
        return wait if left is None else min(wait, left)

    async def before_send(self, what: str, call: Awaitable[T]) -> T:
        """A step before the action is sent: cut at the budget's end, nothing was sent."""
        try:
            async with asyncio.timeout(self.left()):
                return await call
        except TimeoutError as err:
            raise LockUnavailable(f"{what}: no time left before the unlock was sent") from err

    async def send(self, what: str, call: Awaitable[T]) -> T:
        """Sending the action: cut at the budget's end, the vendor may have taken it."""
        try:
            async with asyncio.timeout(self.left()):
                return await call
        except TimeoutError as err:
            raise LockOutcomeUnknown(f"{what}: sent, no answer in time") from err


async def settle(
    read: Callable[[], Awaitable[T | None]],
    *,
    wait: float,
    interval: float,
    budget: Budget | None = None,
) -> T | None:
    """``read()`` until it returns an answer or ``wait`` seconds have passed (at least once,
    if the ``budget`` has time left); None when the action is still pending at the end. Each
    read is cut at the budget's end. Other lock errors are raised."""
    loop = asyncio.get_running_loop()
    budget = budget or Budget(None)
    end = loop.time() + max(0.0, budget.cap(wait))
    while True:
        left = budget.left()
        if left is not None and left <= 0:
            return None
        try:
            async with asyncio.timeout(left):
                answer = await read()
        except (LockUnavailable, TimeoutError):
            answer = None
        if answer is not None:
            return answer
        remaining = end - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
