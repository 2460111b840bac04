"""A fake Stripe API (https://docs.stripe.com/api) for driving the real ``stripe`` SDK.

It speaks the v1 routes Keyturn uses, the way the SDK 16.1 calls them: form-encoded bodies in
Stripe's bracket notation (``line_items[0][price_data][currency]=eur``, ``metadata[booking]=...``),
reads by GET with query parameters, ``Authorization: Bearer sk_...``, ``Idempotency-Key``, and
Stripe's error body ``{"error": {"type", "message", "code", "param"}}``. It refuses what Stripe
refuses:

- no or wrong API key → 401;
- an unknown parameter, a missing required one, a malformed value (not an integer, a bad currency,
  a URL that is not one, metadata over Stripe's limits) → 400;
- a Checkout ``expires_at`` less than 30 minutes or more than 24 hours after creation → 400;
- the same ``Idempotency-Key`` with other parameters → 400 ``idempotency_error`` (with the same
  ones, the first answer is replayed with ``Idempotent-Replayed: true``);
- capturing an intent that is not ``requires_capture``, cancelling one that is ``canceled`` or
  ``succeeded`` → 400 ``payment_intent_unexpected_state``; capturing more than is capturable,
  refunding more than is left → 400; expiring a session that is not ``open`` → 400;
- an unknown object → 404 ``resource_missing``; a declined saved card → 402 ``card_error``
  (``card_declined``, or ``authentication_required`` for a card whose bank wants the renter —
  ``AUTHENTICATION_CARD`` paid at Checkout, or ``decline``), the intent left
  ``requires_payment_method`` with its ``last_payment_error``.

A Checkout Session's ``url`` is served by the fake (``{base}/pay/cs_test_...``). What the renter
does on that page is a test call: ``complete(session_id)`` pays it (a hold leaves its
PaymentIntent ``requires_capture`` and the session ``payment_status="unpaid"``, as Stripe does)
and returns the signed ``checkout.session.completed`` delivery; ``expire``, ``verify_identity``
and ``identity_needs_input`` do the same for their events. Every state change records the event
Stripe would send in ``events``; ``delivery(type)`` signs the latest one like Stripe
(``Stripe-Signature: t=...,v1=HMAC-SHA256(secret, f"{t}.{body}")``). ``fail_next`` and
``hang_next`` make the next requests fail or hang; ``calls`` records every request. A read
(``GET /v1/payment_intents/{id}``, ...) answers the object as it is now: an off-session charge
left ``processing`` (``process_slowly``) reads ``succeeded``, or ``requires_payment_method``
with its ``last_payment_error``, once ``finish_processing`` decided it.

Webhook endpoints (``/v1/webhook_endpoints``: create, list, retrieve, update, delete) are kept in
``webhook_endpoints``; the ``secret`` comes back only from the create call, as on Stripe. They
refuse a URL that is not http(s) or not public (localhost, loopback), an ``enabled_events``
that is missing or names an event Stripe does not have, and a seventeenth endpoint (Stripe allows
16 per mode). ``GET /v1/account`` answers the account the key belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
API_KEY = "sk_test_51KeyturnFakeD3mo0000aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
WEBHOOK_SECRET = "whsec_kEyTuRnFaKeStRiPeWeBhOoKsEcReT0123456789"
API_VERSION = "2026-10-28.endive"

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Run with a processing intent's id before its create call is answered (``process_slowly``).
ProcessingHook = Callable[[str], Awaitable[None]]

_ALNUM = string.ascii_letters + string.digits
_CURRENCIES = frozenset(
    {"usd", "eur", "gbp", "chf", "sek", "nok", "dkk", "pln", "czk", "cad", "aud", "nzd", "jpy"}
    | {"isk", "huf", "krw", "kwd", "bhd", "jod", "omr", "tnd"}
)
#: Three-decimal currencies: Stripe wants their amounts rounded to ten (the last digit 0).
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
#: Two-decimal in Stripe's API, charged in whole units only (multiples of 100).
_WHOLE_UNITS_ONLY = frozenset({"isk"})
_LOCALES = frozenset(
    (
        *("auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi"),
        *("fil", "fr", "fr-CA", "hi-IN", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv"),
        *("ms", "mt", "nb", "nl", "pl", "pt", "pt-BR", "ro", "ru", "sk", "sl", "sv", "th"),
        *("tr", "vi", "zh", "zh-HK", "zh-TW"),
    )
)
_CANCELABLE = frozenset(
    {"requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"}
)
#: Stripe's test cards: one that pays, and one that asks for authentication on every
#: payment (on-session at Checkout the renter authenticates; off-session the bank refuses).
VISA = "4242424242424242"
AUTHENTICATION_CARD = "4000002760003184"
_OFF_SESSION_DECLINES = {AUTHENTICATION_CARD: "authentication_required"}
_KEY_SYNTAX = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SUBKEY = re.compile(r"\[([^\[\]]*)\]")
#: The request's parameters, parsed from the form or the query string.
PARAMS = web.RequestKey("stripe_params", dict[str, Any])


class StripeApiError(Exception):
    """Raised inside a handler; becomes Stripe's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: Json | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.extra = extra or {}

    def with_extra(self, extra: Json) -> StripeApiError:
        self.extra.update(extra)
        return self

    def body(self) -> Json:
        error: Json = {"type": self.error_type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://docs.stripe.com/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    return StripeApiError(400, message, param=param, code=code)


def missing(param: str) -> StripeApiError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def no_such(kind: str, object_id: str, param: str) -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", param=param, code="resource_missing"
    )


def _params(request: web.Request) -> Json:
    return request[PARAMS]


def load_fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / name).read_text())
    return data


def _template(name: str) -> Json:
    obj: Json = load_fixture(name)["data"]["object"]
    return obj


# --- Stripe's form encoding ---------------------------------------------------------------------


