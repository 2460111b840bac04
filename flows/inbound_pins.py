"""A renter who types their own PIN ("my code 4821 does not work") gets that text stored sealed.

Outbound messages that carry a PIN are sealed at rest (``flows.notify.SEALED_KINDS``); an
inbound one is too when it holds one of the renter's current PINs. Digits may be written with
spaces, dots or dashes between them, and in any script's digits ("٤٨٢١"). Only a text with
enough digits for a PIN costs a query.
"""

from __future__ import annotations

import re
import unicodedata

from flows.access import LIVE_STATES
from storage.codes import sealed_pins_of_renter
from storage.models import AccessCodeState
from storage.sealing import Sealer, SealError

#: The shortest PIN any lock takes.
MIN_PIN_DIGITS = 4
#: Digits, possibly separated by spaces, dots or dashes, as people write numbers.
_DIGIT_RUN = re.compile(r"\d(?:[\s.\-]*\d)*")
#: A code being removed still opens the lock until its removal is confirmed.
CURRENT_STATES = (*LIVE_STATES, AccessCodeState.REMOVING)


def digit_runs(text: str) -> list[str]:
    """The runs of digits in ``text`` long enough to be a PIN, as ASCII digits."""
    runs = []
    for match in _DIGIT_RUN.finditer(text):
        digits = "".join(str(unicodedata.digit(c)) for c in match.group() if c.isdigit())
        if len(digits) >= MIN_PIN_DIGITS:
            runs.append(digits)
    return runs


async def holds_own_pin(renter_id: int, text: str, sealer: Sealer) -> bool:
    """True when ``text`` contains one of the renter's current PINs."""
    runs = digit_runs(text)
    if not runs:
        return False
    for value in await sealed_pins_of_renter(renter_id, CURRENT_STATES):
        try:
            pin = sealer.open(str(value))
        except SealError:
            continue
        if pin and any(pin in run for run in runs):
            return True
    return False
