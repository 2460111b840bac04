"""The wire side of Seam: a thin wrapper over the official SDK's ``AsyncSeam``.

Every call runs under ``asyncio.timeout`` and every SDK or HTTP failure leaves this module as one of
our ``LockError`` subclasses. Results stay SDK resources (``Device``, ``AccessCode``); mapping them
onto the port is the adapter's job.

Messages never carry the API key or a PIN: Seam's own error messages are included only after digit
runs that could be a PIN are masked.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import re
from collections.abc import Awaitable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx
from seam.auth import SeamInvalidTokenError
from seam.exceptions import (
    SeamActionAttemptFailedError,
    SeamActionAttemptTimeoutError,
    SeamError,
    SeamHttpApiError,
    SeamHttpInvalidInputError,
    SeamHttpInvalidResponseError,
    SeamHttpUnauthorizedError,
    SeamInvalidWebhookPayloadError,
)
from seam.options import SeamInvalidOptionsError
from seam.resources.access_code import AccessCode
from seam.resources.device import Device
from seam.seam import AsyncSeam
from seam.seam_webhook import SeamWebhook
from svix.webhooks import WebhookVerificationError as SeamWebhookVerificationError

from locks.port import (
    LockError,
    LockNotFound,
    LockOutcomeUnknown,
    LockRateLimited,
    LockRejected,
    LockUnavailable,
    RejectionReason,
)
from locks.vendor_http import parse_retry_after

T = TypeVar("T")

#: How often ``/action_attempts/get`` is asked while an unlock is pending.
ACTION_POLL_INTERVAL: Final = 0.5
#: Seam pages lists; we follow ``next_page_cursor`` but never forever.
MAX_PAGES: Final = 100

_PIN_LIKE = re.compile(r"\d{4,}")

#: Seam error types (HTTP 4xx ``error.type``) that say why a request was refused.
_REJECTION_BY_TYPE: Final[dict[str, RejectionReason]] = {
    "duplicate_access_code": RejectionReason.DUPLICATE_CODE,
    "duplicate_code_on_device": RejectionReason.DUPLICATE_CODE,
    "no_space_for_access_code_on_device": RejectionReason.NO_SPACE,
    "max_access_codes_reached": RejectionReason.NO_SPACE,
    "code_constraints_violated": RejectionReason.INVALID_CODE,
    "invalid_code_length": RejectionReason.INVALID_CODE,
}
#: For ``invalid_input``: the first refused parameter decides the reason.
_REJECTION_BY_PARAM: Final[dict[str, RejectionReason]] = {
    "code": RejectionReason.INVALID_CODE,
    "starts_at": RejectionReason.INVALID_WINDOW,
    "ends_at": RejectionReason.INVALID_WINDOW,
}
#: Failed action attempts that mean "the lock cannot be reached now" rather than "no".
_UNAVAILABLE_ACTION_ERRORS: Final = frozenset(
    {
        "device_offline",
        "device_disconnected",
        "hub_disconnected",
        "bridge_disconnected",
        "account_disconnected",
        "action_attempt_expired",
        "timeout",
        "provider_issue",
        "uncategorized_error",
    }
)


class SeamAuthError(LockRejected):
    """Seam refused the API key (malformed, revoked, or for another workspace).

    Retrying will not help until someone fixes ``SEAM_API_KEY``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(RejectionReason.OTHER, message)