def parse_form(pairs: Iterable[tuple[str, str]]) -> Json:
    """Stripe's bracket notation as nested dicts and lists.

    ``a[b][0][c]=v`` is ``{"a": {"b": [{"c": "v"}]}}``. A key that is malformed, given twice, or
    both a value and a hash, and a list whose indices are not 0..n-1, are refused as Stripe does.
    """
    root: Json = {}
    for key, value in pairs:
        match = _KEY_SYNTAX.match(key)
        if match is None:
            raise invalid(f"Invalid parameter name: {key!r}")
        parts = [match.group(1), *_SUBKEY.findall(match.group(2))]
        if any(not part for part in parts):
            raise invalid(f"Invalid parameter name: {key!r}")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise invalid(f"Invalid hash: {key} is both a value and a hash", param=key)
            node = child
        if parts[-1] in node:
            raise invalid(f"Parameter given more than once: {key}", param=key)
        node[parts[-1]] = value
    converted = _arrays(root, "")
    assert isinstance(converted, dict)
    return converted


def _arrays(node: Any, path: str) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _arrays(v, f"{path}[{k}]" if path else k) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        indices = sorted(int(k) for k in converted)
        if indices != list(range(len(indices))) or any(str(int(k)) != k for k in converted):
            raise invalid(f"Invalid array: {path} must be indexed 0, 1, 2, ...", param=path)
        return [converted[str(i)] for i in range(len(indices))]
    return converted


