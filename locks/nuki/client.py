"""The wire side of Nuki: a thin async client over the Nuki Web API (``https://api.nuki.io``).

What it speaks, from Nuki's Swagger description (``api.nuki.io``, as mirrored by generated clients):

- ``Authorization: Bearer <API token>`` on every call.
- ``GET /smartlock`` → ``[Smartlock]``; ``GET /smartlock/{smartlockId}`` → ``Smartlock`` with
  ``smartlockId``, ``type`` (0 Smart Lock 1/2, 1 Box, 2 Opener, 3 Smart Door, 4 Smart Lock 3/4,
  5 Smart Lock 5), ``name``, ``serverState`` (0 ok, 1 unregistered, 2 auth uuid invalid, 3 auth
  invalid, 4 offline), ``state`` (``batteryCritical``, ``batteryCharge`` in %, …) and ``config``
  (``keypadPaired``, ``keypad2Paired``, …).
- Authorizations: ``GET /smartlock/{id}/auth`` (``types`` filter) → ``[SmartlockAuth]``;
  ``PUT /smartlock/{id}/auth`` creates one asynchronously and answers 204 with no body, so no id;
  ``GET|POST|DELETE /smartlock/{id}/auth/{authId}`` read, update (``name`` required) and delete.
  A keypad code is type 13 with an integer ``code``, ``name`` (≤ 32 chars), ``allowedFromDate``/
  ``allowedUntilDate`` (ISO instants), optional ``allowedWeekDays`` bitmask and
  ``allowedFromTime``/``allowedUntilTime`` (minutes from midnight), and ``remoteAllowed``.
- ``POST /smartlock/{id}/action`` with ``{action}`` (1 unlock on locks, 3 open on an Opener)
  answers 204: the lock acts later. What it did is in the smartlock log,
  ``GET /smartlock/{id}/log`` (``limit``; newest first) → ``[SmartlockLog]`` with ``id``,
  ``action`` (1 unlock, 2 lock, 3 unlatch, …), ``trigger`` (0 system, 1 manual, 2 button,
  3 automatic, 4 web, 5 app, …), ``state`` — the completion state: 0 success, 1 motor blocked,
  2 canceled, 3 too recent, 4 busy, 5 low motor voltage, 6 clutch failure, 7 motor power failure,
  8 incomplete, 9 rejected, 10 rejected night mode, 254 other error, 255 unknown — and ``date``.

The Swagger lists status codes (400 bad parameter, 401 not authorized, 404 unknown smartlock) but
not the body of an error nor the status of a duplicate keypad code; see the adapter for how those
are read. Errors leave this module as :class:`NukiHttpError` or :class:`NukiProtocolError`; network
failures and timeouts leave as ``aiohttp.ClientError`` and ``TimeoutError``. No message carries the
token or a PIN: digit runs in Nuki's own messages are masked.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from locks.vendor_http import (
    VendorHttpError,
    VendorProtocolError,
    VendorSession,
    parse_retry_after,
    read_body,
)

DEFAULT_API_BASE: Final = "https://api.nuki.io"

AUTH_TYPE_KEYPAD_CODE: Final = 13

ACTION_UNLOCK: Final = 1
ACTION_OPENER_OPEN: Final = 3  # electric strike actuation, for type 2 (Opener)

SMARTLOCK_TYPE_OPENER: Final = 2

_PIN_LIKE = re.compile(r"\d{4,}")


def mask_digits(text: str) -> str:
    """Nuki's messages may echo a keypad code: mask every run of four or more digits."""
    return _PIN_LIKE.sub("****", text)[:200]


@dataclass(frozen=True)
class NukiLogEntry:
    id: str
    action: int
    trigger: int | None
    state: int | None


