"""``POST /webhooks/stripe``: signed on the raw body, each event applied once, in any order."""

from __future__ import annotations

import html
import logging

from aiohttp import web

from bot.keys import JOURNEY
from bot.payments import StripeWebhookInvalid, parse_stripe_event
from storage.models import Booking, Renter

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024
STRIPE_SECRET = web.AppKey("stripe_webhook_secret", str)


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


def setup_stripe_webhook(app: web.Application, secret: str) -> None:
    app[STRIPE_SECRET] = secret
    app.router.add_post("/webhooks/stripe", stripe_webhook)


async def stripe_webhook(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    body = await request.read()
    if len(body) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
    try:
        event = parse_stripe_event(
            body, request.headers.get("Stripe-Signature"), request.app[STRIPE_SECRET]
        )
    except StripeWebhookInvalid:
        raise web.HTTPBadRequest(text="signature refused") from None
    applied = await request.app[JOURNEY].on_payment_event("stripe", event)
    log.info("stripe event %s %s", event.kind, "applied" if applied else "seen before")
    return web.json_response({"received": True})
