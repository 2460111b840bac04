"""Nuki smart locks behind the LockProvider port, through the Nuki Web API.

A renter's PIN is a keypad-code authorization (type 13) on the smart lock, limited to the rental
window by ``allowedFromDate``/``allowedUntilDate``. Keypad codes are 6 digits, contain no 0 and do
not start with 12; a Smart Lock 3.0 or newer holds 200 of them, a 2.0 holds 100.

Creating one is awkward: ``PUT /smartlock/{id}/auth`` answers 204 with no body, so the new
authorization's id is found afterwards by listing the lock's keypad codes and matching name and code
(a code is unique on a lock, so the pair is too). Nuki applies the PUT asynchronously; the listing
is asked a few times. If the code still does not show, the call fails as ``LockUnavailable`` and the
retry adopts the code once it appears instead of creating a second one: ``create_code`` looks for
an existing code with the same name and PIN before it creates anything.

Windows are sent as exact UTC instants with no weekday or time-of-day limits (those fields are
optional and left out). Docs-silent points, read by assumption and kept in one place below: the
status Nuki gives a duplicate code (taken as 409), the wording of 400 answers (classified by
keywords) and the meaning of ``operationId`` on an authorization (taken as "still being applied").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Final

import aiohttp

from locks.confirm import Budget, settle
from locks.nuki.client import (
    ACTION_OPENER_OPEN,
    ACTION_UNLOCK,
    AUTH_TYPE_KEYPAD_CODE,
    SMARTLOCK_TYPE_OPENER,
    NukiAuth,
    NukiClient,
    NukiSmartlock,
    format_instant,
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
    LockUnavailable,
    ProgrammedCode,
    RejectionReason,
    UnlockResult,
)
from locks.vendor_http import VendorErrors, VendorHttpError, action_errors, port_errors

#: Nuki truncates nothing itself; longer names are refused, so Keyturn shortens them.
MAX_NAME_LENGTH: Final = 32
SERVER_STATE_OK: Final = 0
SERVER_STATE_OFFLINE: Final = 4
#: A smartlock log entry's completion state for an action that was carried out.
LOG_STATE_SUCCESS: Final = 0
#: How many of the newest log entries are read to find an action's own (the Web API's most).
LOG_PAGE: Final = 50
#: A log entry's ``trigger`` for an action asked through the Web API (as Keyturn's are); the
#: others are the lock's own (system, automatic), a person at the door (manual, button, the
#: keypad) or the Nuki app.
LOG_TRIGGER_WEB: Final = 4
#: Keypad codes a smart lock holds, by Smartlock ``type``; unknown types give no limit.
MAX_KEYPAD_CODES: Final[dict[int, int]] = {0: 100, 4: 200, 5: 200}
MODEL_NAMES: Final[dict[int, str]] = {
    0: "Smart Lock 1.0/2.0",
    1: "Box",
    2: "Opener",
    3: "Smart Door",
    4: "Smart Lock 3.0/4.0",
    5: "Smart Lock 5",
}
#: Nuki gives only a "critical" flag for batteries it cannot measure; Keyturn reads it as 10 %.
CRITICAL_BATTERY_LEVEL: Final = 0.1
#: Open-ended authorizations (staff codes made in the Nuki app) are reported with these bounds.
UNBOUNDED_START: Final = datetime.min.replace(tzinfo=UTC)
UNBOUNDED_END: Final = datetime.max.replace(tzinfo=UTC)

KEYPAD_CAPABILITIES: Final = (
    LockCapability.TIMED_PINS | LockCapability.UPDATE_WINDOW | LockCapability.REMOTE_DELETE
)


def keypad_code_problem(pin: str) -> str | None:
    """Why Nuki's keypad would refuse ``pin``, or None; the answer never repeats the PIN."""
    if len(pin) != 6 or not (pin.isascii() and pin.isdigit()):
        return "must be 6 digits"
    if "0" in pin:
        return "must not contain the digit 0"
    if pin.startswith("12"):
        return "must not start with 12"
    return None


def _smartlock_id(device_id: str) -> int:
    if not (device_id.isascii() and device_id.isdigit()):
        raise LockNotFound(f"{device_id!r} is not a Nuki smartlock id")
    return int(device_id)


ERRORS: Final = VendorErrors(
    vendor="Nuki",
    credentials_hint="check NUKI_API_TOKEN and its permissions",
    not_found="this smartlock or code",
    busy=frozenset({423}),  # the lock is busy with another operation
)


