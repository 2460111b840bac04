"""igloohome locks behind the LockProvider port, with algoPINs: codes igloohome computes offline.

An algoPIN is derived from the lock's secret and its validity window, so it works on a lock with no
connection at all. That has consequences the port makes explicit:

- Keyturn cannot choose the PIN: ``create_code`` needs ``request.pin is None``.
- A window igloohome cannot express is widened, never narrowed, so a renter is never locked out:
  the start is rounded DOWN to the hour and the end rounded UP, in the lock's own time zone
  (across daylight-saving changes the offset sent is the one in force at that instant). Windows up
  to 672 hours (28 days) become hourly algoPINs; longer ones become daily algoPINs, which run 29 to
  367 days and end at the same local time of day they start, so the end is moved later to the
  start's time of day (and to 29 days if shorter). The ``ProgrammedCode`` carries the window
  actually granted.
- A code valid for 24 hours or more must be used for the first time within 24 hours of its start:
  it carries the warning ``first_use_within_24h`` so the renter can be told.
- An algoPIN cannot be revoked or moved remotely (only from a phone within Bluetooth range), so
  ``update_code_window`` and ``delete_code`` raise ``CapabilityMissing``; the caller replaces the
  code, tells the renter and alerts ops.
- igloohome offers no listing of issued algoPINs (none in the public material), so ``list_codes``
  returns ``[]`` and ``get_code`` ``None``: Keyturn's own record is the only one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from locks.confirm import Budget, settle
from locks.igloohome.client import (
    BRIDGE_JOB_UNLOCK,
    DEVICE_TYPE_BRIDGE,
    DEVICE_TYPE_KEYPAD,
    AlgoPinKind,
    IglooDevice,
    IgloohomeAuthError,
    IgloohomeClient,
)
from locks.port import (
    CONSERVATIVE_PACE,
    CapabilityMissing,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockDevice,
    LockError,
    LockNotFound,
    LockRejected,
    ProgrammedCode,
    RejectionReason,
    UnlockResult,
)
from locks.vendor_http import VendorErrors, VendorHttpError, action_errors, port_errors
from locks.windows import ceil_hour, floor_hour

HOURLY_MAX: Final = timedelta(hours=672)
DAILY_MIN_DAYS: Final = 29
DAILY_MAX_DAYS: Final = 367
FIRST_USE_RULE_FROM: Final = timedelta(hours=24)

WARNING_FIRST_USE: Final = "first_use_within_24h"
WARNING_WIDENED: Final = "window_widened"

#: algoPINs are computed by igloohome (7 to 9 digits in the material we saw); Keyturn never picks
#: one, so these constraints only describe the keypad for planners.
IGLOOHOME_CONSTRAINTS: Final = CodeConstraints(lengths=(7, 8, 9))

NOT_REVOCABLE: Final = (
    "igloohome algoPINs cannot be revoked or changed remotely (only from the igloohome app within "
    "Bluetooth range of the lock); the code stays valid until its end"
)


@dataclass(frozen=True)
class AlgoPinWindow:
    """The algoPIN to ask for: its kind and on-the-hour local bounds covering the request."""

    kind: AlgoPinKind
    start: datetime  # aware, in the lock's zone, on the hour
    end: datetime  # aware, in the lock's zone, on the hour

    @property
    def start_date(self) -> str:
        return self.start.isoformat(timespec="seconds")

    @property
    def end_date(self) -> str:
        return self.end.isoformat(timespec="seconds")


def _at_local_time(day: datetime, like: datetime, zone: ZoneInfo) -> datetime:
    """``day``'s date at ``like``'s wall-clock time, as an existing instant in ``zone``."""
    wall = datetime.combine(day.date(), like.timetz().replace(tzinfo=None), tzinfo=zone)
    return wall.astimezone(UTC).astimezone(zone)


def plan_algopin_window(starts_at: datetime, ends_at: datetime, timezone: str) -> AlgoPinWindow:
    """The smallest algoPIN window igloohome accepts that covers ``[starts_at, ends_at]``."""
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("access windows are aware datetimes")
    if ends_at <= starts_at:
        raise LockRejected(RejectionReason.INVALID_WINDOW, "the window ends before it starts")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise LockRejected(RejectionReason.OTHER, f"unknown time zone {timezone!r}") from err
    start = floor_hour(starts_at, zone)
    end = ceil_hour(ends_at, zone)
    if end - start <= HOURLY_MAX:
        return AlgoPinWindow(AlgoPinKind.HOURLY, start, end)
    # Daily: whole days from the start's local time of day, at least 29 of them.
    end_same_time = _at_local_time(end, start, zone)
    if end_same_time < end:
        end_same_time = _at_local_time(end + timedelta(days=1), start, zone)
    if (end_same_time.date() - start.date()).days < DAILY_MIN_DAYS:
        end_same_time = _at_local_time(start + timedelta(days=DAILY_MIN_DAYS), start, zone)
    if (end_same_time.date() - start.date()).days > DAILY_MAX_DAYS:
        raise LockRejected(
            RejectionReason.INVALID_WINDOW,
            f"igloohome algoPINs last at most {DAILY_MAX_DAYS} days",
        )
    return AlgoPinWindow(AlgoPinKind.DAILY, start, end_same_time)


ERRORS: Final = VendorErrors(
    vendor="igloohome",
    credentials_hint="check IGLOOHOME_CLIENT_ID and IGLOOHOME_CLIENT_SECRET and that the API "
    "client has the algoPIN, device and bridge scopes",
    not_found="this device",
)


@asynccontextmanager
async def _vendor_errors(
    action: str, rejection: RejectionReason = RejectionReason.OTHER
) -> AsyncIterator[None]:
    """Turn whatever the client raises into one of the port's errors."""

    try:
        async with port_errors(ERRORS, action, _refusal(action, rejection)):
            yield
    except IgloohomeAuthError as err:  # the token endpoint's own refusal
        raise ERRORS.credentials_refused(err.status) from err


