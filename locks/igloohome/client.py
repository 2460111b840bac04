"""The wire side of igloohome: a thin async client over the igloohome API (iglooaccess).

What it speaks, as used by the public clients of the API (the ``igloohome-api`` package that Home
Assistant's integration uses, and integrations calling the API directly):

- Token: ``POST https://auth.igloohome.co/oauth2/token`` with HTTP Basic ``client_id:client_secret``
  and the form ``grant_type=client_credentials`` plus a space-separated ``scope``; the answer is
  ``{access_token, expires_in, token_type}``. The token is cached until shortly before it expires.
- API root ``https://api.igloodeveloper.co/igloohome`` with ``Authorization: Bearer <token>``:
  ``GET /devices`` → ``{nextCursor, payload: [device]}``; ``GET /devices/{deviceId}`` → device,
  where a device is ``{id, type ("Lock" | "Keypad" | "Bridge"), deviceId, deviceName, pairedAt,
  homeId, linkedDevices: [{type, deviceId}], batteryLevel}``.
- algoPINs: ``POST /devices/{deviceId}/algopin/hourly|daily|onetime`` with
  ``{variance, startDate, endDate, accessName}`` → ``{pin, pinId}``; dates are on the hour with an
  explicit offset (``2026-10-25T02:00:00+01:00``).
- Bridge jobs: ``POST /devices/{deviceId}/jobs/bridges/{bridgeId}`` with ``{jobType, jobData}`` →
  ``{jobId}``; job type 2 unlocks. The bridge runs the job later; ``GET /jobs/{jobId}`` (scope
  ``igloohomeapi/get-job-status``) answers ``{jobId, expiryDate, completed, jobType, jobResponse}``
  (the ``igloohome-api`` package's ``get_job_status``). What ``jobResponse`` holds for a job the
  lock refused is not in that material: a job counts as failed when it carries an ``error``
  (or ``errorCode``), and as never run once its ``expiryDate`` passed uncompleted.

Where the public material is silent (the shape of error bodies, the query parameter that follows
``nextCursor``, a listing of issued algoPINs) this module says so beside the code relying on it.

Errors leave this module as :class:`IgloohomeAuthError`, :class:`IgloohomeHttpError` or
:class:`IgloohomeProtocolError`; network failures and timeouts leave as ``aiohttp.ClientError`` and
``TimeoutError``. Mapping them onto the port is the adapter's job. No message carries the client
secret, the token or a PIN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from locks.vendor_http import (
    VendorHttpError,
    VendorProtocolError,
    VendorSession,
    parse_retry_after,
    read_body,
)

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://api.igloodeveloper.co/igloohome"
DEFAULT_TOKEN_URL: Final = "https://auth.igloohome.co/oauth2/token"  # noqa: S105 (a URL)

#: The scopes Keyturn needs: algoPINs, device listing, bridge-proxied unlock and its job status.
SCOPES: Final = " ".join(
    (
        "igloohomeapi/algopin-hourly",
        "igloohomeapi/algopin-daily",
        "igloohomeapi/algopin-onetime",
        "igloohomeapi/get-devices",
        "igloohomeapi/unlock-bridge-proxied-job",
        "igloohomeapi/get-job-status",
    )
)

#: A token is renewed this many seconds before igloohome says it expires.
TOKEN_EXPIRY_MARGIN: Final = 60.0
#: Used when the token answer has no ``expires_in`` (OAuth2 makes it optional).
DEFAULT_TOKEN_LIFETIME: Final = 3600.0

DEVICE_TYPE_LOCK: Final = "Lock"
DEVICE_TYPE_KEYPAD: Final = "Keypad"
DEVICE_TYPE_BRIDGE: Final = "Bridge"

BRIDGE_JOB_UNLOCK: Final = 2


class AlgoPinKind(StrEnum):
    HOURLY = "hourly"  # 1 to 672 hours
    DAILY = "daily"  # 29 to 367 days, same start and end time of day
    ONETIME = "onetime"  # one use, within 24 hours of its start


class IgloohomeAuthError(Exception):
    """The token endpoint refused the client credentials (or the requested scopes)."""

    def __init__(self, status: int, oauth_error: str) -> None:
        super().__init__(f"igloohome token endpoint answered HTTP {status} ({oauth_error})")
        self.status = status
        self.oauth_error = oauth_error


class IgloohomeHttpError(VendorHttpError):
    """The API answered with an HTTP error status."""

    vendor = "igloohome"


class IgloohomeProtocolError(VendorProtocolError):
    """The API answered 2xx with a body this client cannot read."""


@dataclass(frozen=True)
class LinkedDevice:
    type: str
    device_id: str


@dataclass(frozen=True)
class IglooDevice:
    device_id: str
    type: str
    name: str
    battery_level: int | None  # percent, as last synchronised with igloohome's cloud
    linked_devices: tuple[LinkedDevice, ...]


@dataclass(frozen=True)
class AlgoPin:
    pin: str
    pin_id: str


@dataclass(frozen=True)
class IglooJob:
    job_id: str
    completed: bool
    error: str | None
    expires_at: datetime | None


def _parse_instant(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _token_url_for(api_base: str) -> str:
    """The token endpoint a proxy or fake serving the API at ``api_base`` is expected to offer."""
    parts = urlsplit(api_base)
    return urlunsplit((parts.scheme, parts.netloc, "/oauth2/token", "", ""))


def _message_of(body: object) -> str:
    # Error bodies are not documented; the clients we studied print ``message`` or ``error``.
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    if isinstance(body, str) and body:
        return body[:200]
    return "no details"


def _parse_device(raw: object) -> IglooDevice:
    if not isinstance(raw, dict):
        raise IgloohomeProtocolError("a device is not a JSON object")
    try:
        linked = tuple(
            LinkedDevice(type=str(item["type"]), device_id=str(item["deviceId"]))
            for item in raw.get("linkedDevices") or ()
        )
        battery = raw.get("batteryLevel")
        return IglooDevice(
            device_id=str(raw["deviceId"]),
            type=str(raw["type"]),
            name=str(raw.get("deviceName") or raw["deviceId"]),
            battery_level=int(battery) if battery is not None else None,
            linked_devices=linked,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise IgloohomeProtocolError(f"unreadable device: {err!r}") from err


class IgloohomeClient:
    """One igloohome account. Build it anywhere; the HTTP session opens on first use."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        base_url: str | None = None,
        token_url: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._base = (base_url or DEFAULT_API_BASE).rstrip("/")
        if token_url is not None:
            self._token_url = token_url
        elif base_url is not None:
            self._token_url = _token_url_for(self._base)
        else:
            self._token_url = DEFAULT_TOKEN_URL
        self._timeout = timeout
        self._clock = clock
        self._session = VendorSession(session, timeout)
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    async def close(self) -> None:
        await self._session.close()

    # -- token -----------------------------------------------------------------------------

    async def _access_token(self) -> str:
        async with self._token_lock:
            now = self._clock()
            if self._token is not None and now < self._token_expires_at:
                return self._token
            form = {"grant_type": "client_credentials", "scope": SCOPES}
            headers = {
                "Accept": "application/json",
                "Authorization": aiohttp.encode_basic_auth(self._client_id, self._client_secret),
            }
            async with (
                asyncio.timeout(self._timeout),
                self._session.get().post(self._token_url, data=form, headers=headers) as response,
            ):
                body = await read_body(response)
            if response.status in (400, 401, 403):
                error = body.get("error") if isinstance(body, dict) else None
                raise IgloohomeAuthError(response.status, str(error or "refused"))
            if response.status >= 300:
                raise IgloohomeHttpError(response.status, _message_of(body))
            if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
                raise IgloohomeProtocolError("the token answer has no access_token")
            try:
                lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
            except (TypeError, ValueError):
                lifetime = DEFAULT_TOKEN_LIFETIME
            self._token = str(body["access_token"])
            self._token_expires_at = now + max(lifetime - TOKEN_EXPIRY_MARGIN, 0.0)
            log.debug("igloohome token obtained, valid for %.0f s", lifetime)
            return self._token

    def _forget_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    # -- requests --------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json: object = None) -> Any:
        """One API call; a token refused once (revoked early) is renewed and the call repeated."""
        url = f"{self._base}{path}"
        for attempt in (1, 2):
            token = await self._access_token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            async with (
                asyncio.timeout(self._timeout),
                self._session.get().request(method, url, json=json, headers=headers) as response,
            ):
                body = await read_body(response)
            if response.status == 401 and attempt == 1:
                self._forget_token(token)
                continue
            if response.status >= 300:
                raise IgloohomeHttpError(
                    response.status,
                    _message_of(body),
                    parse_retry_after(response.headers.get("Retry-After")),
                )
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    # -- endpoints -------------------------------------------------------------------------

    async def get_devices(self) -> list[IglooDevice]:
        body = await self._request("GET", "/devices")
        if not isinstance(body, dict) or not isinstance(body.get("payload"), list):
            raise IgloohomeProtocolError("the device list has no payload")
        if body.get("nextCursor"):
            # The query parameter that takes ``nextCursor`` is not in the public material we
            # could check, so only the first page is read; say so rather than guess.
            log.warning("igloohome lists more devices than its first page; only that page is used")
        return [_parse_device(raw) for raw in body["payload"]]

    async def get_device(self, device_id: str) -> IglooDevice:
        return _parse_device(await self._request("GET", f"/devices/{quote(device_id, safe='')}"))

    async def create_algopin(
        self,
        device_id: str,
        kind: AlgoPinKind,
        *,
        start: str,
        end: str | None,
        access_name: str,
        variance: int = 1,
    ) -> AlgoPin:
        """Ask igloohome to compute an algoPIN; ``start``/``end`` are on-the-hour local times."""
        payload: dict[str, object] = {
            "variance": variance,
            "startDate": start,
            "accessName": access_name,
        }
        if end is not None:
            payload["endDate"] = end
        path = f"/devices/{quote(device_id, safe='')}/algopin/{kind.value}"
        body = await self._request("POST", path, json=payload)
        if not isinstance(body, dict) or body.get("pin") is None or body.get("pinId") is None:
            raise IgloohomeProtocolError("the algoPIN answer has no pin or pinId")
        return AlgoPin(pin=str(body["pin"]), pin_id=str(body["pinId"]))

    async def get_job(self, job_id: str) -> IglooJob:
        """A bridge job's state: done or not, its result, and until when the bridge may run it."""
        body = await self._request("GET", f"/jobs/{quote(job_id, safe='')}")
        if not isinstance(body, dict):
            raise IgloohomeProtocolError("the job status answer is not an object")
        response = body.get("jobResponse")
        response = response if isinstance(response, dict) else {}
        error = response.get("error") or response.get("errorCode") or body.get("error")
        return IglooJob(
            job_id=str(body.get("jobId") or job_id),
            completed=body.get("completed") is True,
            error=str(error) if error else None,
            expires_at=_parse_instant(body.get("expiryDate")),
        )

    async def create_bridge_job(
        self, device_id: str, bridge_id: str, job_type: int, job_data: object = None
    ) -> str:
        """Queue a job the bridge carries out on the lock; returns the job id."""
        path = f"/devices/{quote(device_id, safe='')}/jobs/bridges/{quote(bridge_id, safe='')}"
        body = await self._request("POST", path, json={"jobType": job_type, "jobData": job_data})
        if not isinstance(body, dict) or not body.get("jobId"):
            raise IgloohomeProtocolError("the bridge job answer has no jobId")
        return str(body["jobId"])