class SeamNotFound(LockNotFound):
    """Seam answered 404; ``error_type`` tells a missing device from a missing code."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _redact(text: object) -> str:
    """Mask digit runs a PIN could hide in; keep the rest of a vendor message readable."""
    return _PIN_LIKE.sub("****", str(text))


def _rejection_for(err: SeamHttpApiError) -> RejectionReason:
    code = str(err.code or "")
    if code in _REJECTION_BY_TYPE:
        return _REJECTION_BY_TYPE[code]
    if isinstance(err, SeamHttpInvalidInputError):
        for invalid in err.validation_errors:
            if invalid.parameter_name in _REJECTION_BY_PARAM:
                return _REJECTION_BY_PARAM[invalid.parameter_name]
    return RejectionReason.OTHER


#: The ``Retry-After`` of the last 429 answer in this task, read off the response by an httpx
#: hook: the SDK's error keeps the status and body only.
_RETRY_AFTER: ContextVar[float | None] = ContextVar("seam_retry_after", default=None)


async def _note_retry_after(response: httpx.Response) -> None:
    if response.status_code == 429:
        _RETRY_AFTER.set(parse_retry_after(response.headers.get("Retry-After")))


def translate_api_error(
    err: SeamHttpApiError, what: str, retry_after: float | None = None
) -> LockError:
    """Turn a Seam error response into one of ours."""
    status = err.status_code
    detail = f"Seam {what}: {status} {err.code}: {_redact(err)}"
    if err.request_id:
        detail += f" (request {err.request_id})"
    if isinstance(err, SeamHttpUnauthorizedError) or status == 401:
        return SeamAuthError(f"Seam {what}: the API key was refused (401); check SEAM_API_KEY")
    if status == 404:
        return SeamNotFound(detail, str(err.code or "not_found"))
    if status == 429:
        # Seam's per-device limits (10 creations or updates a minute...): nothing was done.
        return LockRateLimited(detail, retry_after)
    if status >= 500:
        return LockUnavailable(detail)
    return LockRejected(_rejection_for(err), detail)


def _translate_status(err: httpx.HTTPStatusError, what: str) -> LockError:
    status = err.response.status_code
    detail = f"Seam {what}: HTTP {status} without a Seam error body"
    if status == 401:
        return SeamAuthError(f"Seam {what}: the API key was refused (401); check SEAM_API_KEY")
    if status == 404:
        return SeamNotFound(detail, "not_found")
    if status == 429:
        return LockRateLimited(detail, parse_retry_after(err.response.headers.get("Retry-After")))
    if status >= 500:
        return LockUnavailable(detail)
    return LockRejected(RejectionReason.OTHER, detail)


def _translate_action_failure(err: SeamActionAttemptFailedError, what: str) -> LockError:
    code = str(getattr(err, "code", "unknown_error"))
    return action_failure(code, what, _redact(err))


def action_failure(code: str, what: str, message: str = "") -> LockError:
    """An action attempt that ended in ``error`` of type ``code``: the lock could not be
    reached (retry later) or refused."""
    detail = f"Seam {what}: the action attempt failed: {code}" + (f": {message}" if message else "")
    if code in _UNAVAILABLE_ACTION_ERRORS:
        return LockUnavailable(detail)
    return LockRejected(RejectionReason.OTHER, detail)


#: Transport failures that happen before a request is sent.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: A gateway's "the server behind me did not answer in time": the request may have reached it.
GATEWAY_TIMEOUT: Final = 504


def _nothing_done(cause: BaseException | None) -> bool:
    """Whether a failed POST certainly did nothing: Seam answered with an error status (not a
    gateway's timeout), or the connection never opened."""
    if isinstance(cause, SeamHttpApiError):
        return cause.status_code != GATEWAY_TIMEOUT
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code != GATEWAY_TIMEOUT
    return isinstance(cause, _NOT_SENT)


def _pagination_cursor(page: object) -> str | None:
    pagination = getattr(page, "pagination", None)
    if not isinstance(pagination, dict) or not pagination.get("has_next_page"):
        return None
    cursor = pagination.get("next_page_cursor")
    return cursor if isinstance(cursor, str) and cursor else None


class SeamClient:
    """Seam's HTTP API as we use it, with a timeout on every call and our errors only."""

    def __init__(self, api_key: str, *, base_url: str | None = None, timeout: float = 10.0) -> None:
        if not api_key:
            # The SDK would silently fall back to the SEAM_API_KEY environment variable.
            raise SeamAuthError("Seam: no API key given")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        try:
            self._sdk = AsyncSeam(
                api_key=api_key,
                endpoint=base_url,
                timeout=timeout,
                wait_for_action_attempt=False,
                httpx_options={"event_hooks": {"response": [_note_retry_after]}},
            )
        except SeamInvalidTokenError as err:
            raise SeamAuthError(
                "Seam: SEAM_API_KEY is not a Seam API key (it must start with seam_)"
            ) from err
        except SeamInvalidOptionsError as err:
            raise SeamAuthError(f"Seam: invalid client options: {_redact(err)}") from err

    async def _run(self, what: str, call: Awaitable[T]) -> T:
        _RETRY_AFTER.set(None)
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as err:
            raise LockUnavailable(f"Seam {what}: no answer within {self.timeout:g}s") from err
        except SeamHttpApiError as err:
            raise translate_api_error(err, what, _RETRY_AFTER.get()) from err
        except SeamActionAttemptFailedError as err:
            raise _translate_action_failure(err, what) from err
        except SeamActionAttemptTimeoutError as err:
            raise LockUnavailable(f"Seam {what}: the lock did not confirm in time") from err
        except SeamHttpInvalidResponseError as err:
            raise LockUnavailable(f"Seam {what}: malformed answer: {_redact(err)}") from err
        except httpx.HTTPStatusError as err:
            raise _translate_status(err, what) from err
        except (httpx.TransportError, httpx.InvalidURL) as err:
            raise LockUnavailable(f"Seam {what}: unreachable ({type(err).__name__})") from err
        except SeamError as err:
            raise LockUnavailable(f"Seam {what}: {type(err).__name__}: {_redact(err)}") from err
        except ValueError as err:
            # Malformed JSON from a proxy, or a parameter the SDK refused before sending.
            raise LockUnavailable(f"Seam {what}: {type(err).__name__}") from err

    async def list_devices(self) -> list[Device]:
        devices: list[Device] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._run(
                "devices/list", self._sdk.devices.list(page_cursor=cursor, limit=500)
            )
            devices.extend(page)
            cursor = _pagination_cursor(page)
            if cursor is None:
                break
        return devices

    async def get_device(self, device_id: str) -> Device:
        return await self._run("devices/get", self._sdk.devices.get(device_id=device_id))

    async def create_access_code(
        self,
        *,
        device_id: str,
        code: str | None,
        name: str,
        starts_at: str,
        ends_at: str,
        common_code_key: str | None,
        offline: bool = False,
    ) -> AccessCode:
        create = self._sdk.access_codes.create
        if offline:  # Seam computes the PIN (no ``code``), rounding the window to whole hours
            request = create(
                device_id=device_id,
                name=name,
                starts_at=starts_at,
                ends_at=ends_at,
                is_offline_access_code=True,
                max_time_rounding="1hour",
            )
        else:
            request = create(
                device_id=device_id,
                code=code,
                name=name,
                starts_at=starts_at,
                ends_at=ends_at,
                common_code_key=common_code_key,
            )
        return await self._run("access_codes/create", request)

    async def update_access_code_window(
        self, *, access_code_id: str, device_id: str, starts_at: str, ends_at: str
    ) -> None:
        await self._run(
            "access_codes/update",
            self._sdk.access_codes.update(
                access_code_id=access_code_id,
                device_id=device_id,
                starts_at=starts_at,
                ends_at=ends_at,
                type="time_bound",
            ),
        )

    async def delete_access_code(self, *, access_code_id: str, device_id: str) -> None:
        await self._run(
            "access_codes/delete",
            self._sdk.access_codes.delete(access_code_id=access_code_id, device_id=device_id),
        )

    async def get_access_code(self, access_code_id: str) -> AccessCode:
        return await self._run(
            "access_codes/get", self._sdk.access_codes.get(access_code_id=access_code_id)
        )

    async def list_access_codes(self, device_id: str) -> list[AccessCode]:
        codes: list[AccessCode] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._run(
                "access_codes/list",
                self._sdk.access_codes.list(device_id=device_id, page_cursor=cursor),
            )
            codes.extend(page)
            cursor = _pagination_cursor(page)
            if cursor is None:
                break
        return codes

    async def unlock_door(self, device_id: str) -> str:
        """Ask Seam to unlock; returns the action attempt's id at once (the SDK is told not to
        wait): how it ends is read with ``action_attempt``, so a wait cut short keeps the id.

        Seam's refusal (an error status) is raised as usual: nothing was done. A connection
        that never opened sent nothing (``LockUnavailable``). Anything else once the request
        went out (a timeout, a dropped connection, a 504 from a gateway, an answer without an
        action attempt) may have reached Seam: ``LockOutcomeUnknown``, never sent again."""
        what = "locks/unlock_door"
        try:
            attempt: Any = await self._run(
                what,
                self._sdk.locks.unlock_door(device_id=device_id, wait_for_action_attempt=False),
            )
        except LockUnavailable as err:
            if _nothing_done(err.__cause__):
                raise
            raise LockOutcomeUnknown(f"Seam {what}: sent, outcome unknown ({err})") from err
        action_attempt_id = getattr(attempt, "action_attempt_id", None)
        if not isinstance(action_attempt_id, str) or not action_attempt_id:
            raise LockOutcomeUnknown(f"Seam {what}: the answer has no action_attempt_id")
        return action_attempt_id

    async def action_attempt(self, action_attempt_id: str) -> tuple[str, str | None]:
        """An action attempt's ``status`` (``pending``, ``success`` or ``error``) and, for an
        error, its ``error.type``."""
        attempt: Any = await self._run(
            "action_attempts/get",
            self._sdk.action_attempts.get(
                action_attempt_id=action_attempt_id, wait_for_action_attempt=False
            ),
        )
        status = str(getattr(attempt, "status", "") or "")
        error: Any = getattr(attempt, "error", None)
        error_type = error.get("type") if isinstance(error, dict) else getattr(error, "type", None)
        return status, (str(error_type) if error_type else None)

    async def close(self) -> None:
        await self._sdk.close()


# --- Webhooks -------------------------------------------------------------------------------------


class SeamWebhookInvalid(LockError):
    """A Seam webhook whose Svix signature is missing, wrong, or outside the 5-minute window.

    Answer with an error status: Seam (Svix) retries, and a forger gets nothing.
    """


class SeamWebhookUnreadable(SeamWebhookInvalid):
    """Correctly signed by Seam but not a readable event: retrying will not fix it, report it."""


#: Fields of an event that may carry a PIN; they never travel in ``SeamEvent.raw``.
_SECRET_EVENT_FIELDS: Final = frozenset({"code"})


@dataclass(frozen=True)
class SeamEvent:
    """One verified Seam event, normalized; ``raw`` (PIN removed) is for the audit trail only."""

    event_id: str
    event_type: str
    device_id: str | None
    access_code_id: str | None
    occurred_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def _event_time(payload: Mapping[str, Any]) -> datetime | None:
    for key in ("occurred_at", "created_at"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _optional_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def verify_seam_webhook(secret: str, body: bytes, headers: Mapping[str, str]) -> SeamEvent:
    """Check a Seam webhook's Svix signature on the raw body and return its event.

    ``headers`` are the request's headers as received (``svix-id``, ``svix-timestamp``,
    ``svix-signature``; any case). Raises ``SeamWebhookInvalid`` when the signature is missing,
    wrong or too old/new, and ``SeamWebhookUnreadable`` when a signed body is not an event.
    """
    try:
        webhook = SeamWebhook(secret)
    except Exception as err:  # svix: EmptyWebhookSecretError, binascii.Error
        raise SeamWebhookInvalid(
            "SEAM_WEBHOOK_SECRET is not a Svix signing secret (whsec_...)"
        ) from err
    try:
        payload_text = body.decode("utf-8")
        webhook.verify(payload_text, {str(k): str(v) for k, v in headers.items()})
    except SeamWebhookVerificationError as err:
        raise SeamWebhookInvalid(f"Seam webhook refused: {err}") from err
    except (SeamInvalidWebhookPayloadError, RecursionError) as err:  # or nested past reason
        raise SeamWebhookUnreadable("Seam webhook is signed but is not a Seam event") from err
    except (UnicodeDecodeError, binascii.Error, ValueError) as err:
        # A malformed signature header ("v1" without a comma, bad base64) or a non-UTF-8 body.
        raise SeamWebhookInvalid(f"Seam webhook refused: malformed ({type(err).__name__})") from err
    payload = json.loads(payload_text)  # verified above to be a JSON object with an event_id
    raw = {k: v for k, v in payload.items() if k not in _SECRET_EVENT_FIELDS}
    return SeamEvent(
        event_id=str(payload["event_id"]),
        event_type=str(payload["event_type"]),
        device_id=_optional_str(payload, "device_id"),
        access_code_id=_optional_str(payload, "access_code_id"),
        occurred_at=_event_time(payload),
        raw=raw,
    )