def _refusal(action: str, rejection: RejectionReason) -> Callable[[VendorHttpError], LockError]:
    def refusal(err: VendorHttpError) -> LockError:
        return LockRejected(rejection, f"igloohome refused to {action}: {err.message}")

    return refusal


@asynccontextmanager
async def _sending_errors(action: str) -> AsyncIterator[None]:
    """As ``_vendor_errors``, for the request that makes the lock act: a lost answer is
    ``LockOutcomeUnknown`` (see ``action_errors``)."""
    try:
        async with action_errors(ERRORS, action, _refusal(action, RejectionReason.OTHER)):
            yield
    except IgloohomeAuthError as err:  # refused at the token endpoint: nothing was sent
        raise ERRORS.credentials_refused(err.status) from err


def _linked_bridge(lock: IglooDevice, devices: list[IglooDevice]) -> str | None:
    for linked in lock.linked_devices:
        if linked.type == DEVICE_TYPE_BRIDGE:
            return linked.device_id
    for device in devices:
        if device.type == DEVICE_TYPE_BRIDGE and any(
            linked.device_id == lock.device_id for linked in device.linked_devices
        ):
            return device.device_id
    return None


def _is_lock(device: IglooDevice) -> bool:
    # Bridges relay jobs and keypads are accessories of a lock; algoPINs belong to the lock.
    return device.type not in (DEVICE_TYPE_BRIDGE, DEVICE_TYPE_KEYPAD)


def _lock_device(device: IglooDevice, bridge_id: str | None) -> LockDevice:
    capabilities = LockCapability.TIMED_PINS | LockCapability.OFFLINE_CODES
    if bridge_id is not None:
        capabilities |= LockCapability.REMOTE_UNLOCK
    battery = device.battery_level
    return LockDevice(
        device_id=device.device_id,
        name=device.name,
        capabilities=capabilities,
        constraints=IGLOOHOME_CONSTRAINTS,
        # igloohome reports no live online state; the battery is the level last synchronised.
        online=None,
        battery_level=max(0.0, min(battery / 100, 1.0)) if battery is not None else None,
        model=device.type,
    )


