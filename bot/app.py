"""The composition root: builds the runtime from settings and wires it into an aiohttp app.

Tests build the same app with fakes injected here (a clock, channels, executors, timer handlers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.channels import Channel
from bot.config import Settings
from bot.dispatcher import MessageSender, OutboxDispatcher, RetryPolicy
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
    RECONCILE_KEY,
    RECONCILE_TIMER,
    AccessCodes,
    AccessPolicy,
)
from flows.booking import (
    DatabaseBookingReads,
    Journey,
    JourneySettings,
    journey_executors,
    journey_timers,
)
from flows.clock import Clock, SystemClock
from flows.dialog import DialogSettings, RenterDialog
from flows.effects import EffectExecutor
from flows.engine import ConversationEngine, Dialog, TurnResult
from flows.handoff import TO_STAFF_EFFECT, Handoff, HandoffSettings
from flows.i18n import Translator
from flows.messages import InboundMessage
from flows.notify import Notifier
from flows.ops import OpsDesk
from flows.outbound import SEND_EFFECT
from flows.payments import IdentityProvider, PaymentProvider
from flows.retention import RETENTION_KEY, RETENTION_TIMER, Retention, RetentionPolicy
from flows.timers import TimerHandler
from flows.upload_links import UploadLinks
from locks import LockProvider
from storage.db import close_database, open_database, redacted_url, write_error
from storage.journal import ALERT_EFFECT
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
    """Every part of Keyturn built from ``settings``; tests inject fakes through the keywords
    (``executors`` and ``timer_handlers`` replace the declared ones of the same kind)."""
    # Before any client is built: PTB logs its base URL, token included, when its Bot is made.
    redact_secrets_in_logs(settings_secrets(settings))
    clock = clock or SystemClock()
    translator = Translator()
    sealer = Sealer(settings.require_encryption_key())
    lock_providers = (
        dict(locks) if locks is not None else build_lock_providers(settings, sealer, clock)
    )
    access = AccessCodes(
        lock_providers,
        sealer,
        clock,
        AccessPolicy(lead_times=settings.lead_times),
        notifier=Notifier(translator, sealer),
    )
    transports = _transports(settings, clock, sandbox=sandbox, extra=channels or {})
    payments, identity = _payments(settings, payments)
    renter_media = ChannelMedia(transports.channels, transports.twilio)
    journey = _journey(
        settings, translator, clock, access, payments, identity, sealer, renter_media, take_payments
    )
    handoff = Handoff(
        translator,
        clock,
        HandoffSettings(idle=timedelta(minutes=settings.handoff_idle_minutes)),
        sealer=sealer,
    )
    ops = OpsDesk(translator, journey, access, handoff)
    ops_chat, ops_chat_id = _ops_chat(settings, transports.channels)
    # Without Telegram and an ops chat the ops group's effects do nothing: the sandbox page
    # shows alerts.
    ops_group = ops_chat if ops_chat_id is not None else None
    dispatcher, timers = _dispatcher_and_timers(
        settings,
        clock,
        {
            SEND_EFFECT: MessageSender(transports.channels, sealer, clock),
            ALERT_EFFECT: AlertSender(ops_group, ops_chat_id, translator, sealer),
            TO_STAFF_EFFECT: StaffRelay(
                ops_chat, ops_chat_id, handoff, journey.fetch_media, journey.sealer
            ),
        },
        access,
        journey,
        handoff,
        executors=executors,
        timer_handlers=timer_handlers,
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
    failing_turns = FailingTurns(clock, translator, ops_group, ops_chat_id)
    engine = _engine(dialog, translator, clock, sealer, dispatcher, timers, failing_turns)
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
        transports.channels,
        transports.twilio,
        handoff=handoff,
        ops=ops,
        ops_chat=ops_chat,
        media_links=transports.media_links,
        failing_turns=failing_turns,
    )


def _dispatcher_and_timers(
    settings: Settings,
    clock: Clock,
    bot_executors: Mapping[str, EffectExecutor],
    access: AccessCodes,
    journey: Journey,
    handoff: Handoff,
    *,
    executors: Mapping[str, EffectExecutor] | None,
    timer_handlers: Mapping[str, TimerHandler] | None,
) -> tuple[OutboxDispatcher, TimerRunner]:
    """The dispatcher and the timer runner, with what each package declares it runs."""
    dispatcher = OutboxDispatcher(
        clock,
        declared(
            bot_executors, access.executors(), journey_executors(journey), replaced_by=executors
        ),
        policy=RetryPolicy(alert_after=settings.alert_after_attempts),
    )
    retention = Retention(
        clock, RetentionPolicy(settings.audit_retention_days, settings.message_retention_days)
    )
    timers = TimerRunner(
        clock,
        declared(
            access.timer_handlers(),
            journey_timers(journey),
            retention.timer_handlers(),
            handoff.timer_handlers(),
            replaced_by=timer_handlers,
        ),
    )
    return dispatcher, timers


def _ops_chat(
    settings: Settings, channels: Mapping[str, Channel]
) -> tuple[OpsChat | None, int | None]:
    """The operators' Bot API calls where Telegram runs, and the ops group's chat id."""
    telegram = _telegram(channels)
    ops_chat = None
    if telegram is not None:
        from bot.ops.chat import OpsChat

        ops_chat = OpsChat(telegram)
    return ops_chat, settings.telegram.ops_chat_id if settings.telegram is not None else None


Registered = TypeVar("Registered")


def declared(
    *tables: Mapping[str, Registered], replaced_by: Mapping[str, Registered] | None = None
) -> dict[str, Registered]:
    """One registry from each package's declared table of kinds; a kind declared twice is a
    wiring mistake and refused. ``replaced_by`` (a test's fakes) replaces declared kinds."""
    registry: dict[str, Registered] = {}
    for table in tables:
        twice = registry.keys() & table.keys()
        if twice:
            raise ValueError(f"declared twice: {sorted(twice)}")
        registry.update(table)
    registry.update(replaced_by or {})
    return registry


@dataclass
class Transports:
    """The renter channels that run, and the Twilio account behind SMS and WhatsApp."""

    channels: dict[str, Channel]
    twilio: TwilioAccount | None
    media_links: MediaLinks | None


def _transports(
    settings: Settings, clock: Clock, *, sandbox: bool, extra: Mapping[str, Channel]
) -> Transports:
    channels: dict[str, Channel] = {}
    if sandbox:
        channels["sandbox"] = SandboxChannel()
    twilio = None
    if settings.twilio is not None:
        t = settings.twilio
        twilio = TwilioAccount(
            t.account_sid, t.auth_token, public_url=settings.public_url, api_base=t.api_base
        )
        channels.update(
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

        channels["telegram"] = TelegramChannel(
            settings.telegram.bot_token, api_base=settings.telegram.api_base
        )
    media_links = None
    if twilio is not None and settings.telegram is not None:
        # Photos staff post in a renter's topic reach SMS and WhatsApp renters by these links.
        media_links = MediaLinks(settings.public_url, settings.require_encryption_key(), clock)
        twilio.media_links = media_links
    channels.update(extra)
    return Transports(channels, twilio, media_links)


def _payments(
    settings: Settings, payments: PaymentProvider | None
) -> tuple[PaymentProvider, IdentityProvider | None]:
    identity = None
    if settings.stripe is not None:
        from bot.payments import StripeIdentity, StripePayments

        if payments is None:
            payments = StripePayments(settings.stripe.api_key, api_base=settings.stripe.api_base)
        if settings.identity_method == "stripe":
            identity = StripeIdentity(settings.stripe.api_key, api_base=settings.stripe.api_base)
    return payments or SandboxPayments(settings.public_url), identity


def _journey(
    settings: Settings,
    translator: Translator,
    clock: Clock,
    access: AccessCodes,
    payments: PaymentProvider,
    identity: IdentityProvider | None,
    sealer: Sealer,
    renter_media: ChannelMedia,
    take_payments: bool,
) -> Journey:
    twilio = settings.twilio
    upload_links = None
    if twilio is not None and twilio.sms_from is not None:
        # SMS renters where MMS does not reach Keyturn send their ID through these links.
        upload_links = UploadLinks(settings.public_url, settings.require_encryption_key(), clock)
    journey_settings = JourneySettings(
        public_url=settings.public_url,
        identity_method=settings.identity_method,
        id_valid_for=timedelta(days=settings.id_valid_days),
        max_unpaid=settings.max_unpaid_per_renter,
        booking_horizon_days=settings.booking_horizon_days,
        open_lifetime=timedelta(seconds=settings.open_lifetime_seconds),
        take_payments=take_payments,
        sms_from=twilio.sms_from if twilio is not None else None,
        mms_countries=twilio.mms_countries if twilio is not None else JourneySettings.mms_countries,
    )
    return Journey(
        translator,
        clock,
        access,
        payments,
        sealer,
        renter_media,
        journey_settings,
        identity,
        delete_media=renter_media.delete,
        upload_links=upload_links,
        reads=DatabaseBookingReads(),
    )


def _engine(
    dialog: Dialog,
    translator: Translator,
    clock: Clock,
    sealer: Sealer,
    dispatcher: OutboxDispatcher,
    timers: TimerRunner,
    failing_turns: FailingTurns,
) -> ConversationEngine:
    def committed(earliest_timer: datetime | None) -> None:
        dispatcher.wake()
        if earliest_timer is not None:
            timers.poke(earliest_timer)

    def turned(message: InboundMessage, result: TurnResult, seconds: float) -> None:
        observe_turn(message, result, seconds)
        failing_turns.succeeded()

    return ConversationEngine(
        dialog,
        translator,
        clock,
        on_commit=committed,
        on_turn=turned,
        on_failure=failing_turns.failed,
        sealer=sealer,
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
