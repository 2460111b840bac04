"""Reading a webhook's JSON body so that no body can crash the route that reads it.

``json.loads`` recurses once per nesting level (100,000 ``[`` raise RecursionError), reads
``NaN`` and ``1e999``, and gives integers of any size, which overflow a database column later
(a chat id of 10**30). A body is taken only when it nests at most ``max_depth`` levels and every
number fits a 64-bit column, and its text is Unicode a database can store (``"\ud800"``, a lone
surrogate, is valid JSON but no character); otherwise it is not JSON we take, and the route
answers 400.
"""

from __future__ import annotations

import json
import math

from flows.digits import INT64_MAX, INT64_MIN

#: Deeper than any provider's payload (a Telegram update nests fewer than ten levels).
MAX_DEPTH = 32


class UnreadableJson(ValueError):
    """The body is not JSON, or not JSON a provider would send."""


def _no_constant(name: str) -> object:
    raise UnreadableJson(f"{name} is not a JSON number")


def load_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """The JSON value of ``body``; UnreadableJson when it is malformed, nested deeper than
    ``max_depth``, or holds a number that is not finite or does not fit 64 bits."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise UnreadableJson("nested too deep") from None
    except ValueError as err:  # also invalid UTF-8, and integers of thousands of digits
        raise UnreadableJson("not JSON") from err
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise UnreadableJson("nested too deep")
            if isinstance(value, dict):
                pending.extend((key, depth + 1) for key in value)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(value, str) and not _storable(value):
            raise UnreadableJson("text that is not Unicode")
        elif _too_large(value):
            raise UnreadableJson("a number too large")
    return data


def _too_large(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    return isinstance(value, float) and not math.isfinite(value)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