class IgloohomeLockProvider:
    """igloohome locks through the igloohome API; codes are algoPINs (see the module notes)."""

    name = "igloohome"
    #: igloohome documents no per-device limit (and an algoPIN is computed, not sent to the
    #: lock): the conservative pace, Seam's.
    pace = CONSERVATIVE_PACE

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
        unlock_wait: float = 8.0,
        poll_interval: float = 1.0,
    ) -> None:
        """``base_url`` is the API root (``…/igloohome``); the token endpoint defaults to
        ``/oauth2/token`` on the same host when ``base_url`` is given, igloohome's own otherwise.
        ``unlock_wait``/``poll_interval``: how long and how often an unlock's job is read."""
        self.unlock_wait = unlock_wait
        self.poll_interval = poll_interval
        self._client = IgloohomeClient(
            client_id,
            client_secret,
            base_url=base_url,
            token_url=token_url,
            timeout=timeout,
            clock=clock,
            session=session,
        )

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> IgloohomeLockProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def list_devices(self) -> list[LockDevice]:
        async with _vendor_errors("list devices"):
            devices = await self._client.get_devices()
        return [_lock_device(d, _linked_bridge(d, devices)) for d in devices if _is_lock(d)]

    async def get_device(self, device_id: str) -> LockDevice:
        async with _vendor_errors("get a device"):
            device = await self._client.get_device(device_id)
            devices = await self._client.get_devices()
        if not _is_lock(device):
            raise LockNotFound(f"igloohome device {device_id} is a {device.type}, not a lock")
        return _lock_device(device, _linked_bridge(device, devices))

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        if request.pin is not None:
            raise LockRejected(
                RejectionReason.INVALID_CODE,
                "igloohome algoPINs are computed by igloohome; a chosen PIN cannot be set",
            )
        window = plan_algopin_window(request.starts_at, request.ends_at, request.timezone)
        async with _vendor_errors("create an algoPIN", RejectionReason.INVALID_WINDOW):
            algopin = await self._client.create_algopin(
                request.device_id,
                window.kind,
                start=window.start_date,
                end=window.end_date,
                access_name=request.name,
            )
        starts_at = window.start.astimezone(UTC)
        ends_at = window.end.astimezone(UTC)
        warnings: list[str] = []
        if ends_at - starts_at >= FIRST_USE_RULE_FROM:
            warnings.append(WARNING_FIRST_USE)
        if starts_at != request.starts_at or ends_at != request.ends_at:
            warnings.append(WARNING_WIDENED)
        return ProgrammedCode(
            provider_ref=algopin.pin_id,
            device_id=request.device_id,
            pin=algopin.pin,
            status=CodeStatus.SET,
            starts_at=starts_at,
            ends_at=ends_at,
            offline=True,
            warnings=tuple(warnings),
        )

    async def update_code_window(
        self, device_id: str, provider_ref: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode:
        raise CapabilityMissing(f"{NOT_REVOCABLE}; issue a new code for the new window instead")

    async def delete_code(self, device_id: str, provider_ref: str) -> None:
        raise CapabilityMissing(f"{NOT_REVOCABLE}; alert ops so a person can act")

    async def get_code(self, device_id: str, provider_ref: str) -> ProgrammedCode | None:
        """Always ``None``: igloohome keeps no queryable record of algoPINs."""
        return None

    async def list_codes(self, device_id: str) -> list[ProgrammedCode]:
        """Always ``[]``: the igloohome API offers no listing of issued algoPINs."""
        return []

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        """Queue an unlock job on the bridge linked to the lock and wait for the job to be
        completed; a job not done yet comes back with its id, to be polled, never queued again.
        A job request whose answer was lost raises ``LockOutcomeUnknown``: never queued again."""
        budget = Budget(within)
        async with _vendor_errors("unlock"):
            devices = await budget.before_send("igloohome devices", self._client.get_devices())
        lock = next((d for d in devices if d.device_id == device_id and _is_lock(d)), None)
        if lock is None:
            raise LockNotFound(f"igloohome does not list lock {device_id}")
        bridge_id = _linked_bridge(lock, devices)
        if bridge_id is None:
            raise CapabilityMissing(
                f"igloohome lock {device_id} has no bridge linked: remote unlock needs one"
            )
        async with _sending_errors("unlock"):
            job_id = await budget.send(
                "igloohome bridge job",
                self._client.create_bridge_job(device_id, bridge_id, BRIDGE_JOB_UNLOCK),
            )
        return await self._confirm(action_id=job_id, wait=wait, budget=budget)

    async def confirm_unlock(
        self, device_id: str, action_id: str, *, wait: float | None = None
    ) -> UnlockResult:
        """Read the unlock job's status until it is completed; a job the lock refused, or one
        whose expiry passed before the bridge ran it, is refused."""
        return await self._confirm(action_id=action_id, wait=wait, budget=None)

    async def _confirm(
        self, *, action_id: str, wait: float | None, budget: Budget | None
    ) -> UnlockResult:
        async def read() -> UnlockResult | None:
            async with _vendor_errors("read the unlock job"):
                job = await self._client.get_job(action_id)
            if job.error is not None:
                raise LockRejected(
                    RejectionReason.OTHER, f"igloohome unlock job failed: {job.error}"
                )
            if job.completed:
                return UnlockResult(confirmed=True, action_id=action_id)
            if job.expires_at is not None and job.expires_at <= datetime.now(UTC):
                raise LockRejected(RejectionReason.OTHER, "igloohome unlock job expired unrun")
            return None

        settled = await settle(
            read,
            wait=self.unlock_wait if wait is None else min(wait, self.unlock_wait),
            interval=self.poll_interval,
            budget=budget,
        )
        return settled or UnlockResult(confirmed=False, action_id=action_id)