def _rejection_for(message: str, code_sent: bool) -> RejectionReason:
    # Nuki's 400 answers are not documented beyond "Bad parameter": read them by keyword.
    text = message.lower()
    if any(word in text for word in ("limit", "maximum", "too many", "no space")):
        return RejectionReason.NO_SPACE
    if code_sent and "code" in text:
        return RejectionReason.INVALID_CODE
    if "date" in text or "time" in text:
        return RejectionReason.INVALID_WINDOW
    return RejectionReason.OTHER


def _refusal(action: str, code_sent: bool) -> Callable[[VendorHttpError], LockError]:
    def refusal(err: VendorHttpError) -> LockError:
        if err.status == 409 and code_sent:
            # Assumed: the Swagger does not name the status of a duplicate keypad code.
            return LockRejected(
                RejectionReason.DUPLICATE_CODE,
                f"Nuki refused to {action}: another keypad code on the lock has this PIN",
            )
        return LockRejected(
            _rejection_for(err.message, code_sent), f"Nuki refused to {action}: {err.message}"
        )

    return refusal


@asynccontextmanager
async def _vendor_errors(action: str, *, code_sent: bool = False) -> AsyncIterator[None]:
    """Turn whatever the client raises into one of the port's errors."""
    async with port_errors(ERRORS, action, _refusal(action, code_sent)):
        yield


def _battery_level(smartlock: NukiSmartlock) -> float | None:
    level = (
        max(0.0, min(smartlock.battery_charge / 100, 1.0))
        if smartlock.battery_charge is not None
        else None
    )
    if smartlock.battery_critical:
        return min(level, CRITICAL_BATTERY_LEVEL) if level is not None else CRITICAL_BATTERY_LEVEL
    return level


def _lock_device(smartlock: NukiSmartlock) -> LockDevice:
    capabilities = LockCapability.REMOTE_UNLOCK | LockCapability.STATUS
    if smartlock.keypad_paired is not False:  # unknown (no config in the answer) counts as paired
        capabilities |= KEYPAD_CAPABILITIES
    return LockDevice(
        device_id=str(smartlock.smartlock_id),
        name=smartlock.name,
        capabilities=capabilities,
        constraints=CodeConstraints(
            lengths=(6,),
            no_zeros=True,
            cannot_start_with_12=True,
            max_active_codes=MAX_KEYPAD_CODES.get(smartlock.type),
        ),
        online=smartlock.server_state == SERVER_STATE_OK
        if smartlock.server_state is not None
        else None,
        battery_level=_battery_level(smartlock),
        model=MODEL_NAMES.get(smartlock.type, f"type {smartlock.type}"),
    )


def _same_instant(a: datetime | None, b: datetime) -> bool:
    return a is not None and abs(a - b) < timedelta(seconds=1)


def _status(auth: NukiAuth) -> CodeStatus:
    if auth.error:
        return CodeStatus.FAILED
    if auth.operation_id:
        return CodeStatus.SETTING
    return CodeStatus.SET


def _programmed(auth: NukiAuth, device_id: str) -> ProgrammedCode:
    warnings: list[str] = []
    if not auth.enabled:
        warnings.append("disabled")
    if auth.allowed_from is None or auth.allowed_until is None:
        warnings.append("no_time_limit")
    return ProgrammedCode(
        provider_ref=auth.id,
        device_id=device_id,
        pin=str(auth.code) if auth.code is not None else "",
        status=_status(auth),
        starts_at=auth.allowed_from or UNBOUNDED_START,
        ends_at=auth.allowed_until or UNBOUNDED_END,
        error=auth.error,
        warnings=tuple(warnings),
    )


def _find(auths: list[NukiAuth], name: str, code: int) -> NukiAuth | None:
    return next((a for a in auths if a.name == name and a.code == code), None)


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("access windows are aware datetimes")
    if ends_at <= starts_at:
        raise LockRejected(RejectionReason.INVALID_WINDOW, "the window ends before it starts")


