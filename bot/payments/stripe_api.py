"""The Stripe client every Stripe adapter calls through, and Stripe's errors turned into ours.

Every call goes through ``StripeClient`` (``client.v1.*``, ``*_async`` methods) with its own
``asyncio.timeout`` and, for a POST, the caller's idempotency key (``idempotent``), so an outbox
retry never charges twice.

The SDK's async HTTP client is chosen here rather than left to its import-time guess (httpx
when httpx and anyio happen to be importable, else aiohttp): aiohttp is ours anyway.
``StripeClient`` has no ``close``; ``close()`` below closes that HTTP client's session.

Stripe's errors become ours: a network failure, a timeout, 429, 409 or 5xx is
``PaymentUnavailable`` (try again later, with the same key); anything else Stripe refused
(card declined, invalid request, bad or restricted key, reused idempotency key) is
``PaymentRefused``. Neither message carries the API key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeVar

import aiohttp
import stripe

from flows.payments import PaymentRefused, PaymentUnavailable

if TYPE_CHECKING:
    from stripe import RequestOptions

_T = TypeVar("_T")

#: Set on a hold's session so a completed-but-unpaid session reads as "authorised", not "pending".
CAPTURE_METADATA_KEY: Final = "keyturn_capture"

_SECRET_PATTERN: Final = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+|\bwhsec_\S+")


def redact(text: str) -> str:
    """``text`` without any Stripe key or webhook secret in it."""
    return _SECRET_PATTERN.sub("[redacted]", text)


def _describe(operation: str, err: stripe.StripeError) -> str:
    parts = [f"stripe {operation}: {type(err).__name__}"]
    if err.http_status is not None:
        parts.append(f"HTTP {err.http_status}")
    if err.code:
        parts.append(f"code {err.code}")
    param = getattr(err, "param", None)
    if isinstance(param, str) and param:
        parts.append(f"param {param}")
    # Stripe's own text for these two quotes part of the key: leave it out.
    if isinstance(err, stripe.AuthenticationError):
        parts.append("the API key was not accepted")
    elif isinstance(err, stripe.PermissionError):
        parts.append("the API key may not do this")
    elif err.user_message:
        parts.append(redact(str(err.user_message)))
    if err.request_id:
        parts.append(f"request {err.request_id}")
    return ", ".join(parts)


def _translate(operation: str, err: stripe.StripeError) -> PaymentUnavailable | PaymentRefused:
    message = _describe(operation, err)
    status = err.http_status
    if isinstance(err, stripe.APIConnectionError | stripe.RateLimitError):
        return PaymentUnavailable(message)
    if isinstance(err, stripe.APIError) and (status is None or status == 409):
        return PaymentUnavailable(message)  # no usable answer, or a lock timeout at Stripe
    if status is not None and status >= 500:
        return PaymentUnavailable(message)
    return PaymentRefused(message)


class StripeApi:
    """One StripeClient with a timeout on every call and Stripe's errors turned into ours."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        self._now = now or (lambda: datetime.now(UTC))
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"  # never the key

    async def close(self) -> None:
        """Close the HTTP session; the object is not used afterwards."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except TimeoutError:
            raise PaymentUnavailable(
                f"stripe {operation}: no answer within {self._timeout:g} s"
            ) from None
        except (stripe.AuthenticationError, stripe.PermissionError) as err:
            raise _translate(operation, err) from None
        except stripe.StripeError as err:
            raise _translate(operation, err) from err


def idempotent(key: str) -> RequestOptions:
    """The request options of a POST: its idempotency key, which must not be empty."""
    if not key:
        raise ValueError("an idempotency key is required")
    return {"idempotency_key": key}


#: Longer than any id or reference Keyturn stores (their columns hold 200 characters): such a
#: value names nothing of Keyturn's.
LONGEST_ID = 200


def text_of(value: object) -> str | None:
    """A string field short enough to name something of Keyturn's, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= LONGEST_ID else None


def id_of(value: object) -> str | None:
    """An expandable field: an id, or the expanded object with one."""
    if isinstance(value, Mapping):
        return text_of(value.get("id"))
    return text_of(value)
