"""PIN generation: random PINs a lock accepts, a guesser does not try first, and no other code
on the same lock can shadow.

PINs come from ``secrets`` and are drawn uniformly from the acceptable ones (rejection sampling,
then an exhaustive scan when the space is small), so no PIN is likelier than another. A PIN never
appears in a log line or an exception message.

Decisions, so that callers and staff see the same rules:

- ``violations`` is the lock's rules only (what a lock would refuse); ``weaknesses`` is ours, and
  ``generate_pin`` avoids both. Weak: one digit repeated, a repeated block (1212, 123123), a
  whole-code straight run up or down (1234, 9876, 012345, and across the 9–0 wrap: 7890, 8901,
  1098), palindromes (1221, 123321), doubled digits (1122, 112233), a list of commonly chosen
  PINs and keypad shapes (2580, 159753), and for 4 digits anything that reads as a year
  1900–2099 or a date (MMDD or DDMM). Six-digit dates are not excluded: too many to matter
  to a guesser at a keypad.
- ``no_triple_consecutive`` is the lock's rule, read by the name of Seam's
  ``no_triple_consecutive_ints`` ("no more than 3 digits in a row can be consecutive or the
  same"), taking the stricter reading that every lock with the rule accepts: no three digits in a
  row that are the same (555) or consecutive integers up or down (123, 321). It does not wrap: 890
  is allowed, because 8, 9, 0 are not consecutive integers.
- ``unique_first_four_digits`` compares a PIN with the other codes on the lock (``taken``), never
  with itself: two codes may not begin with the same four digits.
- A lock whose rules Keyturn does not all know (``unknown_rules``), or that sets its own PINs, gets
  no PIN from here: ``generate_pin`` raises ``UnknownPinRules`` rather than guess.
- Prefix overlap is a collision: many keypads accept a code as soon as the digits typed so far
  match one, so 1234 and 123456 on the same lock in overlapping windows shadow each other.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Collection, Iterable, Mapping

from locks.port import CodeConstraints, LockError

DIGITS = "0123456789"
#: Six digits when the lock allows it: a million codes, still easy to type.
PREFERRED_LENGTH = 6
#: Random draws per length before falling back to an exhaustive scan (or giving up).
RANDOM_TRIES = 500
#: Largest space (keys ** length) scanned exhaustively when random draws find nothing.
EXHAUSTIVE_LIMIT = 100_000

COMMON_PINS = frozenset(
    {
        # The most used PINs in leaked sets (most are also caught by a pattern rule below).
        "0000",
        "1111",
        "2222",
        "3333",
        "4444",
        "5555",
        "6666",
        "7777",
        "8888",
        "9999",
        "1234",
        "1212",
        "1004",
        "2000",
        "2001",
        "6969",
        "1010",
        "1313",
        "1122",
        "4321",
        "123456",
        "654321",
        "111111",
        "000000",
        "112233",
        "121212",
        "696969",
        "5683",  # LOVE
        "1357",
        "2468",
        "1379",
        # Keypad shapes: columns, diagonals, crosses.
        "2580",
        "0852",
        "1470",
        "0741",
        "3690",
        "0963",
        "159753",
        "147258",
        "147852",
        "258369",
        "789456",
        "456123",
        "741852",
        "963852",
    }
)


class PinSpaceExhausted(LockError):
    """No free PIN could be found for a lock: too many codes are active in the window."""


class UnknownPinRules(ValueError):
    """The lock has PIN rules Keyturn does not know, or sets its PINs itself: never guess one."""


def weaknesses(pin: str) -> list[str]:
    """Why a guesser would try this PIN early; empty when it looks random."""
    reasons: list[str] = []
    if not _is_digits(pin):
        return reasons
    if len(set(pin)) == 1:
        reasons.append("is one digit repeated")
    elif _is_repeated_block(pin):
        reasons.append("repeats a block of digits")
    if _is_straight_run(pin):
        reasons.append("is a straight run of digits")
    if len(pin) > 1 and pin == pin[::-1] and len(set(pin)) > 1:
        reasons.append("reads the same backwards")
    if len(pin) % 2 == 0 and pin[0::2] == pin[1::2] and len(set(pin)) > 1:
        reasons.append("is made of doubled digits")
    if pin in COMMON_PINS:
        reasons.append("is a commonly chosen PIN")
    if len(pin) == 4 and pin[:2] in ("19", "20"):
        reasons.append("looks like a year")
    if len(pin) == 4 and (_is_month_day(pin[:2], pin[2:]) or _is_month_day(pin[2:], pin[:2])):
        reasons.append("looks like a date")
    return reasons


def is_weak(pin: str) -> bool:
    """Whether ``generate_pin`` would never hand this PIN out (see ``weaknesses``)."""
    return bool(weaknesses(pin))


def violations(pin: str, constraints: CodeConstraints) -> list[str]:
    """Why a lock with these constraints would refuse this PIN; empty when it would take it.

    Only the lock's rules: a weak PIN is one a lock accepts, so check ``weaknesses`` as well
    before taking a PIN a staff member chose. The reasons never quote the PIN.
    """
    if not _is_digits(pin):
        return ["must contain only the digits 0–9"]
    reasons: list[str] = []
    if len(pin) not in constraints.lengths:
        allowed = ", ".join(str(n) for n in sorted(constraints.lengths)) or "none"
        reasons.append(f"must be one of these lengths: {allowed}")
    if constraints.no_zeros and "0" in pin:
        reasons.append("must not contain 0")
    lacking = sorted(set(pin) & constraints.missing_digits)
    if lacking:
        reasons.append(f"uses keys the keypad lacks: {', '.join(lacking)}")
    if constraints.cannot_start_with_12 and pin.startswith("12"):
        reasons.append("must not start with 12")
    if constraints.no_triple_consecutive and _has_triple_consecutive(pin):
        reasons.append("must not contain three digits in a row that are the same or consecutive")
    if len(set(pin)) < constraints.min_unique_digits:
        reasons.append(f"needs at least {constraints.min_unique_digits} different digits")
    return reasons


def collides(pin: str, taken: Iterable[str], *, unique_first_four: bool = False) -> bool:
    """Whether ``pin`` equals a taken PIN or one is a prefix of the other (see module docstring),
    or, with ``unique_first_four``, starts with the same four digits as a taken PIN."""
    return _TakenIndex(taken, unique_first_four=unique_first_four).collides(pin)


def generate_pin(
    constraints: CodeConstraints, *, taken: Collection[str] = (), length: int | None = None
) -> str:
    """A random, non-weak PIN meeting ``constraints`` that collides with none of ``taken``.

    ``taken`` holds the PINs active on the same lock in an overlapping window. The length is
    ``length`` when given (it must be allowed), else 6 when allowed, else the longest allowed;
    when that length has no free PIN left, the other allowed lengths are tried, longest first.

    Raises ``ValueError`` when the constraints admit no acceptable PIN at all, and
    ``PinSpaceExhausted`` when acceptable PINs exist but none is free.
    """
    if not constraints.keyturn_may_choose:
        unknown = ", ".join(constraints.unknown_rules) or "the lock sets its own PINs"
        raise UnknownPinRules(f"Keyturn cannot choose a PIN for this lock: {unknown}")
    alphabet = _alphabet(constraints)
    index = _TakenIndex(taken, unique_first_four=constraints.unique_first_four_digits)
    impossible = 0
    lengths = _lengths_to_try(constraints, length, len(alphabet))
    for n in lengths:
        pin, acceptable_exists = _search(n, alphabet, constraints, index)
        if pin is not None:
            return pin
        if acceptable_exists is False:
            impossible += 1
    if impossible == len(lengths):
        raise ValueError("the lock's constraints admit no acceptable (non-weak) PIN")
    raise PinSpaceExhausted(
        f"no free PIN of length {'/'.join(map(str, lengths))} "
        f"with {len(index)} codes active in the window"
    )


def common_constraints(constraints: Iterable[CodeConstraints]) -> CodeConstraints | None:
    """Constraints every one of these locks accepts, or None when they share no PIN length."""
    items = list(constraints)
    if not items:
        raise ValueError("common_constraints needs at least one lock's constraints")
    lengths = set(items[0].lengths).intersection(*(c.lengths for c in items[1:]))
    if not lengths:
        return None
    capacities = [c.max_active_codes for c in items if c.max_active_codes is not None]
    return CodeConstraints(
        lengths=tuple(sorted(lengths)),
        no_zeros=any(c.no_zeros for c in items),
        cannot_start_with_12=any(c.cannot_start_with_12 for c in items),
        no_triple_consecutive=any(c.no_triple_consecutive for c in items),
        min_unique_digits=max(c.min_unique_digits for c in items),
        missing_digits=frozenset[str]().union(*(c.missing_digits for c in items)),
        max_active_codes=min(capacities) if capacities else None,
        unique_first_four_digits=any(c.unique_first_four_digits for c in items),
        unknown_rules=tuple(sorted({r for c in items for r in c.unknown_rules})),
        lock_chooses_pin=any(c.lock_chooses_pin for c in items),
    )


def pin_for_locks(
    per_lock: Mapping[str, tuple[CodeConstraints, Collection[str]]],
    *,
    one_pin: bool = True,
) -> dict[str, str]:
    """PINs for one booking's locks (its asset's locks and the location's shared ones).

    One PIN on every lock when the locks' common constraints allow one that is free on all of
    them: a renter remembers one code. Otherwise it is all or nothing: each lock gets its own
    PIN meeting its own constraints, rather than some locks sharing and others not, so the renter
    is told "one code" or "a code per door", never a mix. ``one_pin=False``: a PIN per lock
    always, no two alike (an item whose own PIN is sent after the gate's).
    """
    if not per_lock:
        return {}
    common = common_constraints(constraints for constraints, _ in per_lock.values())
    if common is not None and one_pin:
        all_taken = [pin for _, taken in per_lock.values() for pin in taken]
        try:
            shared = generate_pin(common, taken=all_taken)
        except (ValueError, PinSpaceExhausted):
            pass
        else:
            return dict.fromkeys(per_lock, shared)
    pins: dict[str, str] = {}
    for key, (constraints, taken) in per_lock.items():
        try:
            # Each its own: a PIN chosen for one lock is taken for the next.
            pins[key] = generate_pin(constraints, taken=[*taken, *pins.values()])
        except PinSpaceExhausted as err:
            raise PinSpaceExhausted(f"lock {key}: {err}") from err
        except ValueError as err:
            raise ValueError(f"lock {key}: {err}") from err
    return pins


class _TakenIndex:
    """Taken PINs, indexed so that equality and prefix overlap are set look-ups."""

    def __init__(self, taken: Iterable[str], *, unique_first_four: bool = False) -> None:
        self._exact = frozenset(pin for pin in taken if pin)
        self._first_fours = (
            frozenset(pin[:4] for pin in self._exact if len(pin) >= 4)
            if unique_first_four
            else frozenset()
        )
        self._prefixes = frozenset(
            pin[:k] for pin in self._exact for k in range(1, len(pin) + 1)
        )  # every prefix of a taken PIN, the PIN included
        self._lengths = sorted({len(pin) for pin in self._exact})

    def __len__(self) -> int:
        return len(self._exact)

    def collides(self, pin: str) -> bool:
        if pin in self._prefixes or pin[:4] in self._first_fours:
            return True
        return any(pin[:k] in self._exact for k in self._lengths if k < len(pin))


def _alphabet(constraints: CodeConstraints) -> str:
    excluded = set(constraints.missing_digits) | ({"0"} if constraints.no_zeros else set())
    alphabet = "".join(d for d in DIGITS if d not in excluded)
    if not alphabet:
        raise ValueError("the lock's constraints exclude every digit")
    return alphabet


def _lengths_to_try(constraints: CodeConstraints, length: int | None, keys: int) -> list[int]:
    """Allowed lengths in order of preference, keeping only those that can meet min_unique."""
    if not constraints.lengths:
        raise ValueError("the lock allows no PIN length")
    if any(n < 1 for n in constraints.lengths):
        raise ValueError("PIN lengths must be positive")
    if constraints.min_unique_digits > keys:
        raise ValueError(
            f"{constraints.min_unique_digits} different digits are required "
            f"but the keypad offers only {keys}"
        )
    if length is not None:
        if length not in constraints.lengths:
            raise ValueError(f"length {length} is not one the lock allows")
        candidates = [length]
    else:
        rest = sorted(set(constraints.lengths) - {PREFERRED_LENGTH}, reverse=True)
        candidates = ([PREFERRED_LENGTH] if PREFERRED_LENGTH in constraints.lengths else []) + rest
    feasible = [n for n in candidates if n >= constraints.min_unique_digits]
    if not feasible:
        raise ValueError(
            f"{constraints.min_unique_digits} different digits do not fit in the allowed lengths"
        )
    return feasible


def _search(
    n: int, alphabet: str, constraints: CodeConstraints, taken: _TakenIndex
) -> tuple[str | None, bool | None]:
    """A free acceptable PIN of length n, and whether any acceptable one exists (None: unknown)."""
    saw_acceptable = False
    for _ in range(RANDOM_TRIES):
        pin = "".join(secrets.choice(alphabet) for _ in range(n))
        if _acceptable(pin, constraints):
            if not taken.collides(pin):
                return pin, True
            saw_acceptable = True
    if len(alphabet) ** n > EXHAUSTIVE_LIMIT:
        return None, (True if saw_acceptable else None)
    space = list(map("".join, itertools.product(alphabet, repeat=n)))
    free = [pin for pin in space if not taken.collides(pin) and _acceptable(pin, constraints)]
    if free:
        return secrets.choice(free), True
    return None, any(_acceptable(pin, constraints) for pin in space)


def _acceptable(pin: str, constraints: CodeConstraints) -> bool:
    return not violations(pin, constraints) and not is_weak(pin)


def _is_digits(pin: str) -> bool:
    return pin.isascii() and pin.isdigit()


def _is_repeated_block(pin: str) -> bool:
    n = len(pin)
    return any(n % size == 0 and pin[:size] * (n // size) == pin for size in range(1, n // 2 + 1))


def _is_straight_run(pin: str) -> bool:
    if len(pin) < 3:
        return False
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def _has_triple_consecutive(pin: str) -> bool:
    """Three digits in a row that are the same or consecutive integers up or down."""
    return any(
        int(c) - int(b) == int(b) - int(a) and abs(int(b) - int(a)) <= 1
        for a, b, c in zip(pin, pin[1:], pin[2:], strict=False)
    )


def _is_month_day(month: str, day: str) -> bool:
    days_in_month = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return 1 <= int(month) <= 12 and 1 <= int(day) <= days_in_month[int(month) - 1]