def _parse_log(raw: dict[str, Any]) -> NukiLogEntry:
    def number(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return NukiLogEntry(
        id=str(raw.get("id") or ""),
        action=number("action") or 0,
        trigger=number("trigger"),
        state=number("state"),
    )


class NukiHttpError(VendorHttpError):
    """The Web API answered with an HTTP error status; ``message`` has digit runs masked."""

    vendor = "Nuki"


class NukiProtocolError(VendorProtocolError):
    """The Web API answered 2xx with a body this client cannot read."""


@dataclass(frozen=True)
class NukiSmartlock:
    smartlock_id: int
    type: int
    name: str
    server_state: int | None
    battery_critical: bool | None
    battery_charge: int | None
    keypad_paired: bool | None  # None when the answer has no config


@dataclass(frozen=True)
class NukiAuth:
    id: str
    smartlock_id: int
    type: int
    name: str
    code: int | None
    enabled: bool
    allowed_from: datetime | None
    allowed_until: datetime | None
    operation_id: str | None  # set while Nuki is still applying an operation to the lock
    error: str | None


def format_instant(instant: datetime) -> str:
    """An aware datetime as the Web API writes instants: UTC, milliseconds, ``Z``."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_instant(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _message_of(body: object) -> str:
    # The shape of error bodies is not in the Swagger; read the usual fields.
    if isinstance(body, dict):
        for key in ("detailMessage", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return mask_digits(value)
    if isinstance(body, str) and body:
        return mask_digits(body)
    return "no details"


def _parse_smartlock(raw: object) -> NukiSmartlock:
    if not isinstance(raw, dict):
        raise NukiProtocolError("a smartlock is not a JSON object")
    try:
        state = raw.get("state") or {}
        config = raw.get("config")
        keypad: bool | None = None
        if isinstance(config, dict):
            keypad = bool(config.get("keypadPaired")) or bool(config.get("keypad2Paired"))
        charge = state.get("batteryCharge")
        critical = state.get("batteryCritical")
        server_state = raw.get("serverState")
        return NukiSmartlock(
            smartlock_id=int(raw["smartlockId"]),
            type=int(raw.get("type", 0)),
            name=str(raw.get("name") or raw["smartlockId"]),
            server_state=int(server_state) if server_state is not None else None,
            battery_critical=bool(critical) if critical is not None else None,
            battery_charge=int(charge) if charge is not None else None,
            keypad_paired=keypad,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise NukiProtocolError(f"unreadable smartlock: {type(err).__name__}") from err


def _parse_auth(raw: object) -> NukiAuth:
    if not isinstance(raw, dict):
        raise NukiProtocolError("an authorization is not a JSON object")
    try:
        code = raw.get("code")
        error = raw.get("error")
        operation = raw.get("operationId")
        return NukiAuth(
            id=str(raw["id"]),
            smartlock_id=int(raw["smartlockId"]),
            type=int(raw["type"]),
            name=str(raw.get("name") or ""),
            code=int(code) if code is not None else None,
            enabled=bool(raw.get("enabled", True)),
            allowed_from=_parse_instant(raw.get("allowedFromDate")),
            allowed_until=_parse_instant(raw.get("allowedUntilDate")),
            operation_id=str(operation) if operation else None,
            error=mask_digits(str(error)) if error else None,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise NukiProtocolError(f"unreadable authorization: {type(err).__name__}") from err


class NukiClient:
    """One Nuki Web API token. Build it anywhere; the HTTP session opens on first use."""

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._token = api_token
        self._base = (base_url or DEFAULT_API_BASE).rstrip("/")
        self._timeout = timeout
        self._session = VendorSession(session, timeout)

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        async with (
            asyncio.timeout(self._timeout),
            self._session.get().request(
                method, f"{self._base}{path}", json=json, params=params, headers=headers
            ) as response,
        ):
            body = await read_body(response)
        if response.status >= 300:
            raise NukiHttpError(
                response.status,
                _message_of(body),
                parse_retry_after(response.headers.get("Retry-After")),
            )
        return body

    async def list_smartlocks(self) -> list[NukiSmartlock]:
        body = await self._request("GET", "/smartlock")
        if not isinstance(body, list):
            raise NukiProtocolError("the smartlock list is not a list")
        return [_parse_smartlock(raw) for raw in body]

    async def get_smartlock(self, smartlock_id: int) -> NukiSmartlock:
        return _parse_smartlock(await self._request("GET", f"/smartlock/{smartlock_id}"))

    async def list_auths(self, smartlock_id: int, *, types: str | None = None) -> list[NukiAuth]:
        params = {"types": types} if types is not None else None
        body = await self._request("GET", f"/smartlock/{smartlock_id}/auth", params=params)
        if not isinstance(body, list):
            raise NukiProtocolError("the authorization list is not a list")
        return [_parse_auth(raw) for raw in body]

    async def get_auth(self, smartlock_id: int, auth_id: str) -> NukiAuth:
        return _parse_auth(
            await self._request("GET", f"/smartlock/{smartlock_id}/auth/{quote(auth_id, safe='')}")
        )

    async def create_auth(self, smartlock_id: int, payload: dict[str, object]) -> None:
        """Nuki answers 204 without a body: the new authorization's id must be found by listing."""
        await self._request("PUT", f"/smartlock/{smartlock_id}/auth", json=payload)

    async def update_auth(
        self, smartlock_id: int, auth_id: str, payload: dict[str, object]
    ) -> None:
        await self._request(
            "POST", f"/smartlock/{smartlock_id}/auth/{quote(auth_id, safe='')}", json=payload
        )

    async def delete_auth(self, smartlock_id: int, auth_id: str) -> None:
        await self._request("DELETE", f"/smartlock/{smartlock_id}/auth/{quote(auth_id, safe='')}")

    async def log(self, smartlock_id: int, *, limit: int = 20) -> list[NukiLogEntry]:
        """The lock's latest log entries, newest first."""
        body = await self._request(
            "GET", f"/smartlock/{smartlock_id}/log", params={"limit": str(limit)}
        )
        if not isinstance(body, list):
            raise NukiProtocolError("the smartlock log is not a list")
        return [_parse_log(raw) for raw in body if isinstance(raw, dict)]

    async def action(self, smartlock_id: int, action: int) -> None:
        await self._request("POST", f"/smartlock/{smartlock_id}/action", json={"action": action})
