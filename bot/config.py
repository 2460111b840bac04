"""Settings: one typed object read from the environment and validated at start-up.

A missing or malformed value raises SettingsError naming the variable; the CLI prints that one
line and stops. A provider whose credentials are absent is simply not configured (None).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flows.lead_times import LEAD_MINUTES_MAX, LeadTimes
from storage.db import DEFAULT_DATABASE_URL


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    sms_from: str | None
    whatsapp_from: str | None
    api_base: str | None
    #: When set, renters' SMS reach Keyturn through this Messaging Service's inbound URL
    #: (``keyturn connect`` sets it there instead of on the number).
    messaging_service_sid: str | None = None
    #: Approved WhatsApp Content templates by message kind, for messages outside 24 hours.
    whatsapp_templates: Mapping[str, str] = field(default_factory=dict)
    #: Countries (ISO 3166 alpha-2) where an SMS renter is asked for an ID photo by MMS; the
    #: others get an upload link (Twilio receives MMS only on US and Canadian numbers).
    mms_countries: frozenset[str] = frozenset({"US", "CA"})


@dataclass(frozen=True)
class TelegramSettings:
    bot_token: str
    webhook_secret: str
    ops_chat_id: int | None
    api_base: str


@dataclass(frozen=True)
class StripeSettings:
    api_key: str
    #: None only where the command does not receive Stripe's events (``keyturn connect`` and
    #: ``doctor``, which run with ``STRIPE_API_KEY`` alone: connect prints the secret to store).
    webhook_secret: str | None
    api_base: str | None

    def signing_secret(self) -> str:
        if not self.webhook_secret:
            raise SettingsError(
                "STRIPE_WEBHOOK_SECRET: missing (needed because STRIPE_API_KEY is set;"
                " `keyturn connect` prints it when it registers the webhook)"
            )
        return self.webhook_secret


@dataclass(frozen=True)
class SeamSettings:
    api_key: str
    webhook_secret: str | None
    api_base: str | None


@dataclass(frozen=True)
class IgloohomeSettings:
    client_id: str
    client_secret: str
    api_base: str | None


@dataclass(frozen=True)
class NukiSettings:
    api_token: str
    api_base: str | None


@dataclass(frozen=True)
class TraccarSettings:
    """Traccar's REST API (positions, devices, geofences) and the secret its event forwarding
    sends as ``X-Keyturn-Secret``."""

    api_base: str
    api_token: str = field(repr=False)
    webhook_secret: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str
    host: str
    port: int
    public_url: str
    encryption_key: str | None
    business_name: str
    support_contact: str
    identity_method: str
    id_valid_days: int
    audit_retention_days: int
    message_retention_days: int
    twilio: TwilioSettings | None
    telegram: TelegramSettings | None
    stripe: StripeSettings | None
    seam: SeamSettings | None
    igloohome: IgloohomeSettings | None
    nuki: NukiSettings | None
    #: A conversation a person took over goes back to the bot after this long without a message.
    handoff_idle_minutes: int = 30
    #: Bookings one renter may have waiting for payment at once.
    max_unpaid_per_renter: int = 2
    #: How far ahead a booking may start, where the location does not say.
    booking_horizon_days: int = 90
    #: Minutes before a booking its codes are programmed, must be set, and its PIN sent, where
    #: the location does not say.
    code_lead_minutes: int = 1440
    confirm_before_minutes: int = 60
    pin_lead_minutes: int = 60
    #: A request body not received whole within this many seconds is cut off (408).
    body_timeout_seconds: int = 10
    #: Failed attempts at one effect before ops is alerted (the Seam SDK never retries writes).
    alert_after_attempts: int = 5
    #: A remote open not confirmed by the lock within this many seconds is given up.
    open_lifetime_seconds: int = 60
    #: When set, ``/metrics`` answers only ``Authorization: Bearer <token>``.
    metrics_token: str | None = field(default=None, repr=False)
    #: GPS from Traccar (None: no GPS).
    traccar: TraccarSettings | None = None
    #: GPS positions are kept this many days; condition photos this many days after the rental.
    gps_retention_days: int = 30
    photo_retention_days: int = 30
    #: The deposit is released this long after a confirmed return, unless damage was claimed.
    damage_review_hours: int = 12

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, receiving: bool = True) -> Settings:
        """``receiving=False`` is for commands that register or check webhooks without
        receiving any (``connect``, ``doctor``): the signing secrets they would verify with
        may still be missing."""
        reader = _Reader(env)
        port = reader.integer("KEYTURN_PORT", default=8080, low=1, high=65535)
        host = reader.text("KEYTURN_HOST", default="127.0.0.1")
        settings = cls(
            database_url=reader.database_url("KEYTURN_DATABASE_URL"),
            host=host,
            port=port,
            public_url=reader.url("KEYTURN_PUBLIC_URL", default=f"http://{host}:{port}"),
            encryption_key=reader.fernet_key("KEYTURN_ENCRYPTION_KEY"),
            business_name=reader.text("KEYTURN_BUSINESS_NAME", default="Keyturn"),
            support_contact=reader.text("KEYTURN_SUPPORT_CONTACT", default=""),
            identity_method=reader.choice("KEYTURN_IDENTITY_METHOD", ("manual", "stripe")),
            id_valid_days=reader.integer("KEYTURN_ID_VALID_DAYS", default=365, low=0, high=3650),
            audit_retention_days=reader.integer(
                "KEYTURN_AUDIT_RETENTION_DAYS", default=90, low=1, high=3650
            ),
            message_retention_days=reader.integer(
                "KEYTURN_MESSAGE_RETENTION_DAYS", default=90, low=1, high=3650
            ),
            twilio=_twilio(reader),
            telegram=_telegram(reader),
            stripe=_stripe(reader, receiving=receiving),
            seam=_seam(reader),
            igloohome=_igloohome(reader),
            nuki=_nuki(reader),
            handoff_idle_minutes=reader.integer(
                "KEYTURN_HANDOFF_IDLE_MINUTES", default=30, low=1, high=7 * 24 * 60
            ),
            max_unpaid_per_renter=reader.integer(
                "KEYTURN_MAX_UNPAID_PER_RENTER", default=2, low=1, high=100
            ),
            booking_horizon_days=reader.integer(
                "KEYTURN_BOOKING_HORIZON_DAYS", default=90, low=1, high=3650
            ),
            code_lead_minutes=reader.integer(
                "KEYTURN_CODE_LEAD_MINUTES", default=1440, low=1, high=LEAD_MINUTES_MAX
            ),
            confirm_before_minutes=reader.integer(
                "KEYTURN_CONFIRM_BEFORE_MINUTES", default=60, low=1, high=LEAD_MINUTES_MAX
            ),
            pin_lead_minutes=reader.integer(
                "KEYTURN_PIN_LEAD_MINUTES", default=60, low=1, high=LEAD_MINUTES_MAX
            ),
            body_timeout_seconds=reader.integer(
                "KEYTURN_BODY_TIMEOUT_SECONDS", default=10, low=1, high=300
            ),
            alert_after_attempts=reader.integer(
                "KEYTURN_ALERT_AFTER_ATTEMPTS", default=5, low=1, high=1000
            ),
            open_lifetime_seconds=reader.integer(
                "KEYTURN_OPEN_LIFETIME_SECONDS", default=60, low=5, high=600
            ),
            metrics_token=reader.raw("KEYTURN_METRICS_TOKEN"),
            traccar=_traccar(reader),
            gps_retention_days=reader.integer(
                "KEYTURN_GPS_RETENTION_DAYS", default=30, low=1, high=3650
            ),
            photo_retention_days=reader.integer(
                "KEYTURN_PHOTO_RETENTION_DAYS", default=30, low=1, high=3650
            ),
            damage_review_hours=reader.integer(
                "KEYTURN_DAMAGE_REVIEW_HOURS", default=12, low=0, high=24 * 30
            ),
        )
        if settings.identity_method == "stripe" and settings.stripe is None:
            raise SettingsError(
                "KEYTURN_IDENTITY_METHOD: 'stripe' needs STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET"
            )
        for name, lead in (
            ("KEYTURN_CONFIRM_BEFORE_MINUTES", settings.confirm_before_minutes),
            ("KEYTURN_PIN_LEAD_MINUTES", settings.pin_lead_minutes),
        ):
            if lead > settings.code_lead_minutes:
                raise SettingsError(
                    f"{name}: must not exceed KEYTURN_CODE_LEAD_MINUTES"
                    f" ({settings.code_lead_minutes}), got {lead}"
                )
        return settings

    @property
    def lead_times(self) -> LeadTimes:
        """The lead times of a location that sets none of its own."""
        return LeadTimes.of_minutes(
            self.code_lead_minutes, self.confirm_before_minutes, self.pin_lead_minutes
        )

    def require_encryption_key(self) -> str:
        if not self.encryption_key:
            raise SettingsError(
                "KEYTURN_ENCRYPTION_KEY: required to keep PINs and ID images encrypted "
                "(make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            )
        return self.encryption_key

    def started_providers(self) -> list[str]:
        names = ("twilio", "telegram", "stripe", "seam", "igloohome", "nuki")
        return [name for name in names if getattr(self, name) is not None]


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or choices[0]).lower()
        if value not in choices:
            raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def required(self, name: str, because: str) -> str:
        value = self.raw(name)
        if value is None:
            raise SettingsError(f"{name}: missing (needed because {because} is set)")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}: must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {number}")
        return number

    def url(self, name: str, default: str | None = None) -> str:
        value = self.raw(name) or default
        if value is None:
            raise SettingsError(f"{name}: missing")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"{name}: must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def optional_url(self, name: str) -> str | None:
        return self.url(name) if self.raw(name) else None

    def database_url(self, name: str) -> str:
        value = self.raw(name) or DEFAULT_DATABASE_URL
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg"):
            raise SettingsError(
                f"{name}: must start with sqlite:// or postgres://, got scheme {scheme!r}"
            )
        return value

    def fernet_key(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            key = base64.urlsafe_b64decode(value.encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise SettingsError(f"{name}: must be a Fernet key (URL-safe base64 of 32 bytes)")
        return value


def _twilio(r: _Reader) -> TwilioSettings | None:
    sid = r.raw("TWILIO_ACCOUNT_SID")
    if sid is None:
        return None
    if not sid.startswith("AC"):
        raise SettingsError("TWILIO_ACCOUNT_SID: must start with AC")
    sms_from = r.raw("TWILIO_SMS_FROM")
    whatsapp_from = r.raw("TWILIO_WHATSAPP_FROM")
    if whatsapp_from is not None and not whatsapp_from.startswith("whatsapp:"):
        raise SettingsError("TWILIO_WHATSAPP_FROM: must start with 'whatsapp:'")
    if sms_from is None and whatsapp_from is None:
        raise SettingsError(
            "TWILIO_SMS_FROM: missing (set it or TWILIO_WHATSAPP_FROM so Twilio can send)"
        )
    return TwilioSettings(
        account_sid=sid,
        auth_token=r.required("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"),
        sms_from=sms_from,
        whatsapp_from=whatsapp_from,
        api_base=r.optional_url("TWILIO_API_BASE"),
        messaging_service_sid=_messaging_service(r.raw("TWILIO_MESSAGING_SERVICE_SID")),
        whatsapp_templates=_templates(r.raw("TWILIO_WHATSAPP_TEMPLATES")),
        mms_countries=_countries(r.raw("TWILIO_MMS_COUNTRIES")),
    )


def _messaging_service(raw: str | None) -> str | None:
    if raw is not None and not re.fullmatch(r"MG[0-9a-fA-F]{32}", raw):
        raise SettingsError("TWILIO_MESSAGING_SERVICE_SID: must be MG followed by 32 hex digits")
    return raw


def _countries(raw: str | None) -> frozenset[str]:
    """``US,CA`` → {"US", "CA"}; unset (or empty, like every setting) means US and Canada."""
    if raw is None:
        return frozenset({"US", "CA"})
    codes = frozenset(part.strip().upper() for part in raw.split(",") if part.strip())
    if any(not re.fullmatch(r"[A-Z]{2}", code) for code in codes):
        raise SettingsError("TWILIO_MMS_COUNTRIES: expected two-letter country codes, e.g. US,CA")
    return codes


_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")


def _templates(raw: str | None) -> dict[str, str]:
    """``pin=HX…,reminder=HX…`` → {"pin": "HX…", "reminder": "HX…"}."""
    templates: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        kind, sep, sid = (part.strip() for part in item.partition("="))
        if not sep or not kind or not _CONTENT_SID.fullmatch(sid):
            raise SettingsError(
                "TWILIO_WHATSAPP_TEMPLATES: expected kind=HX… pairs separated by commas"
            )
        templates[kind] = sid
    return templates


def _telegram(r: _Reader) -> TelegramSettings | None:
    token = r.raw("TELEGRAM_BOT_TOKEN")
    if token is None:
        return None
    ops_chat = r.raw("TELEGRAM_OPS_CHAT_ID")
    try:
        ops_chat_id = int(ops_chat) if ops_chat is not None else None
    except ValueError:
        raise SettingsError(f"TELEGRAM_OPS_CHAT_ID: must be a chat id, got {ops_chat!r}") from None
    return TelegramSettings(
        bot_token=token,
        webhook_secret=r.required("TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_BOT_TOKEN"),
        ops_chat_id=ops_chat_id,
        api_base=r.url("TELEGRAM_API_BASE", default="https://api.telegram.org"),
    )


def _stripe(r: _Reader, *, receiving: bool) -> StripeSettings | None:
    key = r.raw("STRIPE_API_KEY")
    if key is None:
        return None
    if not key.startswith(("sk_", "rk_")):
        raise SettingsError("STRIPE_API_KEY: must be a secret or restricted key (sk_… or rk_…)")
    return StripeSettings(
        api_key=key,
        webhook_secret=(
            r.required("STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY")
            if receiving
            else r.raw("STRIPE_WEBHOOK_SECRET")
        ),
        api_base=r.optional_url("STRIPE_API_BASE"),
    )


def _seam(r: _Reader) -> SeamSettings | None:
    key = r.raw("SEAM_API_KEY")
    if key is None:
        return None
    if not key.startswith("seam_"):
        raise SettingsError("SEAM_API_KEY: must start with seam_")
    return SeamSettings(
        api_key=key,
        webhook_secret=r.raw("SEAM_WEBHOOK_SECRET"),
        api_base=r.optional_url("SEAM_API_BASE"),
    )


def _igloohome(r: _Reader) -> IgloohomeSettings | None:
    client_id = r.raw("IGLOOHOME_CLIENT_ID")
    if client_id is None:
        return None
    return IgloohomeSettings(
        client_id=client_id,
        client_secret=r.required("IGLOOHOME_CLIENT_SECRET", "IGLOOHOME_CLIENT_ID"),
        api_base=r.optional_url("IGLOOHOME_API_BASE"),
    )


def _nuki(r: _Reader) -> NukiSettings | None:
    token = r.raw("NUKI_API_TOKEN")
    if token is None:
        return None
    return NukiSettings(api_token=token, api_base=r.optional_url("NUKI_API_BASE"))


def _traccar(r: _Reader) -> TraccarSettings | None:
    base = r.optional_url("TRACCAR_API_BASE")
    if base is None:
        return None
    return TraccarSettings(
        api_base=base,
        api_token=r.required("TRACCAR_API_TOKEN", "TRACCAR_API_BASE"),
        webhook_secret=r.required("TRACCAR_WEBHOOK_SECRET", "TRACCAR_API_BASE"),
    )
