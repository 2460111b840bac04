"""How long before a rental its codes are programmed, confirmed set, and its PIN sent.

Each location may set its own; what it leaves out comes from the environment's defaults. A code
must be on the lock before anyone checks that it is, and before its PIN goes out, so neither the
confirmation deadline nor the PIN lead may be longer than the code lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from storage.models import Location

#: The longest lead any of the three may have: thirty days, in minutes.
LEAD_MINUTES_MAX = 30 * 24 * 60


@dataclass(frozen=True)
class LeadTimes:
    #: Codes are programmed this long before their window opens (at once when closer).
    code_lead: timedelta = timedelta(minutes=1440)
    #: A code not confirmed set this long before its window raises an alert and a backup.
    confirm_before: timedelta = timedelta(minutes=60)
    #: The PIN is sent this long before the access window opens (at once when later).
    pin_lead: timedelta = timedelta(minutes=60)

    @classmethod
    def of_minutes(cls, code_lead: int, confirm_before: int, pin_lead: int) -> LeadTimes:
        return cls(
            timedelta(minutes=code_lead),
            timedelta(minutes=confirm_before),
            timedelta(minutes=pin_lead),
        )

    def at(self, location: Location) -> LeadTimes:
        """``location``'s lead times, those it does not set taken from these."""
        return LeadTimes(
            _minutes(location.code_lead_minutes, self.code_lead),
            _minutes(location.confirm_before_minutes, self.confirm_before),
            _minutes(location.pin_lead_minutes, self.pin_lead),
        )

    def minutes(self) -> tuple[int, int, int]:
        """Code lead, confirmation deadline and PIN lead in whole minutes."""
        return (
            _whole_minutes(self.code_lead),
            _whole_minutes(self.confirm_before),
            _whole_minutes(self.pin_lead),
        )


def lead_time_problems(code_lead: int, confirm_before: int, pin_lead: int) -> list[str]:
    """Which rule between the three leads (in minutes) is broken, as the operator reads it."""
    problems = []
    if confirm_before > code_lead:
        problems.append(
            f"confirm_before_minutes ({confirm_before}) must not exceed"
            f" code_lead_minutes ({code_lead}): a code is checked only after it is programmed"
        )
    if pin_lead > code_lead:
        problems.append(
            f"pin_lead_minutes ({pin_lead}) must not exceed"
            f" code_lead_minutes ({code_lead}): a PIN is sent only once its code is programmed"
        )
    return problems


def _minutes(value: int | None, default: timedelta) -> timedelta:
    return default if value is None else timedelta(minutes=value)


def _whole_minutes(lead: timedelta) -> int:
    return int(lead.total_seconds() // 60)