def _known(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    allowed = set(allowed) | {"expand"}
    for name in params:
        if name not in allowed:
            full = f"{prefix}[{name}]" if prefix else name
            raise invalid(
                f"Received unknown parameter: {full}", param=full, code="parameter_unknown"
            )


def _hash(params: Mapping[str, Any], name: str, prefix: str = "") -> Json | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {_full(prefix, name)}", param=_full(prefix, name))
    return value


def _full(prefix: str, name: str) -> str:
    return f"{prefix}[{name}]" if prefix else name


def _text(params: Mapping[str, Any], name: str, prefix: str = "", *, required: bool = False) -> Any:
    value = params.get(name)
    if value is None:
        if required:
            raise missing(_full(prefix, name))
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {_full(prefix, name)}", param=_full(prefix, name))
    return value


def _integer(
    params: Mapping[str, Any], name: str, prefix: str = "", *, required: bool = False
) -> int | None:
    value = _text(params, name, prefix, required=required)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise invalid(f"Invalid integer: {value}", param=_full(prefix, name))
    return int(value)


def _boolean(params: Mapping[str, Any], name: str) -> bool | None:
    value = _text(params, name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid(f"Invalid boolean: {value}", param=name)
    return bool(value == "true")


def _choice(params: Mapping[str, Any], name: str, choices: Iterable[str], prefix: str = "") -> Any:
    value = _text(params, name, prefix)
    allowed = sorted(choices)
    if value is not None and value not in allowed:
        raise invalid(
            f"Invalid {_full(prefix, name)}: must be one of {', '.join(allowed)}",
            param=_full(prefix, name),
        )
    return value


def _currency(params: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = _text(params, name, prefix, required=True)
    if value.lower() not in _CURRENCIES:
        raise invalid(f"Invalid currency: {value}.", param=_full(prefix, name))
    return str(value.lower())


def _chargeable(amount: int, currency: str, param: str) -> None:
    """Stripe's special cases (docs "Supported currencies"): ISK in multiples of 100, the
    three-decimal currencies in multiples of 10."""
    if currency in _WHOLE_UNITS_ONLY and amount % 100:
        raise invalid(
            f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal "
            "and charged amounts must be evenly divisible by 100.",
            param=param,
            code="invalid_charge_amount_no_decimal_compatible",
        )
    if currency in _THREE_DECIMAL and amount % 10:
        raise invalid(
            f"Invalid amount. Amounts in {currency.upper()} must have 0 as their last digit.",
            param=param,
            code="invalid_charge_amount",
        )


def _url(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = _text(params, name, required=required)
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise invalid(f"Not a valid URL: {name}", param=name, code="url_invalid")
    return value  # type: ignore[no-any-return]


def _metadata(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    value = _hash(params, "metadata", prefix)
    if value is None:
        return {}
    where = _full(prefix, "metadata")
    if len(value) > 50:
        raise invalid("Metadata can have at most 50 keys.", param=where)
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"Invalid metadata value for {key}: nested objects", param=where)
        if len(key) > 40:
            raise invalid(f"Metadata keys can be at most 40 characters: {key}", param=where)
        if len(item) > 500:
            raise invalid(f"Metadata values can be at most 500 characters: {key}", param=where)
    return {k: v for k, v in value.items() if v != ""}


#: Stripe allows this many webhook endpoints per mode.
MAX_WEBHOOK_ENDPOINTS = 16
#: Event types the fake knows (Stripe's list is longer; these are the ones tests name).
EVENT_TYPES = frozenset(
    {
        "*",
        "account.updated",
        "charge.captured",
        "charge.failed",
        "charge.refunded",
        "charge.succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
        "checkout.session.expired",
        "customer.created",
        "identity.verification_session.canceled",
        "identity.verification_session.created",
        "identity.verification_session.processing",
        "identity.verification_session.requires_input",
        "identity.verification_session.verified",
        "payment_intent.amount_capturable_updated",
        "payment_intent.canceled",
        "payment_intent.created",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.succeeded",
        "refund.created",
        "refund.updated",
    }
)


def _endpoint_url(params: Mapping[str, Any], *, required: bool = False) -> str | None:
    url = _url(params, "url", required=required)
    host = (urlsplit(url).hostname or "") if url else ""
    if url and (host == "localhost" or host.startswith("127.") or host == "[::1]"):
        raise invalid(
            "Invalid URL: URL must be publicly accessible. Consider using a tool like the Stripe"
            " CLI to test webhooks locally: https://github.com/stripe/stripe-cli",
            param="url",
            code="url_invalid",
        )
    return url


def _enabled_events(params: Mapping[str, Any], *, required: bool = False) -> list[str]:
    events = params.get("enabled_events")
    if events is None or events == "":
        if required:
            raise missing("enabled_events")
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise invalid("Invalid array: enabled_events", param="enabled_events")
    for index, event in enumerate(events):
        if event not in EVENT_TYPES:
            raise invalid(
                f"Invalid enabled_events[{index}]: must be one of the event types Stripe sends,"
                f" not {event!r}",
                param=f"enabled_events[{index}]",
            )
    return list(events)


def _without_secret(endpoint: Json) -> Json:
    return {key: value for key, value in endpoint.items() if key != "secret"}


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


# --- recording and faults ---------------------------------------------------------------------


@dataclass
class StripeCall:
    """One request that reached the fake."""

    method: str
    path: str
    idempotency_key: str | None
    stripe_version: str | None
    params: Json = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookDelivery:
    """A webhook request as Stripe sends it: the raw body and its headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def signature(self) -> str:
        return self.headers["Stripe-Signature"]


@dataclass
class _Failure:
    status: int
    json_body: bool
    path: str | None


@dataclass(frozen=True)
class _Saved:
    method: str
    path: str
    params: Json
    status: int
    text: str


class FakeStripe:
    """Stripe's HTTP API in memory. Build the app with ``app()``, serve it with ``running``."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        webhook_secret: str = WEBHOOK_SECRET,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.now = now
        self.sessions: dict[str, Json] = {}
        #: The parameters each Checkout Session was created with, as Stripe parsed them.
        self.session_params: dict[str, Json] = {}
        self.payment_intents: dict[str, Json] = {}
        self.charges: dict[str, Json] = {}
        self.refunds: dict[str, Json] = {}
        self.customers: dict[str, Json] = {}
        self.payment_methods: dict[str, Json] = {}
        self.verification_sessions: dict[str, Json] = {}
        #: Webhook endpoints by id, as Stripe holds them (secrets included).
        self.webhook_endpoints: dict[str, Json] = {}
        self.account: Json = {
            "id": "acct_1KeyturnFakeAcct",
            "object": "account",
            "business_profile": {"name": "Keyturn Rentals", "url": None},
            "business_type": "company",
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": True,
            "country": "DE",
            "default_currency": "eur",
            "details_submitted": True,
            "email": "owner@keyturn.example",
            "payouts_enabled": True,
            "settings": {"dashboard": {"display_name": "Keyturn Rentals", "timezone": "UTC"}},
            "type": "standard",
        }
        #: The parameters each verification session was created with.
        self.identity_params: dict[str, Json] = {}
        #: Every event Stripe would have sent, oldest first.
        self.events: list[Json] = []
        #: Every request that reached the fake, failures and hangs included.
        self.calls: list[StripeCall] = []
        self._declines: dict[str, str] = {}
        self._slow: set[str] = set()
        self._before_answering: dict[str, ProcessingHook] = {}
        self._idempotent: dict[str, _Saved] = {}
        self._failures: list[_Failure] = []
        self._lost: list[str | None] = []
        self._hangs = 0
        self._hang_seconds = 30.0
        self._release = asyncio.Event()
        self._request: Json = {"id": None, "idempotency_key": None}

    # --- test controls ----------------------------------------------------------------------

    def fail_next(
        self, count: int = 1, *, status: int = 500, json_body: bool = True, path: str | None = None
    ) -> None:
        """The next ``count`` API requests (to ``path`` if given) fail with ``status``.

        The body is Stripe's error JSON, or plain text as a proxy in front of Stripe would send.
        """
        self._failures.extend(_Failure(status, json_body, path) for _ in range(count))

    def lose_next_answers(self, count: int = 1, *, path: str | None = None) -> None:
        """The next ``count`` API requests (to ``path`` if given) are carried out — and saved
        under their Idempotency-Key — but their answer is lost on the way back: the caller gets
        a proxy's 502 and cannot tell whether Stripe acted."""
        self._lost.extend(path for _ in range(count))

    def _answer(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        lost = next((p for p in self._lost if p is None or p == request.path), "")
        if lost == "":
            return response
        self._lost.remove(lost)
        return web.Response(status=502, text="upstream connect error")

    def hang_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """The next ``count`` API requests answer after ``seconds`` (or when the fake stops)."""
        self._hangs += count
        self._hang_seconds = seconds

    def posts(self, path: str | None = None) -> list[StripeCall]:
        return [c for c in self.calls if c.method == "POST" and (path is None or c.path == path)]

    def decline(self, payment_method: str, code: str = "card_declined") -> None:
        """Off-session use of ``payment_method`` fails with ``code`` (``authentication_required``
        for a card that wants the renter)."""
        self._declines[payment_method] = code

    def process_slowly(
        self, payment_method: str, *, before_answering: ProcessingHook | None = None
    ) -> None:
        """Off-session confirms on ``payment_method`` come back ``processing`` (no money moved
        yet, nothing authorised: as a bank debit does for days); ``finish_processing`` settles
        one, and ``GET /v1/payment_intents/{id}`` reads it as it is now.

        ``before_answering(intent_id)`` runs once the intent is processing and its answer
        composed, before the answer goes back: the caller hears ``processing`` after whatever
        the hook did (finish it, deliver its outcome event), as when Stripe's webhook beats
        its own HTTP answer to the caller."""
        self._slow.add(payment_method)
        if before_answering is not None:
            self._before_answering[payment_method] = before_answering

    def finish_processing(
        self, intent_id: str, *, succeed: bool = True, code: str = "card_declined"
    ) -> WebhookDelivery:
        """A ``processing`` intent's outcome: ``payment_intent.succeeded`` (a captured charge),
        or ``payment_intent.payment_failed`` (back to ``requires_payment_method`` with its
        ``last_payment_error``), signed."""
        intent = self.payment_intents[intent_id]
        if intent["status"] != "processing":
            raise AssertionError(f"{intent_id} is {intent['status']}, not processing")
        if succeed:
            self._authorise(intent)
            return self.delivery("payment_intent.succeeded", intent_id)
        error: Json = {
            "type": "card_error",
            "code": code,
            "message": "Your card was declined.",
            "payment_method": self.payment_methods[intent["payment_method"]],
        }
        intent.update(status="requires_payment_method", last_payment_error=error)
        return self._sign(self._event("payment_intent.payment_failed", intent))

    def complete(self, session_id: str, *, card: str = VISA) -> WebhookDelivery:
        """The renter pays on the Checkout page with test ``card`` (authenticating on-session
        when it asks); returns ``checkout.session.completed``. A card saved that way keeps its
        test behaviour off-session: ``AUTHENTICATION_CARD`` then wants the renter."""
        session = self.sessions[session_id]
        if session["status"] != "open" or session["expires_at"] <= self._ts():
            raise AssertionError(f"{session_id} is {session['status']}, it cannot be paid")
        params = self.session_params[session_id]
        intent_data = params.get("payment_intent_data") or {}
        manual = intent_data.get("capture_method") == "manual"
        future_usage = intent_data.get("setup_future_usage")
        customer_id: str | None = None
        if params.get("customer_creation") == "always" or future_usage:
            customer_id = self._create_customer(session["customer_details"])
        method_id = self._create_payment_method(customer_id if future_usage else None, card)
        if card in _OFF_SESSION_DECLINES:
            self._declines[method_id] = _OFF_SESSION_DECLINES[card]
        intent = self._new_intent(
            amount=session["amount_total"],
            currency=session["currency"],
            customer=customer_id,
            payment_method=method_id,
            metadata=_metadata(intent_data, "payment_intent_data"),
            manual=manual,
            setup_future_usage=future_usage,
        )
        self._authorise(intent)
        session.update(
            status="complete",
            payment_status="unpaid" if manual else "paid",
            payment_intent=intent["id"],
            customer=customer_id,
            url=None,
        )
        return self._sign(self._event("checkout.session.completed", session))

    def expire(self, session_id: str) -> WebhookDelivery:
        """The session's time runs out; returns ``checkout.session.expired``."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise AssertionError(f"{session_id} is {session['status']}, it cannot expire")
        self._expire(session)
        return self.delivery("checkout.session.expired", session_id)

    def verify_identity(self, session_id: str) -> WebhookDelivery:
        """The renter's document checks out; returns ``identity.verification_session.verified``."""
        session = self.verification_sessions[session_id]
        session.update(
            status="verified",
            last_error=None,
            last_verification_report=_new_id("vr_1"),
            url=None,
            client_secret=None,
        )
        return self._sign(self._event("identity.verification_session.verified", session))

    def identity_needs_input(
        self, session_id: str, code: str = "document_unverified_other"
    ) -> WebhookDelivery:
        """The check failed and the renter may try again; returns ``.requires_input``."""
        session = self.verification_sessions[session_id]
        session.update(
            status="requires_input",
            last_error={"code": code, "reason": "The document could not be verified."},
        )
        return self._sign(self._event("identity.verification_session.requires_input", session))

    def delivery(self, event_type: str, object_id: str | None = None) -> WebhookDelivery:
        """The latest recorded ``event_type`` (about ``object_id`` if given), signed."""
        for event in reversed(self.events):
            if event["type"] == event_type and (
                object_id is None or event["data"]["object"]["id"] == object_id
            ):
                return self._sign(event)
        raise LookupError(f"no {event_type} event recorded for {object_id or 'any object'}")

    def sign(
        self,
        payload: Mapping[str, Any] | bytes,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> WebhookDelivery:
        """Sign a body like Stripe: ``t={unix},v1={hex HMAC-SHA256 of f"{t}.{body}"}``.

        The timestamp is the delivery's, by the real clock the receiver checks it against.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload, indent=2).encode()
        moment = int(time.time()) if timestamp is None else timestamp
        key = (secret or self.webhook_secret).encode()
        digest = hmac.new(key, f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
        return WebhookDelivery(
            body=body,
            headers={
                "Stripe-Signature": f"t={moment},v1={digest}",
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._api])
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/checkout/sessions", self._sessions_create),
            ("GET", "/v1/checkout/sessions/{id}", self._sessions_retrieve),
            ("POST", "/v1/checkout/sessions/{id}/expire", self._sessions_expire),
            ("POST", "/v1/payment_intents", self._intents_create),
            ("GET", "/v1/payment_intents/{id}", self._intents_retrieve),
            ("POST", "/v1/payment_intents/{id}/capture", self._intents_capture),
            ("POST", "/v1/payment_intents/{id}/cancel", self._intents_cancel),
            ("POST", "/v1/refunds", self._refunds_create),
            ("POST", "/v1/identity/verification_sessions", self._identity_create),
            ("GET", "/v1/identity/verification_sessions/{id}", self._identity_retrieve),
            ("POST", "/v1/webhook_endpoints", self._endpoints_create),
            ("GET", "/v1/webhook_endpoints", self._endpoints_list),
            ("GET", "/v1/webhook_endpoints/{id}", self._endpoints_retrieve),
            ("POST", "/v1/webhook_endpoints/{id}", self._endpoints_update),
            ("DELETE", "/v1/webhook_endpoints/{id}", self._endpoints_delete),
            ("GET", "/v1/account", self._account_retrieve),
            ("GET", "/pay/{id}", self._checkout_page),
            ("GET", "/verify/{id}", self._identity_page),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)

        async def release_hung(_: web.Application) -> None:
            self._release.set()

        app.on_shutdown.append(release_hung)
        return app

    # --- the API middleware: record, faults, auth, parameters, idempotency, errors -----------

    @web.middleware
    async def _api(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        key = request.headers.get("Idempotency-Key")
        call = StripeCall(request.method, request.path, key, request.headers.get("Stripe-Version"))
        self.calls.append(call)
        if self._hangs:
            self._hangs -= 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), timeout=self._hang_seconds)
        failure = next(
            (f for f in self._failures if f.path is None or f.path == request.path), None
        )
        if failure is not None:
            self._failures.remove(failure)
            if not failure.json_body:
                return web.Response(status=failure.status, text="upstream connect error")
            return self._error(
                StripeApiError(failure.status, "An unknown error occurred", error_type="api_error")
            )
        try:
            self._authenticate(request)
            if request.method == "POST":
                form = request.content_type == "application/x-www-form-urlencoded"
                if request.body_exists and not form:
                    raise invalid(f"Unsupported Content-Type: {request.content_type}")
                posted = await request.post()
                call.params = parse_form((k, str(v)) for k, v in posted.items())
            else:
                call.params = parse_form(request.query.items())
            request[PARAMS] = call.params
            if request.method == "POST" and key:
                saved = self._idempotent.get(key)
                if saved is not None:
                    if (saved.method, saved.path, saved.params) != (
                        request.method,
                        request.path,
                        call.params,
                    ):
                        raise StripeApiError(
                            400,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            error_type="idempotency_error",
                        )
                    return self._answer(
                        request, self._response(saved.status, saved.text, replayed=True)
                    )
            request_id = _new_id("req_", 14)
            self._request = {"id": request_id, "idempotency_key": key}
            try:
                response = await handler(request)
            except StripeApiError as err:
                response = self._error(err)
            finally:
                self._request = {"id": None, "idempotency_key": None}
        except StripeApiError as err:
            return self._error(err)
        if request.method == "POST" and key and response.status in (200, 402):
            assert isinstance(response, web.Response) and response.text is not None
            self._idempotent[key] = _Saved(
                request.method, request.path, call.params, response.status, response.text
            )
        return self._answer(request, response)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise StripeApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        scheme, _, given = header.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(given, self.api_key):
            shown = given[:8] + "*" * max(len(given) - 12, 0) + given[-4:]
            raise StripeApiError(401, f"Invalid API Key provided: {shown}")

    def _response(self, status: int, text: str, *, replayed: bool = False) -> web.Response:
        headers = {"Request-Id": _new_id("req_", 14), "Stripe-Version": API_VERSION}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    def _ok(self, obj: Json) -> web.Response:
        return self._response(200, json.dumps(obj))

    def _error(self, err: StripeApiError) -> web.Response:
        return self._response(err.status, json.dumps(err.body()))

    # --- state helpers ----------------------------------------------------------------------

    def _ts(self) -> int:
        return int(self.now().timestamp())

    def _event(self, event_type: str, obj: Json, previous: Json | None = None) -> Json:
        data: Json = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event: Json = {
            "id": _new_id("evt_1"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self._ts(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": dict(self._request),
            "type": event_type,
        }
        self.events.append(event)
        return event

    def _sign(self, event: Json) -> WebhookDelivery:
        return self.sign(event)

    def _create_customer(self, details: Json | None) -> str:
        customer_id = _new_id("cus_", 14)
        self.customers[customer_id] = {
            "id": customer_id,
            "object": "customer",
            "created": self._ts(),
            "email": (details or {}).get("email"),
            "name": (details or {}).get("name"),
            "livemode": False,
            "metadata": {},
        }
        self._event("customer.created", self.customers[customer_id])
        return customer_id

    def _create_payment_method(self, customer: str | None, card: str = VISA) -> str:
        method_id = _new_id("pm_1")
        self.payment_methods[method_id] = {
            "id": method_id,
            "object": "payment_method",
            "type": "card",
            "card": {"brand": "visa", "last4": card[-4:], "exp_month": 8, "exp_year": 2030},
            "customer": customer,
            "created": self._ts(),
            "livemode": False,
            "metadata": {},
        }
        return method_id

    def _new_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        payment_method: str | None,
        metadata: dict[str, str],
        manual: bool,
        setup_future_usage: str | None = None,
    ) -> Json:
        intent = _template("event.payment_intent.amount_capturable_updated.json")
        intent_id = _new_id("pi_3")
        intent.update(
            id=intent_id,
            amount=amount,
            amount_capturable=0,
            amount_received=0,
            capture_method="manual" if manual else "automatic_async",
            client_secret=f"{intent_id}_secret_{_new_id('', 25)}",
            created=self._ts(),
            currency=currency,
            customer=customer,
            latest_charge=None,
            metadata=metadata,
            payment_method=payment_method,
            setup_future_usage=setup_future_usage,
            status="requires_payment_method" if payment_method is None else "requires_confirmation",
        )
        self.payment_intents[intent_id] = intent
        self._event("payment_intent.created", intent)
        return intent

    def _authorise(self, intent: Json) -> None:
        """Confirm ``intent``: a charge for its amount, captured now unless capture is manual."""
        manual = intent["capture_method"] == "manual"
        charge = _template("event.charge.refunded.json")
        charge_id = _new_id("ch_3")
        charge.update(
            id=charge_id,
            amount=intent["amount"],
            amount_captured=0 if manual else intent["amount"],
            amount_refunded=0,
            balance_transaction=None if manual else _new_id("txn_3"),
            captured=not manual,
            created=self._ts(),
            currency=intent["currency"],
            customer=intent["customer"],
            metadata=dict(intent["metadata"]),
            payment_intent=intent["id"],
            payment_method=intent["payment_method"],
            refunded=False,
            status="succeeded",
        )
        charge["payment_method_details"]["card"]["amount_authorized"] = intent["amount"]
        self.charges[charge_id] = charge
        intent["latest_charge"] = charge_id
        self._event("charge.succeeded", charge)
        if manual:
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
            self._event(
                "payment_intent.amount_capturable_updated", intent, {"amount_capturable": 0}
            )
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])
            self._event("payment_intent.succeeded", intent)

    def _expire(self, session: Json) -> None:
        session.update(status="expired", url=None)
        self._event("checkout.session.expired", session)

    def _session(self, request: web.Request) -> Json:
        session_id = request.match_info["id"]
        session = self.sessions.get(session_id)
        if session is None:
            raise no_such("checkout.session", session_id, "session")
        return session

    def _intent(self, intent_id: str, param: str = "intent") -> Json:
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise no_such("payment_intent", intent_id, param)
        return intent

    # --- Checkout Sessions ------------------------------------------------------------------

    async def _sessions_create(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(
            params,
            {
                "mode",
                "line_items",
                "client_reference_id",
                "metadata",
                "payment_intent_data",
                "expires_at",
                "success_url",
                "cancel_url",
                "locale",
                "customer_creation",
                "customer_email",
            },
        )
        mode = _text(params, "mode", required=True)
        if mode != "payment":
            raise invalid(f"Invalid mode: {mode} (this fake knows payment mode)", param="mode")
        currency, total = self._line_items(params)
        success_url = _url(params, "success_url", required=True)
        cancel_url = _url(params, "cancel_url")
        now = self._ts()
        expires_at = _integer(params, "expires_at")
        if expires_at is None:
            expires_at = now + 24 * 3600
        elif expires_at < now + 30 * 60:
            raise invalid(
                "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
                "creation.",
                param="expires_at",
            )
        elif expires_at > now + 24 * 3600:
            raise invalid(
                "The `expires_at` timestamp must be less than 24 hours from Checkout Session "
                "creation.",
                param="expires_at",
            )
        reference = _text(params, "client_reference_id")
        if reference is not None and len(reference) > 200:
            raise invalid("client_reference_id can be at most 200 characters.", param=reference)
        metadata = _metadata(params)
        intent_data = _hash(params, "payment_intent_data")
        if intent_data is not None:
            where = "payment_intent_data"
            _known(
                intent_data,
                {"capture_method", "setup_future_usage", "metadata", "description"},
                where,
            )
            _choice(
                intent_data, "capture_method", {"automatic", "automatic_async", "manual"}, where
            )
            _choice(intent_data, "setup_future_usage", {"on_session", "off_session"}, where)
            _metadata(intent_data, where)
        _choice(params, "customer_creation", {"always", "if_required"})
        locale = _choice(params, "locale", _LOCALES)

        session = _template("event.checkout.session.completed.json")
        session_id = "cs_test_a1" + _new_id("", 56)
        session.update(
            id=session_id,
            amount_subtotal=total,
            amount_total=total,
            cancel_url=cancel_url,
            client_reference_id=reference,
            created=now,
            currency=currency,
            customer=None,
            customer_creation=params.get("customer_creation") or "if_required",
            customer_email=params.get("customer_email"),
            expires_at=expires_at,
            locale=locale,
            metadata=metadata,
            payment_intent=None,
            payment_status="unpaid",
            status="open",
            success_url=success_url,
            url=f"{request.url.origin()}/pay/{session_id}",
        )
        self.sessions[session_id] = session
        self.session_params[session_id] = params
        return self._ok(session)

    def _line_items(self, params: Json) -> tuple[str, int]:
        items = params.get("line_items")
        if items is None:
            raise missing("line_items")
        if not isinstance(items, list) or not items:
            raise invalid("Invalid array: line_items", param="line_items")
        currencies: set[str] = set()
        total = 0
        for index, item in enumerate(items):
            where = f"line_items[{index}]"
            if not isinstance(item, dict):
                raise invalid(f"Invalid hash: {where}", param=where)
            _known(item, {"price_data", "quantity", "price"}, where)
            if "price" in item:
                raise no_such("price", str(item["price"]), f"{where}[price]")
            quantity = _integer(item, "quantity", where, required=True)
            assert quantity is not None
            if quantity < 1:
                raise invalid("Quantity must be at least 1.", param=f"{where}[quantity]")
            price_data = _hash(item, "price_data", where)
            if price_data is None:
                raise missing(f"{where}[price_data]")
            where = f"{where}[price_data]"
            _known(price_data, {"currency", "unit_amount", "product_data", "tax_behavior"}, where)
            currency = _currency(price_data, "currency", where)
            currencies.add(currency)
            unit_amount = _integer(price_data, "unit_amount", where, required=True)
            assert unit_amount is not None
            if unit_amount < 0:
                raise invalid("unit_amount must be at least 0.", param=f"{where}[unit_amount]")
            _chargeable(unit_amount, currency, f"{where}[unit_amount]")
            product = _hash(price_data, "product_data", where)
            if product is None:
                raise missing(f"{where}[product_data]")
            _known(product, {"name", "description", "metadata"}, f"{where}[product_data]")
            if not _text(product, "name", f"{where}[product_data]", required=True):
                raise missing(f"{where}[product_data][name]")
            total += unit_amount * quantity
        if len(currencies) > 1:
            raise invalid("All line items must use the same currency.", param="line_items")
        if total < 50:
            raise invalid(
                "The Checkout Session's total amount due must add up to at least 0.50.",
                param="line_items",
                code="amount_too_small",
            )
        return currencies.pop(), total

    async def _sessions_retrieve(self, request: web.Request) -> web.Response:
        _known(_params(request), ())
        return self._ok(self._session(request))

    async def _sessions_expire(self, request: web.Request) -> web.Response:
        _known(_params(request), ())
        session = self._session(request)
        if session["status"] != "open":
            raise invalid(
                f"This Checkout Session is {session['status']}; only a session with status "
                "'open' can be expired.",
                code="checkout_session_not_open",
            )
        self._expire(session)
        return self._ok(session)

    # --- PaymentIntents ---------------------------------------------------------------------

    async def _intents_create(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(
            params,
            {
                "amount",
                "currency",
                "customer",
                "payment_method",
                "off_session",
                "confirm",
                "capture_method",
                "metadata",
                "description",
            },
        )
        amount = _integer(params, "amount", required=True)
        assert amount is not None
        if amount < 50:
            raise invalid("Amount must be at least 0.50.", param="amount", code="amount_too_small")
        currency = _currency(params, "currency")
        _chargeable(amount, currency, "amount")
        capture = _choice(params, "capture_method", {"automatic", "automatic_async", "manual"})
        confirm = _boolean(params, "confirm") or False
        off_session = _boolean(params, "off_session")
        if off_session is not None and not confirm:
            raise invalid("off_session can only be used with confirm=true.", param="off_session")
        customer = _text(params, "customer")
        if customer is not None and customer not in self.customers:
            raise no_such("customer", customer, "customer")
        method = _text(params, "payment_method")
        if method is not None:
            stored = self.payment_methods.get(method)
            if stored is None:
                raise no_such("PaymentMethod", method, "payment_method")
            if stored["customer"] != customer:
                raise invalid(
                    f"The provided PaymentMethod {method} does not belong to the Customer "
                    f"{customer}. Attach it to the Customer first.",
                    param="payment_method",
                )
        if confirm and method is None:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        intent = self._new_intent(
            amount=amount,
            currency=currency,
            customer=customer,
            payment_method=method,
            metadata=_metadata(params),
            manual=capture == "manual",
        )
        if confirm:
            assert method is not None
            decline = self._declines.get(method)
            if decline is not None:
                return self._declined(intent, decline)
            if method in self._slow and off_session:
                intent.update(status="processing")
                self._event("payment_intent.processing", intent)
                answer = self._ok(intent)
                hook = self._before_answering.pop(method, None)
                if hook is not None:
                    await hook(intent["id"])
                return answer
            self._authorise(intent)
        return self._ok(intent)

    def _declined(self, intent: Json, code: str) -> web.Response:
        message = (
            "Your card was declined. This transaction requires authentication."
            if code == "authentication_required"
            else "Your card was declined."
        )
        error: Json = {
            "type": "card_error",
            "code": code,
            "message": message,
            "payment_method": self.payment_methods[intent["payment_method"]],
        }
        decline_code = "generic_decline" if code == "card_declined" else code
        error["decline_code"] = decline_code
        # Stripe's docs (charging a saved card off-session): a failed attempt is 402 and leaves
        # the intent requires_payment_method, authentication_required included — the renter
        # comes back on-session to pay it.
        intent.update(status="requires_payment_method", last_payment_error=error)
        self._event("payment_intent.payment_failed", intent)
        err = StripeApiError(
            402,
            message,
            error_type="card_error",
            code=code,
            extra={"payment_intent": intent, "decline_code": decline_code},
        )
        return self._error(err)

    async def _intents_retrieve(self, request: web.Request) -> web.Response:
        _known(_params(request), {"client_secret"})
        return self._ok(self._intent(request.match_info["id"]))

    async def _intents_capture(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(params, {"amount_to_capture", "metadata"})
        intent = self._intent(request.match_info["id"])
        if intent["status"] != "requires_capture":
            raise invalid(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            ).with_extra({"payment_intent": intent})
        amount = _integer(params, "amount_to_capture")
        if amount is None:
            amount = intent["amount_capturable"]
        if amount < 1 or amount > intent["amount_capturable"]:
            raise invalid(
                "The amount to capture must be at least 1 and at most the amount_capturable "
                f"({intent['amount_capturable']}).",
                param="amount_to_capture",
            )
        _chargeable(amount, intent["currency"], "amount_to_capture")
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        charge = self.charges[intent["latest_charge"]]
        released = charge["amount"] - amount
        charge.update(
            captured=True,
            amount_captured=amount,
            amount_refunded=released,
            refunded=False,
            balance_transaction=_new_id("txn_3"),
        )
        self._event("charge.captured", charge)
        self._event("payment_intent.succeeded", intent)
        return self._ok(intent)

    async def _intents_cancel(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(params, {"cancellation_reason"})
        reason = _choice(
            params,
            "cancellation_reason",
            {"duplicate", "fraudulent", "requested_by_customer", "abandoned"},
        )
        intent = self._intent(request.match_info["id"])
        if intent["status"] not in _CANCELABLE:
            raise invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be canceled: " + ", ".join(sorted(_CANCELABLE)) + ".",
                code="payment_intent_unexpected_state",
            ).with_extra({"payment_intent": intent})
        if intent["status"] == "requires_capture":
            charge = self.charges[intent["latest_charge"]]
            charge.update(amount_refunded=charge["amount"], refunded=True)
        intent.update(
            status="canceled",
            amount_capturable=0,
            canceled_at=self._ts(),
            cancellation_reason=reason,
        )
        self._event("payment_intent.canceled", intent)
        return self._ok(intent)

    # --- Refunds ----------------------------------------------------------------------------

    async def _refunds_create(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(params, {"payment_intent", "charge", "amount", "reason", "metadata"})
        intent_id = _text(params, "payment_intent")
        charge_id = _text(params, "charge")
        if intent_id is None and charge_id is None:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge."
            )
        if intent_id is not None:
            intent = self._intent(intent_id, "payment_intent")
            if intent["status"] != "succeeded" or not intent["latest_charge"]:
                raise invalid(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    param="payment_intent",
                )
            charge = self.charges[intent["latest_charge"]]
        else:
            charge = self.charges.get(str(charge_id)) or {}
            if not charge:
                raise no_such("charge", str(charge_id), "charge")
        reason = _choice(params, "reason", {"duplicate", "fraudulent", "requested_by_customer"})
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise invalid(
                f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = _integer(params, "amount")
        if amount is None:
            amount = remaining
        if amount < 1:
            raise invalid("Amount must be at least 1.", param="amount")
        _chargeable(amount, charge["currency"], "amount")
        if amount > remaining:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                param="amount",
                code="amount_too_large",
            )
        refund_id = _new_id("re_3")
        refund: Json = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": _new_id("txn_3"),
            "charge": charge["id"],
            "created": self._ts(),
            "currency": charge["currency"],
            "metadata": _metadata(params),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.refunds[refund_id] = refund
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._event("refund.created", refund)
        self._event("charge.refunded", charge, previous)
        return self._ok(refund)

    # --- Identity ---------------------------------------------------------------------------

    async def _identity_create(self, request: web.Request) -> web.Response:
        params: Json = request[PARAMS]
        _known(params, {"type", "metadata", "return_url", "client_reference_id", "options"})
        kind = _choice(params, "type", {"document", "id_number"})
        if kind is None:
            raise missing("type")
        _url(params, "return_url")
        session = _template("event.identity.verification_session.verified.json")
        session_id = _new_id("vs_1")
        session.update(
            id=session_id,
            client_reference_id=_text(params, "client_reference_id"),
            client_secret=f"{session_id}_secret_{_new_id('', 24)}",
            created=self._ts(),
            last_error=None,
            last_verification_report=None,
            metadata=_metadata(params),
            options={kind: {}},
            status="requires_input",
            type=kind,
            url=f"{request.url.origin()}/verify/{session_id}",
        )
        self.verification_sessions[session_id] = session
        self.identity_params[session_id] = params
        self._event("identity.verification_session.created", session)
        return self._ok(session)

    async def _identity_retrieve(self, request: web.Request) -> web.Response:
        _known(_params(request), ())
        session_id = request.match_info["id"]
        session = self.verification_sessions.get(session_id)
        if session is None:
            raise no_such("identity.verification_session", session_id, "session")
        return self._ok(session)

    # --- the pages the renter opens ---------------------------------------------------------

    # --- webhook endpoints and the account ------------------------------------------------

    def _endpoint(self, request: web.Request) -> Json:
        endpoint_id = request.match_info["id"]
        if endpoint_id not in self.webhook_endpoints:
            raise no_such("webhook endpoint", endpoint_id, "id")
        return self.webhook_endpoints[endpoint_id]

    async def _endpoints_create(self, request: web.Request) -> web.Response:
        params = _params(request)
        _known(params, ("url", "enabled_events", "description", "api_version", "metadata"))
        url = _endpoint_url(params, required=True)
        events = _enabled_events(params, required=True)
        if len(self.webhook_endpoints) >= MAX_WEBHOOK_ENDPOINTS:
            raise invalid(
                f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} test webhook endpoints."
            )
        endpoint_id = _new_id("we_")
        self.webhook_endpoints[endpoint_id] = {
            "id": endpoint_id,
            "object": "webhook_endpoint",
            "api_version": _text(params, "api_version"),
            "application": None,
            "created": self._ts(),
            "description": _text(params, "description"),
            "enabled_events": events,
            "livemode": False,
            "metadata": _metadata(params),
            "secret": "whsec_" + "".join(secrets.choice(_ALNUM) for _ in range(32)),
            "status": "enabled",
            "url": url,
        }
        return self._ok(self.webhook_endpoints[endpoint_id])

    async def _endpoints_list(self, request: web.Request) -> web.Response:
        params = _params(request)
        _known(params, ("limit", "starting_after", "ending_before"))
        limit = _integer(params, "limit") or 10
        if not 1 <= limit <= 100:
            raise invalid("Invalid integer: limit must be between 1 and 100", param="limit")
        listed = [_without_secret(e) for e in reversed(self.webhook_endpoints.values())]
        return self._ok(
            {
                "object": "list",
                "data": listed[:limit],
                "has_more": len(listed) > limit,
                "url": "/v1/webhook_endpoints",
            }
        )

    async def _endpoints_retrieve(self, request: web.Request) -> web.Response:
        return self._ok(_without_secret(self._endpoint(request)))

    async def _endpoints_update(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request)
        params = _params(request)
        _known(params, ("url", "enabled_events", "description", "disabled", "metadata"))
        changes: Json = {}
        if "url" in params:
            changes["url"] = _endpoint_url(params)
        if "enabled_events" in params:
            changes["enabled_events"] = _enabled_events(params)
        if "description" in params:
            changes["description"] = _text(params, "description")
        disabled = _boolean(params, "disabled")
        if disabled is not None:
            changes["status"] = "disabled" if disabled else "enabled"
        endpoint.update(changes)
        return self._ok(_without_secret(endpoint))

    async def _endpoints_delete(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request)
        del self.webhook_endpoints[endpoint["id"]]
        return self._ok({"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True})

    async def _account_retrieve(self, request: web.Request) -> web.Response:
        return self._ok(self.account)

    async def _checkout_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None or session["status"] != "open":
            raise web.HTTPNotFound(text="This checkout link is no longer valid.")
        amount = session["amount_total"] / 100
        return web.Response(
            text=f"<h1>Pay {amount:.2f} {session['currency'].upper()}</h1>",
            content_type="text/html",
        )

    async def _identity_page(self, request: web.Request) -> web.Response:
        session = self.verification_sessions.get(request.match_info["id"])
        if session is None or session["status"] != "requires_input":
            raise web.HTTPNotFound(text="This verification link is no longer valid.")
        return web.Response(text="<h1>Verify your identity</h1>", content_type="text/html")
