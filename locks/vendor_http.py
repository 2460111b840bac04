"""What the lock vendors' own HTTP clients (igloohome, Nuki) share: their errors, and turning them
into the port's errors in one place.

A client raises ``VendorHttpError`` (an error status) or ``VendorProtocolError`` (a 2xx answer it
cannot read); network failures and timeouts leave it as ``aiohttp.ClientError`` and
``TimeoutError``. ``port_errors`` maps all of them: refused credentials → ``LockError`` with what
to check; 404 → ``LockNotFound``; 429, 5xx and the vendor's own "busy" statuses →
``LockUnavailable``; any other refusal → what the adapter's ``refusal`` says (``LockRejected``).
``action_errors`` does the same for a request that makes the lock act (an unlock), where a lost
answer is not "try again" but ``LockOutcomeUnknown``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from locks.port import LockError, LockNotFound, LockOutcomeUnknown, LockRateLimited, LockUnavailable

#: A gateway's "the server behind me did not answer in time": the request may have reached it.
GATEWAY_TIMEOUT = 504


class VendorSession:
    """The HTTP session a client opens on first use, or one the caller lends it (and closes)."""

    def __init__(self, session: aiohttp.ClientSession | None, timeout: float) -> None:
        self._session = session
        self._owned = session is None
        self._timeout = timeout

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._owned = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owned:
            await self._session.close()
        self._session = None


async def read_body(response: aiohttp.ClientResponse) -> Any:
    """The answer's JSON; its text when it is not JSON; None when it is empty."""
    text = await response.text()
    if not text:
        return None
    try:
        return await response.json(content_type=None)
    except ValueError:
        return text


#: The longest a provider's ``Retry-After`` holds a device's calls back: one asking for longer
#: (a misconfigured proxy, a date days away) is asked again then, rather than silencing the
#: device's codes for hours with no failure anybody sees.
LONGEST_RETRY_AFTER = 15 * 60.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """An answer's ``Retry-After`` in seconds from now: delay-seconds or an HTTP date
    (RFC 9110 10.2.3), at most ``LONGEST_RETRY_AFTER``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), LONGEST_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    wait = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), LONGEST_RETRY_AFTER)


class VendorHttpError(Exception):
    """The vendor's API answered with an HTTP error status."""

    vendor = "the vendor"

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{self.vendor} answered HTTP {status}: {message}")
        self.status = status
        self.message = message
        #: What a 429 answer's ``Retry-After`` asked for, in seconds.
        self.retry_after = retry_after


class VendorProtocolError(Exception):
    """The vendor's API answered 2xx with a body the client cannot read."""


@dataclass(frozen=True)
class VendorErrors:
    """How one vendor's refusals read."""

    vendor: str
    #: What to check when the credentials are refused (the settings, the API client's scopes).
    credentials_hint: str
    #: What a 404 means for this vendor ("this device", "this smartlock or code").
    not_found: str
    #: Statuses besides 429 and 5xx that mean "try again later" (Nuki: 423, the lock is busy).
    busy: Collection[int] = field(default_factory=frozenset)

    def credentials_refused(self, status: int) -> LockError:
        return LockError(
            f"{self.vendor} refused the credentials (HTTP {status}): {self.credentials_hint}"
        )


@asynccontextmanager
async def port_errors(
    errors: VendorErrors, action: str, refusal: Callable[[VendorHttpError], LockError]
) -> AsyncIterator[None]:
    """Turn whatever a vendor client raises into one of the port's errors."""
    vendor = errors.vendor
    try:
        yield
    except VendorHttpError as err:
        if err.status in (401, 403):
            raise errors.credentials_refused(err.status) from err
        if err.status == 404:
            raise LockNotFound(f"{vendor} does not know {errors.not_found} ({action})") from err
        if err.status == 429:
            raise LockRateLimited(
                f"{vendor} refused for its rate limit ({action})", err.retry_after
            ) from err
        if err.status >= 500 or err.status in errors.busy:
            raise LockUnavailable(f"{vendor} is unavailable ({action}): HTTP {err.status}") from err
        raise refusal(err) from err
    except VendorProtocolError as err:
        raise LockUnavailable(f"{vendor} gave an unreadable answer ({action})") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise LockUnavailable(
            f"{vendor} cannot be reached ({action}): {type(err).__name__}"
        ) from err


@asynccontextmanager
async def action_errors(
    errors: VendorErrors, action: str, refusal: Callable[[VendorHttpError], LockError]
) -> AsyncIterator[None]:
    """Like ``port_errors``, for a request that makes the lock act. An error status is the
    vendor's answer (nothing was done; a gateway's 504 excepted) and a connection that never
    opened sent nothing; anything else once the request went out (a timeout, a dropped
    connection, an answer that cannot be read) may have been taken: ``LockOutcomeUnknown``."""
    vendor = errors.vendor
    try:
        async with port_errors(errors, action, refusal):
            yield
    except LockUnavailable as err:
        cause = err.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError) or (
            isinstance(cause, VendorHttpError) and cause.status != GATEWAY_TIMEOUT
        ):
            raise
        raise LockOutcomeUnknown(
            f"{vendor} may have taken the request ({action}): {type(cause).__name__}"
        ) from err
