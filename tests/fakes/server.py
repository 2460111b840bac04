"""Running a fake provider (an aiohttp app) on a free loopback port for the length of a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer


@asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its base URL (no trailing slash)."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def drop_connection(request: web.Request) -> None:
    """Close the connection before the answer is written: the caller gets no answer at all."""
    if request.transport is not None:
        request.transport.close()


class Faults:
    """The next calls' fate: answer with an error status, hang until released, or be carried
    out and lose their answer (``lose_answer_next``).

    ``message_key`` names the field the vendor's error body carries its message in.
    """

    def __init__(self, message_key: str = "message") -> None:
        self.message_key = message_key
        self._plan: list[tuple[str, float | str | None]] = []
        self._released = asyncio.Event()
        self._lost: list[str] = []

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        self._plan.extend([("fail", float(status))] * count)

    def rate_limit_next(self, count: int = 1, retry_after: str | None = None) -> None:
        """The next ``count`` requests are refused for a rate limit (429), with ``Retry-After``
        when given (seconds or an HTTP date)."""
        self._plan.extend([("limit", retry_after)] * count)

    def hang_next(self, count: int = 1, seconds: float = 30.0) -> None:
        self._plan.extend([("hang", seconds)] * count)

    def lose_answer_next(self, path_part: str, count: int = 1) -> None:
        """The next ``count`` requests whose path holds ``path_part`` are carried out, then
        the connection drops before the answer: the caller cannot tell whether they were."""
        self._lost.extend([path_part] * count)

    async def carry_out(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run the request; drop its answer if ``lose_answer_next`` said so."""
        response = await handler(request)
        lost = next((part for part in self._lost if part in request.path), None)
        if lost is not None:
            self._lost.remove(lost)
            drop_connection(request)
        return response

    def release(self) -> None:
        self._released.set()

    async def apply(self) -> web.StreamResponse | None:
        if not self._plan:
            return None
        kind, value = self._plan.pop(0)
        if kind == "fail":
            return web.json_response(
                {self.message_key: "Internal error"}, status=int(float(value or 0))
            )
        if kind == "limit":
            headers = {"Retry-After": str(value)} if value is not None else {}
            return web.json_response(
                {self.message_key: "Too many requests"}, status=429, headers=headers
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), float(value or 0))
        return web.json_response({self.message_key: "Gateway timeout"}, status=504)
