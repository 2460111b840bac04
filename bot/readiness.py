"""What ``GET /readyz`` answers: whether this worker's database answers and takes a write.

A full disk, a read-only replica or a lost connection makes every turn fail; a load balancer
and an orchestrator should stop sending work to the worker and say so. The write probe is a
rolled-back insert (``storage.db.can_write``), and its answer is kept for a couple of seconds so
that probes from several balancers, or a flood of requests to ``/readyz``, cost one small
transaction per worker at most that often.
"""

from __future__ import annotations

import asyncio
import time

from storage.db import can_write, ping

READY = "ready"
UNREACHABLE = "database unreachable"
READ_ONLY = "database cannot write"


class Readiness:
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._checked_at = float("-inf")
        self._status = READY
        self._checking = asyncio.Lock()

    async def status(self) -> str:
        """``READY``, or why not; probed again once the last answer is ``ttl`` seconds old."""
        async with self._checking:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._status = await _probe()
                self._checked_at = time.monotonic()
            return self._status


async def _probe() -> str:
    if not await ping():
        return UNREACHABLE
    if not await can_write():
        return READ_ONLY
    return READY
