"""Seam behind the LockProvider port: devices, time-bound access codes and remote unlock.

Seam answers at once and programs the lock later: a created code is ``setting`` until Seam confirms
it on the device (``access_code.set_on_device``) or records why it could not
(``failed_to_set_on_device``, ``duplicate_code_on_device``,
``no_space_for_access_code_on_device``, ...). A failure already on the code when Seam answers is
raised as ``LockRejected``; one that arrives later shows as ``CodeStatus.FAILED`` with
``ProgrammedCode.error`` set to a ``RejectionReason`` value where one fits (``"duplicate_code"``,
``"no_space"``, ``"invalid_code"``) and to Seam's error code otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

from seam.resources.access_code import AccessCode
from seam.resources.device import Device

from locks.confirm import ActionFailed, Budget, settle
from locks.port import (
    SEAM_PACE,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockDevice,
    LockNotFound,
    LockRejected,
    ProgrammedCode,
    RejectionReason,
    UnlockResult,
    require,
)
from locks.seam.client import ACTION_POLL_INTERVAL, SeamClient, SeamNotFound, action_failure

#: Access-code errors after which Seam will not set the code until something changes.
_FAILURE_REASONS: Final[dict[str, RejectionReason | None]] = {
    "duplicate_code_on_device": RejectionReason.DUPLICATE_CODE,
    "no_space_for_access_code_on_device": RejectionReason.NO_SPACE,
    "code_constraints_violated": RejectionReason.INVALID_CODE,
    "failed_to_set_on_device": None,
    "failed_to_issue": None,
}
#: When several errors are present, the most specific one names the failure.
_FAILURE_PRECEDENCE: Final = (
    "duplicate_code_on_device",
    "no_space_for_access_code_on_device",
    "code_constraints_violated",
    "failed_to_issue",
    "failed_to_set_on_device",
)
_MISSING_DIGITS: Final[dict[str, frozenset[str]]] = {
    "cannot_contain_089": frozenset("089"),
    "cannot_contain_0789": frozenset("0789"),
}
#: Seam's documented ``code_constraints`` types that are not about the PIN's digits.
_NOT_PIN_RULES: Final = frozenset({"name_length", "name_must_be_unique", "start_date_in_future"})
#: Types after which Seam, not Keyturn, sets the PIN.
_LOCK_CHOOSES: Final = frozenset({"cannot_specify_pin_code", "pin_code_matches_existing_set"})
#: Every PIN rule Keyturn reads into ``CodeConstraints``.
_KNOWN_PIN_RULES: Final = frozenset(
    {
        "no_zeros",
        "cannot_start_with_12",
        "no_triple_consecutive_ints",
        "no_ascending_or_descending_sequence",
        "at_least_three_unique_digits",
        "no_all_same_digits",
        "unique_first_four_digits",
        *_MISSING_DIGITS,
        *_LOCK_CHOOSES,
    }
)
_FAR_FUTURE: Final = datetime.max.replace(tzinfo=UTC)
_SEAM_LOCK_CAPABILITIES: Final = frozenset({"lock", "access_code"})


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("access windows must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _codes_of(entries: Iterable[object], key: str) -> list[str]:
    """Read ``error_code``/``warning_code`` from SDK variants and from unknown ones alike."""
    found: list[str] = []
    for entry in entries:
        code = getattr(entry, key, None)
        if code is None and isinstance(entry, dict):
            code = entry.get(key)
        if isinstance(code, str) and code:
            found.append(code)
    return found


def code_failure(error_codes: Sequence[str]) -> tuple[str, RejectionReason] | None:
    """The failure that keeps a code off its lock, as (Seam error code, our reason), if any."""
    for seam_code in _FAILURE_PRECEDENCE:
        if seam_code in error_codes:
            return seam_code, _FAILURE_REASONS[seam_code] or RejectionReason.OTHER
    return None


def _status(code: AccessCode, failed: bool, now: datetime) -> CodeStatus:
    mutations = _codes_of(code.pending_mutations or (), "mutation_code")
    if code.status == "removing" or "deleting" in mutations:
        return CodeStatus.REMOVING
    if code.status == "set":  # on the lock and working, whatever else Seam has noted
        return CodeStatus.SET
    if failed:
        return CodeStatus.FAILED
    ends_at = _parse_time(code.ends_at)
    if code.status == "unset" and ends_at is not None and ends_at <= now:
        return CodeStatus.REMOVED
    if code.is_offline_access_code and code.code:
        return CodeStatus.SET  # computed by the vendor: it works once its PIN is known
    # "setting", "unset" before its window (Seam programs time-bound codes ahead), "unknown".
    return CodeStatus.SETTING


def to_programmed_code(code: AccessCode, *, now: datetime | None = None) -> ProgrammedCode:
    """Map a Seam access code onto the port's ``ProgrammedCode``."""
    errors = _codes_of(code.errors or (), "error_code")
    warnings = _codes_of(code.warnings or (), "warning_code")
    failure = code_failure(errors)
    error: str | None
    if failure is not None:
        seam_code, reason = failure
        error = seam_code if reason is RejectionReason.OTHER else reason.value
    else:
        error = errors[0] if errors else None
    if code.status == "unknown":
        warnings.append("seam_status_unknown")
    created = _parse_time(code.created_at) or datetime.now(UTC)
    return ProgrammedCode(
        provider_ref=code.access_code_id,
        device_id=code.device_id,
        pin=code.code or "",
        status=_status(code, failure is not None, now or datetime.now(UTC)),
        starts_at=_parse_time(code.starts_at) or created,
        ends_at=_parse_time(code.ends_at) or _FAR_FUTURE,
        offline=bool(code.is_offline_access_code),
        error=error,
        warnings=tuple(warnings),
        name=code.name or "",
    )


