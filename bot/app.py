"""The composition root: builds the runtime from settings and wires it into an aiohttp app.

Tests build the same app with fakes injected here (a clock, channels, executors, timer handlers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.channels import Channel
from bot.config import Settings
from bot.dispatcher import EffectExecutor, MessageSender, OutboxDispatcher, RetryPolicy
from bot.keys import ACCESS, CHANNELS, CLOCK, ENGINE, JOURNEY, SEALER, SETTINGS, TRANSLATOR
from bot.lock_providers import build_lock_providers, close_lock_providers
from bot.log_redaction import redact_secrets_in_logs, settings_secrets
from bot.media_links import MediaLinks, add_media_route
from bot.metrics import bearer_matches, exposition, observe_turn
from bot.ops import AlertSender, StaffRelay
from bot.ops.turn_failures import FailingTurns
from bot.payment_routes import setup_return_page
from bot.readiness import READY, Readiness
from bot.sandbox.channel import SandboxChannel
from bot.sandbox.payments import SandboxPayments
from bot.sandbox.routes import setup_sandbox
from bot.timers import TimerRunner
from bot.transports.twilio import ID_DOCUMENT_TYPES, TwilioAccount, twilio_channels
from bot.transports.twilio_routes import setup_twilio
from bot.upload_page import setup_upload_page
from bot.webhook_body import BODY_TIMEOUT
from flows.access import (
    CONFIRM_TIMER,
    DEADLINE_TIMER,
    PROGRAM_TIMER,
    RECONCILE_KEY,
    RECONCILE_TIMER,
    REVOKE_TIMER,
    SET_EFFECT,
    UPDATE_EFFECT,
    AccessCodes,
    AccessPolicy,
)

# The journey with the two entry points the ops desk still calls under their old shapes.
from flows.booking import (
    DatabaseBookingReads,
    Journey,
    JourneySettings,
    journey_executors,
    journey_timers,
)
from flows.clock import Clock, SystemClock
from flows.dialog import DialogSettings, RenterDialog
from flows.engine import ConversationEngine, TurnResult
from flows.handoff import IDLE_TIMER, TO_STAFF_EFFECT, Handoff, HandoffSettings
from flows.i18n import Translator
from flows.messages import InboundMessage
from flows.ops import OpsDesk
from flows.payments import PaymentProvider
from flows.retention import RETENTION_KEY, RETENTION_TIMER, Retention, RetentionPolicy
from flows.timers import TimerHandler
from flows.upload_links import UploadLinks
from locks import LockProvider
from storage.db import close_database, open_database, redacted_url, write_error
from storage.journal import ALERT_EFFECT
from storage.removals import REMOVAL_CHECK_TIMER, REMOVE_EFFECT
from storage.sealing import Sealer
from storage.timers import ensure_timer

if TYPE_CHECKING:
    from bot.ops.chat import OpsChat
    from bot.transports.telegram import TelegramChannel

# Telegram's, Stripe's and Seam's libraries are imported where they are configured, not here: a
# worker that does not use them starts faster and holds tens of MB less.


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    translator: Translator
    engine: ConversationEngine
    dispatcher: OutboxDispatcher
    timers: TimerRunner
    access: AccessCodes
    locks: dict[str, LockProvider]
    journey: Journey
    payments: PaymentProvider
    channels: dict[str, Channel] = field(default_factory=dict)
    twilio: TwilioAccount | None = None
    handoff: Handoff | None = None
    ops: OpsDesk | None = None
    #: The operators' Bot API calls, when Telegram and ``TELEGRAM_OPS_CHAT_ID`` are configured.
    ops_chat: OpsChat | None = None
    #: Links to staff photos for Twilio to fetch, when both Twilio and Telegram are configured.
    media_links: MediaLinks | None = None
    #: Tells ops when renter turns keep failing (the database cannot write).
    failing_turns: FailingTurns | None = None


MAX_ID_BYTES = 8 * 1024 * 1024


class ChannelMedia:
    """Fetches a picture a renter sent, through the channel it came on."""

    def __init__(self, channels: Mapping[str, Channel], twilio: TwilioAccount | None) -> None:
        self.channels = channels
        self.twilio = twilio

    async def __call__(self, channel: str, url: str) -> tuple[bytes, str]:
        transport = self.channels.get(channel)
        if isinstance(transport, SandboxChannel):
            return await transport.fetch_media(url)
        telegram = _telegram(self.channels) if channel == "telegram" else None
        if telegram is not None:
            return await telegram.fetch_photo(url, max_bytes=MAX_ID_BYTES)
        if channel in ("sms", "whatsapp") and self.twilio is not None:
            return await self.twilio.fetch_media(
                url, max_bytes=MAX_ID_BYTES, allowed_types=ID_DOCUMENT_TYPES
            )
        raise ValueError("unsupported")

    async def delete(self, channel: str, url: str) -> None:
        """Delete a picture a renter sent where the channel keeps it. Twilio deletes the media of
        a message on request; Telegram cannot delete a file a user sent to a bot (only its
        ``file_id`` is forgotten, by the caller); the sandbox drops what it still holds."""
        transport = self.channels.get(channel)
        if isinstance(transport, SandboxChannel):
            transport.forget_media(url)
        elif channel in ("sms", "whatsapp") and self.twilio is not None:
            await self.twilio.delete_media(url)


def _telegram(channels: Mapping[str, Channel]) -> TelegramChannel | None:
    """The Telegram channel, when one runs."""
    channel = channels.get("telegram")
    if channel is None:
        return None
    from bot.transports.telegram import TelegramChannel

    return channel if isinstance(channel, TelegramChannel) else None


RUNTIME = web.AppKey("runtime", Runtime)
READINESS = web.AppKey("readiness", Readiness)


class StartupError(RuntimeError):
    """Something the service needs at start-up is not there; the message says what, in one
    line, and carries no secret."""


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    channels: Mapping[str, Channel] | None = None,
    executors: Mapping[str, EffectExecutor] | None = None,
    timer_handlers: Mapping[str, TimerHandler] | None = None,
    sandbox: bool = False,
    locks: Mapping[str, LockProvider] | None = None,
    payments: PaymentProvider | None = None,
    take_payments: bool = True,
) -> Runtime:
    # Before any client is built: PTB logs its base URL, token included, when its Bot is made.
    redact_secrets_in_logs(settings_secrets(settings))
    clock = clock or SystemClock()
    translator = Translator()
    sealer = Sealer(settings.require_encryption_key())
    lock_providers = (
        dict(locks) if locks is not None else build_lock_providers(settings, sealer, clock)
    )
    access = AccessCodes(
        lock_providers, sealer, clock, AccessPolicy(lead_times=settings.lead_times)
    )
    all_channels: dict[str, Channel] = {}
    if sandbox:
        all_channels["sandbox"] = SandboxChannel()
    twilio = None
    if settings.twilio is not None:
        t = settings.twilio
        twilio = TwilioAccount(
            t.account_sid, t.auth_token, public_url=settings.public_url, api_base=t.api_base
        )
        all_channels.update(
            twilio_channels(
                twilio,
                clock=clock,
                sms_from=t.sms_from,
                whatsapp_from=t.whatsapp_from,
                whatsapp_templates=t.whatsapp_templates,
            )
        )
    if settings.telegram is not None:
        from bot.transports.telegram import TelegramChannel

        all_channels["telegram"] = TelegramChannel(
            settings.telegram.bot_token, api_base=settings.telegram.api_base
        )
    media_links = None
    if twilio is not None and settings.telegram is not None:
        # Photos staff post in a renter's topic reach SMS and WhatsApp renters by these links.
        media_links = MediaLinks(settings.public_url, settings.require_encryption_key(), clock)
        twilio.media_links = media_links
    all_channels.update(channels or {})
    identity = None
    if settings.stripe is not None:
        from bot.payments import StripeIdentity, StripePayments

        if payments is None:
            payments = StripePayments(settings.stripe.api_key, api_base=settings.stripe.api_base)
        if settings.identity_method == "stripe":
            identity = StripeIdentity(settings.stripe.api_key, api_base=settings.stripe.api_base)
    if payments is None:
        payments = SandboxPayments(settings.public_url)
    renter_media = ChannelMedia(all_channels, twilio)
    upload_links = None
    if settings.twilio is not None and settings.twilio.sms_from is not None:
        # SMS renters where MMS does not reach Keyturn send their ID through these links.
        upload_links = UploadLinks(settings.public_url, settings.require_encryption_key(), clock)
    journey = Journey(
        translator,
        clock,
        access,
        payments,
        sealer,
        renter_media,
        JourneySettings(
            public_url=settings.public_url,
            identity_method=settings.identity_method,
            id_valid_for=timedelta(days=settings.id_valid_days),
            max_unpaid=settings.max_unpaid_per_renter,
            booking_horizon_days=settings.booking_horizon_days,
            open_lifetime=timedelta(seconds=settings.open_lifetime_seconds),
            take_payments=take_payments,
            sms_from=settings.twilio.sms_from if settings.twilio is not None else None,
            mms_countries=(
                settings.twilio.mms_countries
                if settings.twilio is not None
                else JourneySettings.mms_countries
            ),
        ),
        identity,
        delete_media=renter_media.delete,
        upload_links=upload_links,
        reads=DatabaseBookingReads(),
    )
    handoff = Handoff(
        translator,
        clock,
        HandoffSettings(idle=timedelta(minutes=settings.handoff_idle_minutes)),
        sealer=sealer,
    )
    ops = OpsDesk(translator, journey, access, handoff)
    telegram = _telegram(all_channels)
    ops_chat = None
    if telegram is not None:
        from bot.ops.chat import OpsChat

        ops_chat = OpsChat(telegram)
    ops_chat_id = settings.telegram.ops_chat_id if settings.telegram is not None else None
    dispatcher = OutboxDispatcher(
        clock,
        {
            "send_message": MessageSender(all_channels, sealer, clock),
            # Without Telegram and an ops chat these do nothing: the sandbox page shows alerts.
            ALERT_EFFECT: AlertSender(
                ops_chat if ops_chat_id is not None else None, ops_chat_id, translator, sealer
            ),
            TO_STAFF_EFFECT: StaffRelay(
                ops_chat, ops_chat_id, handoff, journey.fetch_media, journey.sealer
            ),
            SET_EFFECT: access.execute_set,
            REMOVE_EFFECT: access.execute_remove,
            UPDATE_EFFECT: access.execute_update,
            **journey_executors(journey),
            **(executors or {}),
        },
        policy=RetryPolicy(alert_after=settings.alert_after_attempts),
    )
    timers = TimerRunner(
        clock,
        {
            PROGRAM_TIMER: access.on_program_due,
            DEADLINE_TIMER: access.on_deadline,
            CONFIRM_TIMER: access.on_confirm_due,
            REVOKE_TIMER: access.on_revoke_due,
            REMOVAL_CHECK_TIMER: access.on_removal_check,
            RECONCILE_TIMER: access.on_reconcile_due,
            **journey_timers(journey),
            RETENTION_TIMER: Retention(
                clock,
                RetentionPolicy(
                    audit_days=settings.audit_retention_days,
                    message_days=settings.message_retention_days,
                ),
            ).on_due,
            IDLE_TIMER: handoff.on_idle,
            **(timer_handlers or {}),
        },
    )
    dialog = handoff.dialog(
        RenterDialog(
            translator,
            DialogSettings(
                business_name=settings.business_name, support_contact=settings.support_contact
            ),
            journey,
        )
    )

    def committed(earliest_timer: datetime | None) -> None:
        dispatcher.wake()
        if earliest_timer is not None:
            timers.poke(earliest_timer)

    failing_turns = FailingTurns(
        clock, translator, ops_chat if ops_chat_id is not None else None, ops_chat_id
    )

    def turned(message: InboundMessage, result: TurnResult, seconds: float) -> None:
        observe_turn(message, result, seconds)
        failing_turns.succeeded()

    engine = ConversationEngine(
        dialog,
        translator,
        clock,
        on_commit=committed,
        on_turn=turned,
        on_failure=failing_turns.failed,
        sealer=sealer,
    )
    return Runtime(
        settings,
        clock,
        translator,
        engine,
        dispatcher,
        timers,
        access,
        lock_providers,
        journey,
        payments,
        all_channels,
        twilio,
        handoff=handoff,
        ops=ops,
        ops_chat=ops_chat,
        media_links=media_links,
        failing_turns=failing_turns,
    )


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
    app[BODY_TIMEOUT] = float(runtime.settings.body_timeout_seconds)
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(_database)
    settings = runtime.settings
    if runtime.twilio is not None and settings.twilio is not None:
        app.cleanup_ctx.append(_twilio)
        setup_twilio(app, auth_token=settings.twilio.auth_token, public_url=settings.public_url)
    telegram = _telegram(runtime.channels)
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

        setup_stripe_webhook(app, settings.stripe.webhook_secret)
    if workers:
        app.cleanup_ctx.append(_workers)
    setup_return_page(app)
    if runtime.journey.upload_links is not None:
        setup_upload_page(app, runtime.journey.upload_links, MAX_ID_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    seam = runtime.settings.seam
    if seam is not None and seam.webhook_secret:
        from bot.lock_routes import setup_seam_webhook

        setup_seam_webhook(app, seam.webhook_secret)
    if sandbox:
        setup_sandbox(app)
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
