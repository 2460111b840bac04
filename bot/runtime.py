"""The composition root: every part of Keyturn built from its settings, and the registries of
what runs each effect and timer, from what each package declares.

Tests build the same runtime with fakes injected here (a clock, channels, executors, timer
handlers, locks, payments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from bot.channels import Channel
from bot.config import Settings
from bot.dispatcher import MessageSender, OutboxDispatcher, RetryPolicy
from bot.lock_providers import build_lock_providers
from bot.log_redaction import redact_secrets_in_logs, settings_secrets
from bot.media_links import MediaLinks
from bot.metrics import observe_turn
from bot.ops import AlertSender, ConditionReporter, StaffRelay
from bot.ops.turn_failures import FailingTurns
from bot.sandbox.channel import SandboxChannel
from bot.sandbox.payments import SandboxPayments
from bot.timers import TimerRunner
from bot.transports.twilio import TwilioAccount, twilio_channels
from flows.access import (
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
from flows.gps import Gps
from flows.gps.return_check import ReturnCheck
from flows.handoff import TO_STAFF_EFFECT, Handoff, HandoffSettings
from flows.i18n import Translator
from flows.media_types import ID_DOCUMENT_TYPES
from flows.messages import InboundMessage
from flows.notify import Notifier
from flows.ops import REPORT_EFFECT, REPORT_SETTLED_EFFECT, OpsDesk
from flows.outbound import SEND_EFFECT
from flows.payments import IdentityProvider, PaymentProvider
from flows.retention import Retention, RetentionPolicy
from flows.returns import ReturnRules
from flows.timers import TimerHandler
from flows.upload_links import UploadLinks
from locks import LockProvider
from storage.journal import ALERT_EFFECT
from storage.sealing import Sealer

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
    #: GPS (Traccar's REST API and its webhook's secret), None when GPS is off.
    gps: Gps | None = None


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
        telegram = telegram_channel(self.channels) if channel == "telegram" else None
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


def telegram_channel(channels: Mapping[str, Channel]) -> TelegramChannel | None:
    """The Telegram channel, when one runs."""
    channel = channels.get("telegram")
    if channel is None:
        return None
    from bot.transports.telegram import TelegramChannel

    return channel if isinstance(channel, TelegramChannel) else None


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
    gps: Gps | None = None,
) -> Runtime:
    """Every part of Keyturn built from ``settings``; tests inject fakes through the keywords
    (``executors`` and ``timer_handlers`` replace the declared ones of the same kind). GPS is
    Traccar's when its settings are there, ``gps`` (the demo's simulated Traccar) otherwise."""
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
    gps = gps or _traccar(settings)
    journey = _journey(
        settings,
        translator,
        clock,
        access,
        payments,
        identity,
        sealer,
        renter_media,
        take_payments,
        gps_on=gps is not None,
    )
    handoff = Handoff(
        translator,
        clock,
        HandoffSettings(idle=timedelta(minutes=settings.handoff_idle_minutes)),
        sealer=sealer,
    )
    ops = OpsDesk(translator, journey, access, handoff, gps=gps.source if gps else None)
    ops_chat, ops_chat_id = _ops_chat(settings, transports.channels)
    # Without Telegram and an ops chat the ops group's effects do nothing: the sandbox page
    # shows alerts.
    ops_group = ops_chat if ops_chat_id is not None else None
    reporter = ConditionReporter(ops_group, ops_chat_id, translator, sealer, handoff)
    dispatcher, timers = _dispatcher_and_timers(
        settings,
        clock,
        {
            SEND_EFFECT: MessageSender(transports.channels, sealer, clock),
            ALERT_EFFECT: AlertSender(ops_group, ops_chat_id, translator, sealer),
            TO_STAFF_EFFECT: StaffRelay(
                ops_chat, ops_chat_id, handoff, journey.fetch_media, journey.sealer
            ),
            REPORT_EFFECT: reporter,
            REPORT_SETTLED_EFFECT: reporter.settle,
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
        gps=gps,
    )


def _traccar(settings: Settings) -> Gps | None:
    """Traccar's REST client and webhook secret, when its settings are there."""
    if settings.traccar is None:
        return None
    from bot.gps.traccar import TraccarClient

    client = TraccarClient(settings.traccar.api_base, settings.traccar.api_token)
    return Gps(client, settings.traccar.webhook_secret)


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
        clock,
        RetentionPolicy(
            settings.audit_retention_days,
            settings.message_retention_days,
            photo_days=settings.photo_retention_days,
            gps_days=settings.gps_retention_days,
        ),
    )
    return_check = ReturnCheck(journey.notifier, clock, journey.settings.returns)
    timers = TimerRunner(
        clock,
        declared(
            access.timer_handlers(),
            journey_timers(journey),
            retention.timer_handlers(),
            handoff.timer_handlers(),
            return_check.timer_handlers(),
            replaced_by=timer_handlers,
        ),
    )
    return dispatcher, timers


def _ops_chat(
    settings: Settings, channels: Mapping[str, Channel]
) -> tuple[OpsChat | None, int | None]:
    """The operators' Bot API calls where Telegram runs, and the ops group's chat id."""
    telegram = telegram_channel(channels)
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
    *,
    gps_on: bool,
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
        returns=ReturnRules(
            damage_review=timedelta(hours=settings.damage_review_hours),
            gps_on=gps_on,
        ),
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