def _constraint_types(device: Device) -> list[str]:
    props = device.properties
    return _codes_of(props.code_constraints or () if props else (), "constraint_type")


def _name_max_length(device: Device) -> int | None:
    props = device.properties
    for constraint in (props.code_constraints or ()) if props else ():
        if getattr(constraint, "constraint_type", None) == "name_length":
            max_length = getattr(constraint, "max_length", None)
            if isinstance(max_length, int | float) and max_length > 0:
                return int(max_length)
    return None


def to_constraints(device: Device) -> CodeConstraints:
    props = device.properties
    kinds = set(_constraint_types(device))
    lengths = tuple(sorted({int(n) for n in (props.supported_code_lengths or ())})) if props else ()
    min_unique = 0
    if "no_all_same_digits" in kinds:
        min_unique = 2
    if "at_least_three_unique_digits" in kinds:
        min_unique = 3
    missing: frozenset[str] = frozenset()
    for kind, digits in _MISSING_DIGITS.items():
        if kind in kinds:
            missing |= digits
    max_codes = props.max_active_codes_supported if props else None
    return CodeConstraints(
        lengths=lengths or CodeConstraints().lengths,
        no_zeros="no_zeros" in kinds,
        cannot_start_with_12="cannot_start_with_12" in kinds,
        no_triple_consecutive=bool(
            kinds & {"no_triple_consecutive_ints", "no_ascending_or_descending_sequence"}
        ),
        min_unique_digits=min_unique,
        missing_digits=missing,
        max_active_codes=int(max_codes) if max_codes else None,
        unique_first_four_digits="unique_first_four_digits" in kinds,
        unknown_rules=tuple(sorted(kinds - _KNOWN_PIN_RULES - _NOT_PIN_RULES)),
        lock_chooses_pin=bool(kinds & _LOCK_CHOOSES),
    )


def to_capabilities(device: Device) -> LockCapability:
    supported = set(device.capabilities_supported or ())
    online_codes = device.can_program_online_access_codes
    if online_codes is None:  # older devices report only capabilities_supported
        online_codes = "access_code" in supported
    remote_unlock = device.can_remotely_unlock
    if remote_unlock is None:
        remote_unlock = "lock" in supported
    capabilities = LockCapability.STATUS | LockCapability.PUSHED_EVENTS
    if online_codes:
        capabilities |= (
            LockCapability.TIMED_PINS | LockCapability.UPDATE_WINDOW | LockCapability.REMOTE_DELETE
        )
    if device.can_program_offline_access_codes:
        capabilities |= LockCapability.OFFLINE_CODES
    if remote_unlock:
        capabilities |= LockCapability.REMOTE_UNLOCK
    return capabilities


def to_lock_device(device: Device) -> LockDevice:
    props = device.properties
    model = props.model if props else None
    battery = props.battery_level if props else None
    return LockDevice(
        device_id=device.device_id,
        name=device.display_name or (props.name if props else "") or device.device_id,
        capabilities=to_capabilities(device),
        constraints=to_constraints(device),
        online=props.online if props else None,
        battery_level=float(battery) if battery is not None else None,
        model=(model.display_name if model else "") or str(device.device_type or ""),
    )


def _is_lock(device: Device) -> bool:
    return bool(
        _SEAM_LOCK_CAPABILITIES & set(device.capabilities_supported or ())
        or device.can_program_online_access_codes
        or device.can_remotely_unlock
    )


