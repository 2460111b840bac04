"""The aiohttp app: the runtime (bot/runtime.py) wired into routes, start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.keys import (
    ACCESS,
    CHANNELS,
    CLOCK,
    DISPATCHER,
    ENGINE,
    JOURNEY,
    OPS,
    SEALER,
    SETTINGS,
    TIMERS,
    TRANSLATOR,
)
from bot.lock_providers import close_lock_providers
from bot.media_links import add_media_route
from bot.metrics import bearer_matches, exposition
from bot.payment_routes import setup_return_page
from bot.readiness import READY, Readiness
from bot.runtime import MAX_ID_BYTES, Runtime, build_runtime, telegram_channel
from bot.sandbox.routes import setup_sandbox
from bot.transports.twilio_routes import setup_twilio
from bot.upload_page import setup_upload_page
from bot.webhook_body import BODY_TIMEOUT
from flows.access import RECONCILE_KEY, RECONCILE_TIMER
from flows.retention import RETENTION_KEY, RETENTION_TIMER
from storage.db import close_database, open_database, redacted_url, write_error
from storage.timers import ensure_timer

__all__ = [
    "MAX_ID_BYTES",
    "READINESS",
    "RUNTIME",
    "Runtime",
    "StartupError",
    "build_runtime",
    "create_app",
]

RUNTIME = web.AppKey("runtime", Runtime)
READINESS = web.AppKey("readiness", Readiness)


class StartupError(RuntimeError):
    """Something the service needs at start-up is not there; the message says what, in one
    line, and carries no secret."""


def create_app(runtime: Runtime, *, sandbox: bool = False, workers: bool = True) -> web.Application:
    # Webhook routes refuse large bodies themselves; the sandbox accepts an ID photo.
    app = web.Application(client_max_size=MAX_ID_BYTES * 2)
    app[RUNTIME] = runtime
    app[SETTINGS] = runtime.settings
    app[CLOCK] = runtime.clock
    app[ENGINE] = runtime.engine
    app[TRANSLATOR] = runtime.translator
    app[ACCESS] = runtime.access
    app[JOURNEY] = runtime.journey
    app[SEALER] = runtime.journey.sealer
    app[CHANNELS] = runtime.channels
    if runtime.ops is not None:
        app[OPS] = runtime.ops
    app[TIMERS] = runtime.timers
    app[DISPATCHER] = runtime.dispatcher
    app[BODY_TIMEOUT] = float(runtime.settings.body_timeout_seconds)
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(_database)
    settings = runtime.settings
    if runtime.twilio is not None and settings.twilio is not None:
        app.cleanup_ctx.append(_twilio)
        setup_twilio(app, auth_token=settings.twilio.auth_token, public_url=settings.public_url)
    telegram = telegram_channel(runtime.channels)
    if telegram is not None and settings.telegram is not None:
        from bot.ops.commands import OpsUpdates
        from bot.transports.telegram_routes import setup_telegram

        handlers = []
        if runtime.ops is not None and runtime.handoff is not None and runtime.ops_chat:
            handlers.append(
                OpsUpdates(
                    runtime.ops, runtime.ops_chat, runtime.handoff, settings.telegram.ops_chat_id
                )
            )
        setup_telegram(
            app,
            telegram,
            secret=settings.telegram.webhook_secret,
            public_url=settings.public_url,
            handlers=handlers,
        )
        if runtime.media_links is not None:
            add_media_route(app, runtime.media_links, telegram.fetch_photo)
    if settings.stripe is not None:
        from bot.payments.webhook import setup_stripe_webhook

        setup_stripe_webhook(app, settings.stripe.signing_secret())
    if workers:
        app.cleanup_ctx.append(_workers)
    setup_return_page(app)
    if runtime.journey.upload_links is not None:
        setup_upload_page(app, runtime.journey.upload_links, MAX_ID_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if runtime.gps is not None:
        # Without Traccar settings (and outside the demo) there is no GPS: the route is a 404.
        from bot.gps.routes import setup_traccar_webhook

        setup_traccar_webhook(app, runtime.gps.webhook_secret)
        app.cleanup_ctx.append(_gps)
    seam = runtime.settings.seam
    if seam is not None and seam.webhook_secret:
        from bot.lock_routes import setup_seam_webhook

        setup_seam_webhook(app, seam.webhook_secret)
    if sandbox:
        setup_sandbox(app)
        _sandbox_gps(app, runtime)
        app.router.add_get("/", to_sandbox)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].database_url
    try:
        await open_database(url)
        problem = await write_error()
    except Exception as err:
        problem = _one_line(err)
    if problem is not None:
        await close_database()
        raise StartupError(f"the database {redacted_url(url)} cannot be used: {problem}")
    yield
    await close_database()


async def _twilio(app: web.Application) -> AsyncIterator[None]:
    account = app[RUNTIME].twilio
    assert account is not None
    await account.start()
    yield
    await account.close()


async def _workers(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    now = runtime.clock.now()
    await ensure_timer(kind=RECONCILE_TIMER, key=RECONCILE_KEY, due_at=now, now=now)
    await ensure_timer(kind=RETENTION_TIMER, key=RETENTION_KEY, due_at=now, now=now)
    runtime.dispatcher.start()
    runtime.timers.start()
    yield
    # What this worker claimed and did not finish is released, not left leased to it.
    await runtime.timers.stop()
    await runtime.dispatcher.stop()
    await close_lock_providers(runtime.locks)
    for client in (runtime.payments, runtime.journey.identity):
        closing = getattr(client, "close", None)
        if closing is not None:
            await closing()


def _sandbox_gps(app: web.Application, runtime: Runtime) -> None:
    """The sandbox page's GPS control, when GPS is the demo's simulated Traccar."""
    from bot.gps.simulated import SimulatedTraccar

    if runtime.gps is not None and isinstance(runtime.gps.source, SimulatedTraccar):
        from bot.sandbox.gps import setup_sandbox_gps

        setup_sandbox_gps(app, runtime.gps.source)


async def _gps(app: web.Application) -> AsyncIterator[None]:
    """At start-up the inventory's trackers and geofences are checked against Traccar (a
    problem is logged, never a reason not to start); at shut-down its client is closed."""
    gps = app[RUNTIME].gps
    assert gps is not None
    from bot.gps.check import warn_about_trackers

    # In the background: an unreachable Traccar delays nothing (each call has its timeout).
    checking = asyncio.create_task(warn_about_trackers(gps.source))
    yield
    checking.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await checking
    closing = getattr(gps.source, "close", None)
    if closing is not None:
        await closing()


async def to_sandbox(request: web.Request) -> web.Response:
    raise web.HTTPFound("/sandbox")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    status = await request.app[READINESS].status()
    return web.json_response({"status": status}, status=200 if status == READY else 503)


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


async def metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token is not None and not bearer_matches(request.headers.get("Authorization", ""), token):
        raise web.HTTPUnauthorized(
            text="a metrics token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    body = await exposition(request.app[CLOCK].now())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
