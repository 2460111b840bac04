"""Numbers people type (a choice, an id, an amount of hours): the one rule for reading them.

Only ASCII digits count. ``str.isdigit`` also says yes to ``²``, ``①`` and ``٣``, which ``int``
then refuses or reads as nobody meant, and an unbounded run of digits overflows whatever it is
turned into (a timedelta, a database integer). So a typed number is at most a few ASCII digits,
checked here, and is None otherwise: the caller answers with what to type.
"""

from __future__ import annotations

#: The largest id a 32-bit database column holds: ids typed by operators are checked against it.
DATABASE_ID_MAX = 2**31 - 1
#: The range of a 64-bit database column (Telegram user and chat ids are stored in one).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_ascii_number(text: str, *, most_digits: int) -> bool:
    """True when ``text`` is 1 to ``most_digits`` ASCII digits and nothing else."""
    return 0 < len(text) <= most_digits and text.isascii() and text.isdigit()


def typed_int(text: str, *, at_most: int) -> int | None:
    """``text`` as a number from 0 to ``at_most`` when it is ASCII digits only, else None."""
    if not is_ascii_number(text, most_digits=len(str(at_most))):
        return None
    number = int(text)
    return number if number <= at_most else None