class NukiLockProvider:
    """Nuki smart locks through the Nuki Web API; PINs are time-limited keypad codes."""

    name = "nuki"
    #: Nuki documents no per-device limit, only "SPAM/abuse protection"; each keypad code is
    #: sent to the lock over its bridge or Wi-Fi: the conservative pace, Seam's.
    pace = CONSERVATIVE_PACE

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        find_attempts: int = 5,
        find_interval: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        unlock_wait: float = 8.0,
        poll_interval: float = 1.0,
    ) -> None:
        """``find_attempts``/``find_interval``: how often to look for a code just created;
        ``unlock_wait``/``poll_interval``: how long and how often the log is read after an
        unlock."""
        self.unlock_wait = unlock_wait
        self.poll_interval = poll_interval
        self._client = NukiClient(api_token, base_url=base_url, timeout=timeout, session=session)
        self._find_attempts = max(find_attempts, 1)
        self._find_interval = find_interval

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> NukiLockProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def list_devices(self) -> list[LockDevice]:
        async with _vendor_errors("list smartlocks"):
            smartlocks = await self._client.list_smartlocks()
        return [_lock_device(s) for s in smartlocks]

    async def get_device(self, device_id: str) -> LockDevice:
        smartlock_id = _smartlock_id(device_id)
        async with _vendor_errors("get a smartlock"):
            smartlock = await self._client.get_smartlock(smartlock_id)
        return _lock_device(smartlock)

    async def _keypad_codes(self, smartlock_id: int) -> list[NukiAuth]:
        auths = await self._client.list_auths(smartlock_id, types=str(AUTH_TYPE_KEYPAD_CODE))
        return [a for a in auths if a.type == AUTH_TYPE_KEYPAD_CODE]

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        smartlock_id = _smartlock_id(request.device_id)
        if request.pin is None:
            raise LockRejected(
                RejectionReason.INVALID_CODE, "Nuki keypad codes are chosen by Keyturn: pass a PIN"
            )
        problem = keypad_code_problem(request.pin)
        if problem is not None:
            raise LockRejected(RejectionReason.INVALID_CODE, f"a Nuki keypad code {problem}")
        _check_window(request.starts_at, request.ends_at)
        name = request.name[:MAX_NAME_LENGTH]
        code = int(request.pin)
        async with _vendor_errors("create a keypad code", code_sent=True):
            smartlock = await self._client.get_smartlock(smartlock_id)
            if smartlock.keypad_paired is False:
                raise CapabilityMissing(f"Nuki lock {request.device_id} has no keypad paired")
            codes = await self._keypad_codes(smartlock_id)
            earlier = _find(codes, name, code)
            if earlier is not None:
                # An earlier attempt created it and its answer was lost: adopt, don't duplicate.
                if _same_instant(earlier.allowed_from, request.starts_at) and _same_instant(
                    earlier.allowed_until, request.ends_at
                ):
                    return _programmed(earlier, request.device_id)
                return await self._move_window(
                    earlier, request.device_id, request.starts_at, request.ends_at
                )
            if any(a.code == code for a in codes):
                raise LockRejected(
                    RejectionReason.DUPLICATE_CODE,
                    f"another keypad code on Nuki lock {request.device_id} has this PIN",
                )
            limit = MAX_KEYPAD_CODES.get(smartlock.type)
            if limit is not None and len(codes) >= limit:
                raise LockRejected(
                    RejectionReason.NO_SPACE,
                    f"Nuki lock {request.device_id} already holds {len(codes)} keypad codes",
                )
            await self._client.create_auth(
                smartlock_id,
                {
                    "type": AUTH_TYPE_KEYPAD_CODE,
                    "name": name,
                    "code": code,
                    "allowedFromDate": format_instant(request.starts_at),
                    "allowedUntilDate": format_instant(request.ends_at),
                    "remoteAllowed": False,
                },
            )
            for attempt in range(self._find_attempts):
                if attempt:
                    await asyncio.sleep(self._find_interval)
                created = _find(await self._keypad_codes(smartlock_id), name, code)
                if created is not None:
                    return _programmed(created, request.device_id)
        raise LockUnavailable(
            f"Nuki accepted the keypad code for lock {request.device_id} but has not listed it "
            "yet; retrying the create adopts it once it appears"
        )

    async def _move_window(
        self, auth: NukiAuth, device_id: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode:
        await self._client.update_auth(
            auth.smartlock_id,
            auth.id,
            {
                "name": auth.name,  # required by the update even when unchanged
                "allowedFromDate": format_instant(starts_at),
                "allowedUntilDate": format_instant(ends_at),
            },
        )
        updated = await self._client.get_auth(auth.smartlock_id, auth.id)
        # Nuki applies updates asynchronously: until the new window reads back, it is "setting".
        status = _status(updated)
        if status is CodeStatus.SET and not (
            _same_instant(updated.allowed_from, starts_at)
            and _same_instant(updated.allowed_until, ends_at)
        ):
            status = CodeStatus.SETTING
        code = _programmed(updated, device_id)
        return ProgrammedCode(
            provider_ref=code.provider_ref,
            device_id=device_id,
            pin=code.pin,
            status=status,
            starts_at=starts_at,
            ends_at=ends_at,
            error=code.error,
            warnings=code.warnings,
        )

    async def update_code_window(
        self, device_id: str, provider_ref: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode:
        smartlock_id = _smartlock_id(device_id)
        _check_window(starts_at, ends_at)
        async with _vendor_errors("move a keypad code's window"):
            auth = await self._client.get_auth(smartlock_id, provider_ref)
            if auth.type != AUTH_TYPE_KEYPAD_CODE:
                raise LockNotFound(f"Nuki authorization {provider_ref} is not a keypad code")
            return await self._move_window(auth, device_id, starts_at, ends_at)

    async def delete_code(self, device_id: str, provider_ref: str) -> None:
        smartlock_id = _smartlock_id(device_id)
        try:
            async with _vendor_errors("delete a keypad code"):
                await self._client.delete_auth(smartlock_id, provider_ref)
        except LockNotFound:
            return  # already gone

    async def get_code(self, device_id: str, provider_ref: str) -> ProgrammedCode | None:
        smartlock_id = _smartlock_id(device_id)
        try:
            async with _vendor_errors("read a keypad code"):
                auth = await self._client.get_auth(smartlock_id, provider_ref)
        except LockNotFound:
            return None
        if auth.type != AUTH_TYPE_KEYPAD_CODE:
            return None
        return _programmed(auth, device_id)

    async def list_codes(self, device_id: str) -> list[ProgrammedCode]:
        smartlock_id = _smartlock_id(device_id)
        async with _vendor_errors("list keypad codes"):
            codes = await self._keypad_codes(smartlock_id)
        return [_programmed(a, device_id) for a in codes]

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        """Ask Nuki to unlock (an Opener: to open). Nuki answers 204 and the lock acts later, so
        the confirmation is the action's entry in the smartlock log: the handle remembers the
        action and the newest entry before it, and only entries after that one count. An action
        POST whose answer was lost raises ``LockOutcomeUnknown``: it is never sent again."""
        smartlock_id = _smartlock_id(device_id)
        budget = Budget(within)
        async with _vendor_errors("unlock"):
            smartlock = await budget.before_send(
                "Nuki smartlock", self._client.get_smartlock(smartlock_id)
            )
            if smartlock.server_state == SERVER_STATE_OFFLINE:
                raise LockUnavailable(f"Nuki lock {device_id} is offline")
            action = (
                ACTION_OPENER_OPEN if smartlock.type == SMARTLOCK_TYPE_OPENER else ACTION_UNLOCK
            )
            before = await budget.before_send(
                "Nuki smartlock log", self._client.log(smartlock_id, limit=1)
            )
        async with action_errors(ERRORS, "unlock", _refusal("unlock", code_sent=False)):
            await budget.send("Nuki action", self._client.action(smartlock_id, action))
        handle = f"{action}:{before[0].id if before else ''}"
        return await self._confirm(device_id, handle, wait, budget)

    async def confirm_unlock(
        self, device_id: str, action_id: str, *, wait: float | None = None
    ) -> UnlockResult:
        """Look for the action in the smartlock log; an entry whose completion state is not
        success (motor blocked, busy, rejected…) means the door did not open."""
        return await self._confirm(device_id, action_id, wait, None)

    async def _confirm(
        self, device_id: str, action_id: str, wait: float | None, budget: Budget | None
    ) -> UnlockResult:
        """Only an entry of the action asked, triggered through the Web API and newer than the
        one the handle remembers, is the unlock's. When that one is no longer among the newest
        entries read, which of them are newer cannot be told: the unlock is not confirmed yet
        (a person unlocking at the door, or the lock's own actions, never count)."""
        smartlock_id = _smartlock_id(device_id)
        action_text, _, since = action_id.partition(":")
        action = int(action_text) if action_text.isdigit() else ACTION_UNLOCK

        async def read() -> UnlockResult | None:
            async with _vendor_errors("read the smartlock log"):
                entries = await self._client.log(smartlock_id, limit=LOG_PAGE)
            newer = entries
            if since:
                ids = [entry.id for entry in entries]
                if since not in ids:
                    return None
                newer = entries[: ids.index(since)]
            for entry in newer:
                if entry.action != action or entry.trigger != LOG_TRIGGER_WEB:
                    continue
                if entry.state is None:
                    continue
                if entry.state == LOG_STATE_SUCCESS:
                    return UnlockResult(confirmed=True, action_id=action_id)
                raise LockRejected(
                    RejectionReason.OTHER,
                    f"Nuki lock {device_id} did not unlock: completion state {entry.state}",
                )
            return None

        settled = await settle(
            read,
            wait=self.unlock_wait if wait is None else min(wait, self.unlock_wait),
            interval=self.poll_interval,
            budget=budget,
        )
        return settled or UnlockResult(confirmed=False, action_id=action_id)
