"""Reading a webhook's body with a size cap, the same way on every webhook route."""

from __future__ import annotations

from aiohttp import web


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes: at once when Content-Length says
    so, else as soon as the bytes read pass it (a body sent without, or lying about, its length
    is not read to its end)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)