class SeamLockProvider:
    """Locks reached through Seam (August, Yale, Schlage, Kwikset, igloohome, Nuki, TTLock…)."""

    name = "seam"
    pace = SEAM_PACE

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        unlock_wait: float | None = None,
    ) -> None:
        self._client = SeamClient(api_key, base_url=base_url, timeout=timeout)
        #: The most an unlock waits for its action attempt before leaving it to a later poll
        #: (by default within one call's timeout, leaving room for the last poll's round trip).
        self.unlock_wait = timeout * 0.9 if unlock_wait is None else unlock_wait

    async def aclose(self) -> None:
        await self._client.close()

    async def list_devices(self) -> list[LockDevice]:
        return [to_lock_device(d) for d in await self._client.list_devices() if _is_lock(d)]

    async def get_device(self, device_id: str) -> LockDevice:
        return to_lock_device(await self._client.get_device(device_id))

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        device = await self._client.get_device(request.device_id)
        if request.offline:
            return await self._create_offline(device, request)
        require(to_lock_device(device), LockCapability.TIMED_PINS, self.name)
        if request.pin is not None and "cannot_specify_pin_code" in _constraint_types(device):
            raise LockRejected(
                RejectionReason.INVALID_CODE,
                f"seam lock {request.device_id} chooses its own PINs; ask without one",
            )
        name = request.name
        max_name = _name_max_length(device)
        if max_name is not None:
            name = name[:max_name]
        code = await self._client.create_access_code(
            device_id=request.device_id,
            code=request.pin,
            name=name,
            starts_at=_iso(request.starts_at),
            ends_at=_iso(request.ends_at),
            common_code_key=request.common_key,
        )
        programmed = to_programmed_code(code)
        failure = code_failure(_codes_of(code.errors or (), "error_code"))
        if failure is not None and programmed.status is CodeStatus.FAILED:
            seam_code, reason = failure
            raise LockRejected(
                reason,
                f"seam lock {request.device_id} refused code {code.access_code_id}: {seam_code}",
            )
        return programmed

    async def _create_offline(self, device: Device, request: CodeRequest) -> ProgrammedCode:
        """An offline code: Seam has the lock's vendor compute it, so it works while the lock is
        offline. It is usable once Seam returns its PIN, whatever its ``status`` says."""
        require(to_lock_device(device), LockCapability.OFFLINE_CODES, self.name)
        max_name = _name_max_length(device)
        code = await self._client.create_access_code(
            device_id=request.device_id,
            code=None,
            name=request.name[:max_name] if max_name is not None else request.name,
            starts_at=_iso(request.starts_at),
            ends_at=_iso(request.ends_at),
            common_code_key=None,
            offline=True,
        )
        programmed = to_programmed_code(code)
        if programmed.status is CodeStatus.FAILED:
            raise LockRejected(
                RejectionReason.OTHER,
                f"seam lock {request.device_id} refused an offline code: {programmed.error}",
            )
        return programmed  # SET with its PIN, or SETTING until Seam has computed it

    async def update_code_window(
        self, device_id: str, provider_ref: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode:
        await self._client.update_access_code_window(
            access_code_id=provider_ref,
            device_id=device_id,
            starts_at=_iso(starts_at),
            ends_at=_iso(ends_at),
        )
        code = await self.get_code(device_id, provider_ref)
        if code is None:
            raise LockNotFound(f"seam access code {provider_ref} vanished after its update")
        return code

    async def delete_code(self, device_id: str, provider_ref: str) -> None:
        try:
            await self._client.delete_access_code(access_code_id=provider_ref, device_id=device_id)
        except SeamNotFound as err:
            if err.error_type == "device_not_found":
                raise
            # Already gone: deleting is idempotent from the caller's point of view.

    async def get_code(self, device_id: str, provider_ref: str) -> ProgrammedCode | None:
        try:
            code = await self._client.get_access_code(provider_ref)
        except LockNotFound:
            return None
        if code.device_id != device_id:
            return None
        return to_programmed_code(code)

    async def list_codes(self, device_id: str) -> list[ProgrammedCode]:
        now = datetime.now(UTC)
        return [
            to_programmed_code(code, now=now)
            for code in await self._client.list_access_codes(device_id)
            if code.device_id == device_id
        ]

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        """Unlock and wait for the action attempt's outcome. An attempt that ended in error
        (the lock offline, jammed) did not open the door and is raised; one still pending, or
        whose outcome could not be read, comes back with its id to be polled, never re-sent.
        A request whose answer was lost raises ``LockOutcomeUnknown`` (see ``unlock_door``)."""
        budget = Budget(within)
        device = await budget.before_send("Seam devices/get", self.get_device(device_id))
        require(device, LockCapability.REMOTE_UNLOCK, self.name)
        action_attempt_id = await budget.send(
            "Seam locks/unlock_door", self._client.unlock_door(device_id)
        )
        try:
            return await self._settle(action_attempt_id, wait, budget)
        except ActionFailed as failed:
            raise failed.error from None

    async def confirm_unlock(
        self, device_id: str, action_id: str, *, wait: float | None = None
    ) -> UnlockResult:
        """Poll an unlock's action attempt; one that ended in error is refused (it is not sent
        again: its caller reports it)."""
        try:
            return await self._settle(action_id, wait)
        except ActionFailed as failed:
            raise LockRejected(RejectionReason.OTHER, str(failed.error)) from None

    async def _settle(
        self, action_attempt_id: str, wait: float | None, budget: Budget | None = None
    ) -> UnlockResult:
        async def read() -> UnlockResult | None:
            status, error_type = await self._client.action_attempt(action_attempt_id)
            if status == "success":
                return UnlockResult(confirmed=True, action_id=action_attempt_id)
            if status == "error":
                raise ActionFailed(action_failure(error_type or "unknown_error", "unlock_door"))
            return None  # pending (or a status this SDK does not know): ask again

        settled = await settle(
            read,
            wait=self.unlock_wait if wait is None else min(wait, self.unlock_wait),
            interval=ACTION_POLL_INTERVAL,
            budget=budget,
        )
        return settled or UnlockResult(confirmed=False, action_id=action_attempt_id)
