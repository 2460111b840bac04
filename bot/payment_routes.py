"""``GET /paid/{reference}``: the page a checkout sends the renter back to."""

from __future__ import annotations

import html

from aiohttp import web

from bot.keys import JOURNEY
from storage.models import Booking, Renter


def setup_return_page(app: web.Application) -> None:
    app.router.add_get("/paid/{reference}", return_page)


async def return_page(request: web.Request) -> web.Response:
    """Where the checkout sends the renter back: a line in their language, then the chat."""
    reference = request.match_info["reference"][:12]
    booking = await Booking.get_or_none(reference=reference)
    if booking is None:
        raise web.HTTPNotFound(text="no such booking")
    journey = request.app[JOURNEY]
    renter = await Renter.get(id=booking.renter_id)
    language = await journey.notifier.language(renter, None)
    key = "web.checkout_left" if request.query.get("cancelled") else "web.paid"
    text = html.escape(journey.translator.text(language, key, reference=booking.reference))
    page = (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(booking.reference)}</title></head>"
        '<body style="font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;'
        f'padding:0 1rem"><p>{text}</p></body></html>'
    )
    return web.Response(text=page, content_type="text/html")
