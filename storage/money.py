"""An amount of money: whole minor units of one ISO 4217 currency, whose exponent Babel knows.

The database keeps amounts as integers in the currency's minor unit (the ``*_cents`` columns
hold cents for USD, yen for JPY, fils for KWD): ``Money`` is what they mean. Parsing refuses
what the currency cannot hold, formatting follows the reader's locale, and Stripe gets the
minor units its API expects, which for a few currencies are not the ISO ones.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision, is_currency

#: The columns holding amounts are 32-bit integers.
MAX_MINOR = 2**31 - 1

# Stripe's "Supported currencies": these are zero-decimal in its API (an amount of 500 is
# ¥500), these three-decimal ones must end in 0 (rounded to ten fils), and every other
# currency has two decimals there, even where ISO has none (ISK, HUF: 100 is one króna).
_STRIPE_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
_STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

_AMOUNT = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?")


class MoneyError(ValueError):
    """An amount a currency cannot hold, or a currency that is not one; says why."""


@functools.cache
def exponent_of(currency: str) -> int:
    """How many decimals ``currency`` has (Babel's CLDR data); refuses an unknown code."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isascii() or not is_currency(code):
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code like 'USD'")
    precision: int = get_currency_precision(code)
    return precision


def _stripe_exponent(currency: str) -> int:
    if currency in _STRIPE_ZERO_DECIMAL:
        return 0
    if currency in _STRIPE_THREE_DECIMAL:
        return 3
    return 2


@dataclass(frozen=True)
class Money:
    """``minor`` units of ``currency`` (upper-cased ISO 4217 code): 1250 USD is $12.50."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError(f"an amount is a whole number of minor units, got {self.minor!r}")
        exponent_of(self.currency)
        object.__setattr__(self, "currency", self.currency.strip().upper())

    # -- making one --------------------------------------------------------------------------

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, written: str | int | Decimal, currency: str) -> Money:
        """An amount written in major units (``"1000"``, ``"12.50"``, ``"12,50"``).

        Refused with the reason: anything but plain digits, more decimals than the currency
        has (``"12.5"`` yen, ``"1,000"`` yen too: it is not read as a thousand), an amount
        Stripe cannot charge in that currency, or one too large to store."""
        exponent = exponent_of(currency)
        code = currency.strip().upper()
        text = _plain(written)
        found = _AMOUNT.fullmatch(text)
        if found is None:
            if text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
                raise MoneyError(f"must not be negative, got {text}")
            raise MoneyError(f"must be an amount like {_example(code)!r}, got {text!r}")
        whole, decimals = found.group(1), found.group(2) or ""
        if len(decimals) > exponent:
            if exponent == 0:
                raise MoneyError(f"{text} has decimal places, and {code} has none")
            raise MoneyError(f"{text} has more than {exponent} decimal places for {code}")
        too_long = len(whole.lstrip("0")) > 12
        minor = MAX_MINOR + 1 if too_long else int(whole + decimals.ljust(exponent, "0"))
        if minor > MAX_MINOR:
            raise MoneyError(f"is too large: {text} {code}")
        amount = cls(minor, code)
        if minor % amount.step:
            step = Money(amount.step, code).amount
            raise MoneyError(
                f"{text} cannot be charged in {code}, which Stripe charges in steps of {step}"
            )
        return amount

    @classmethod
    def from_stripe(cls, amount: int, currency: str) -> Money:
        """An amount in Stripe's minor units of ``currency`` (as its events carry them)."""
        code = currency.strip().upper()
        shift = _stripe_exponent(code) - exponent_of(code)
        if shift >= 0:
            minor, rest = divmod(amount, 10**shift)
            if rest:
                raise MoneyError(f"{amount} is a fraction of the smallest unit of {code}")
            return cls(minor, code)
        return cls(amount * 10**-shift, code)

    # -- reading it --------------------------------------------------------------------------

    @property
    def exponent(self) -> int:
        return exponent_of(self.currency)

    @property
    def amount(self) -> Decimal:
        """The amount in major units, with as many decimals as the currency has."""
        return Decimal(self.minor).scaleb(-self.exponent)

    @property
    def step(self) -> int:
        """The smallest amount, in minor units, that Stripe charges in this currency."""
        if self.currency in _STRIPE_THREE_DECIMAL:
            return int(10 ** max(self.exponent - 2, 0))
        shift = self.exponent - _stripe_exponent(self.currency)
        return int(10**shift) if shift > 0 else 1

    def format(self, locale: str) -> str:
        """As a reader of ``locale`` writes it: ``¥1,000``, ``1.000 ¥``, ``12,50 €``."""
        return _formatted(self.minor, self.currency, locale)

    def to_stripe(self) -> int:
        """The amount in the minor units Stripe's API expects for this currency."""
        shift = _stripe_exponent(self.currency) - self.exponent
        if self.minor % self.step:
            raise MoneyError(f"{self} cannot be charged: {self.currency} is charged in steps")
        if shift >= 0:
            return self.minor * int(10**shift)
        return self.minor // int(10**-shift)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    def __bool__(self) -> bool:
        return self.minor != 0

    # -- arithmetic in one currency ----------------------------------------------------------

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other!r}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __mul__(self, times: int) -> Money:
        return Money(self.minor * times, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def part(self, numerator: int, denominator: int) -> Money:
        """That share of the amount, rounded down to what can be charged (half of ¥1,001 is
        ¥500; half of KWD 5.010 is KWD 2.500)."""
        share = self.minor * numerator // denominator
        return Money(share - share % self.step, self.currency)


def _plain(written: str | int | Decimal) -> str:
    if isinstance(written, bool):
        return str(written)
    if isinstance(written, int):
        return str(written)
    if isinstance(written, Decimal):
        return format(written, "f") if written.is_finite() else str(written)
    return written.strip()


def _example(currency: str) -> str:
    exponent = exponent_of(currency)
    return "1500" if exponent == 0 else "12." + ("50" + "0" * exponent)[:exponent]


@functools.lru_cache(maxsize=4096)
def _formatted(minor: int, currency: str, locale: str) -> str:
    """Prices repeat across turns, so they are remembered."""
    amount = Decimal(minor).scaleb(-get_currency_precision(currency))
    return format_currency(amount, currency, locale=locale)
