"""``GET /paid/{reference}``: the page a checkout sends the renter back to; and the runner of
payment events, which commits each one once with what it changes."""

from __future__ import annotations

import html

from aiohttp import web

from bot.keys import JOURNEY
from flows.booking import Journey
from flows.i18n import renter_language
from flows.payments import PaymentEvent
from flows.staging import stage_outcome
from storage.models import Booking, Renter
from storage.uow import unit_of_work
from storage.webhooks import claim_event


async def apply_payment_event(journey: Journey, provider: str, event: PaymentEvent) -> bool:
    """Apply a payment provider's event once: its id is recorded in the unit of work that
    commits what it changes, so a redelivery (or a race with one) changes nothing. False when
    it was seen before. Anything else that fails (a constraint the change breaks: another
    booking took the time an extension wanted) rolls it all back, id included, and raises:
    the provider is answered with an error and delivers the event again."""
    now = journey.clock.now()
    async with unit_of_work() as conn:
        if not await claim_event(conn, provider, event.event_id, at=now):
            return False
        outcome = await journey.payment_event(conn, provider, event, now)
        await stage_outcome(conn, outcome, now)
    return True


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
    language = renter_language(renter)
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
