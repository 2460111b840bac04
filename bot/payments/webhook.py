"""``POST /webhooks/stripe``: signed on the raw body, each event applied once, in any order."""

from __future__ import annotations

import logging

from aiohttp import web
from tortoise.exceptions import IntegrityError

from bot.keys import JOURNEY
from bot.payment_routes import apply_payment_event
from bot.payments.stripe import StripeWebhookInvalid, parse_stripe_event
from bot.webhook_body import read_capped

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024
STRIPE_SECRET = web.AppKey("stripe_webhook_secret", str)
WEBHOOK_PATH = "/webhooks/stripe"


def setup_stripe_webhook(app: web.Application, secret: str) -> None:
    app[STRIPE_SECRET] = secret
    app.router.add_post(WEBHOOK_PATH, stripe_webhook)


async def stripe_webhook(request: web.Request) -> web.Response:
    body = await read_capped(request, MAX_BODY)
    try:
        event = parse_stripe_event(
            body, request.headers.get("Stripe-Signature"), request.app[STRIPE_SECRET]
        )
    except StripeWebhookInvalid:
        raise web.HTTPBadRequest(text="signature refused") from None
    try:
        applied = await apply_payment_event(request.app[JOURNEY], "stripe", event)
    except IntegrityError:
        # Nothing of it was kept (its id neither): Stripe delivers it again, and the retry
        # sees what made it fail (an extension's time taken meanwhile is refunded then).
        log.warning(
            "stripe event %s %s not applied: a constraint refused it", event.kind, event.event_id
        )
        raise web.HTTPInternalServerError(text="not applied, deliver again") from None
    log.info("stripe event %s %s", event.kind, "applied" if applied else "seen before")
    return web.json_response({"received": True})
