"""Waiting, within a bound, for a lock to confirm an action it was sent.

Vendors carry out an unlock asynchronously and say how it ended when asked again (Seam's action
attempt, igloohome's bridge job, Nuki's smartlock log). ``settle`` asks until the answer is
known or the wait is over; a question that cannot be answered now (network, 5xx) counts as
"not known yet", because the action was sent and may still happen: it must be polled, never sent
again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from locks.port import LockError, LockUnavailable

T = TypeVar("T")


class ActionFailed(Exception):
    """Raised by a read when the vendor reports the action ended in failure, with the port's
    error for it (which may be ``LockUnavailable``: the lock was offline). ``settle`` does not
    take it for a question that could not be answered."""

    def __init__(self, error: LockError) -> None:
        super().__init__(str(error))
        self.error = error


async def settle(
    read: Callable[[], Awaitable[T | None]], *, wait: float, interval: float
) -> T | None:
    """``read()`` until it returns an answer or ``wait`` seconds have passed (at least once);
    None when the action is still pending at the end. Other lock errors are raised."""
    loop = asyncio.get_running_loop()
    end = loop.time() + max(0.0, wait)
    while True:
        try:
            answer = await read()
        except LockUnavailable:
            answer = None
        if answer is not None:
            return answer
        remaining = end - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
