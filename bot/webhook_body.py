"""Reading a webhook's body with a size cap and a time limit, alike on every webhook route."""

from __future__ import annotations

import asyncio

from aiohttp import web

#: Seconds a request body may take to arrive whole (``KEYTURN_BODY_TIMEOUT_SECONDS``).
BODY_TIMEOUT = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 10.0


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes: at once when Content-Length says
    so, else as soon as the bytes read pass it (a body sent without, or lying about, its length
    is not read to its end). A body that has not arrived whole within the app's ``BODY_TIMEOUT``
    is refused with 408, and the connection is closed: a client trickling bytes holds neither a
    connection nor the shutdown for longer than that."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    try:
        async with asyncio.timeout(request.config_dict.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)):
            async for chunk in request.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text="the request body did not arrive in time", headers={"Connection": "close"}
        ) from None
    return bytes(body)
