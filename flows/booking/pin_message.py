"""The PIN message: the codes a renter is sent, in their language, and its template variables."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from flows.access import LIVE_STATES, AccessCodes
from flows.effects import Write
from flows.i18n import Translator, local_time
from storage.models import AccessCode, AccessCodeState, Asset, Booking, EffectState, OutboxEffect
from storage.sealing import Sealer


def one_line(value: str) -> str:
    """``value`` as a WhatsApp template parameter: no newlines or tabs, no runs of spaces."""
    return re.sub(r" {2,}", " ", re.sub(r"[\r\n\t]+", " ", value)).strip()


@dataclass(frozen=True)
class ReadyCodes:
    """A booking's codes, all set on their locks, and the writes that record the ones only now
    found set (offline codes whose PIN the vendor computes)."""

    codes: list[AccessCode]
    writes: list[Write] = field(default_factory=list)


async def moving_on_lock(codes: list[AccessCode], just_set: int | None = None) -> bool:
    """Whether a move of one of ``codes`` to its new window is still on its way to the lock
    (``just_set``'s own move is the one just answered, its row not yet done)."""
    for code in codes:
        if code.id == just_set:
            continue
        if await OutboxEffect.filter(
            idempotency_key__startswith=f"access:update:{code.id}:", state=EffectState.PENDING
        ).exists():
            return True
    return False


async def set_codes(
    access: AccessCodes, booking: Booking, now: datetime, *, settled: bool = False
) -> ReadyCodes | None:
    """The booking's codes when every one is set, else None. Offline codes whose PIN the
    vendor had not computed when they were made are looked up now; what was found is kept on
    the rows read here and recorded by the returned writes, in the caller's unit of work.
    ``settled``: None, too, while a code's move to a new window is on its way to its lock."""
    codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).prefetch_related(
        "lock"
    )
    writes: list[Write] = []
    for code in codes:
        if not (code.offline and code.state == AccessCodeState.PROGRAMMING):
            continue
        fields = await access.look_up(code)
        if fields is None:
            return None
        writes.append(access.record_set(code, fields, now))
        code.state = AccessCodeState.SET
        code.pin_encrypted = fields.get("pin_encrypted", code.pin_encrypted)
    if not codes or any(code.state != AccessCodeState.SET for code in codes):
        return None
    if settled and await moving_on_lock(codes):
        return None  # the windows the renter is told are the ones the locks hold
    return ReadyCodes(codes, writes)


async def pin_text(
    translator: Translator, sealer: Sealer, booking: Booking, codes: list[AccessCode], language: str
) -> str:
    asset = await Asset.get(id=booking.asset_id).select_related("location")
    tz = asset.location.timezone
    t = translator
    # Codes share one window, unless one is an offline code in whole hours: then each line
    # says its own, and the heading spans them all.
    windows = {(code.starts_at, code.ends_at) for code in codes}
    lines = []
    for code in sorted(codes, key=lambda c: (not c.lock.shared, c.lock.label)):
        line = t.text(
            language,
            "journey.pin_line",
            lock=code.lock.label,
            pin=sealer.open(code.pin_encrypted),
        )
        if len(windows) > 1:
            start = local_time(code.starts_at, tz, language)
            line += f" ({start} – {local_time(code.ends_at, tz, language)})"
        lines.append(line)
    text = t.text(
        language,
        "journey.pin",
        reference=booking.reference,
        codes="\n".join(lines),
        start=local_time(min(start for start, _ in windows), tz, language),
        end=local_time(max(end for _, end in windows), tz, language),
    )
    if any(code.offline for code in codes):
        text += "\n" + t.text(language, "journey.pin_offline_warning")
    return text


async def pin_variables(
    sealer: Sealer, booking: Booking, codes: list[AccessCode], language: str
) -> dict[str, str]:
    """The PIN template's variables: ``1`` the booking reference, ``2`` the PIN (each lock's,
    in the order of ``3``, when they differ), ``3`` the locks, ``4`` the window in local time.
    WhatsApp takes parameters of one line only, so each is flattened to one."""
    asset = await Asset.get(id=booking.asset_id).select_related("location")
    tz = asset.location.timezone
    ordered = sorted(codes, key=lambda c: (not c.lock.shared, c.lock.label))
    pins = [sealer.open(code.pin_encrypted) for code in ordered]
    start = local_time(min(code.starts_at for code in codes), tz, language)
    end = local_time(max(code.ends_at for code in codes), tz, language)
    values = {
        "1": booking.reference,
        "2": pins[0] if len(set(pins)) == 1 else ", ".join(pins),
        "3": ", ".join(code.lock.label for code in ordered),
        "4": f"{start} – {end}",
    }
    return {name: one_line(value) for name, value in values.items()}
