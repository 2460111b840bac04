"""Whether a value a person typed fits the column it is looked up in.

Tortoise validates a filter's value against its column before querying: a reference, lock key
or phone number longer than its column raises ValidationError instead of finding nothing. A
lookup by typed text asks here first and treats a value that does not fit as not found.
"""

from __future__ import annotations

from functools import cache

from tortoise.models import Model


def fits_column(model: type[Model], field: str, value: str) -> bool:
    """True when ``value`` is no longer than ``model.field``'s column allows."""
    longest = _max_lengths(model).get(field)
    return longest is None or len(value) <= longest


@cache
def _max_lengths(model: type[Model]) -> dict[str, int]:
    """The text columns' lengths, as the model describes itself."""
    fields = model.describe(serializable=True)["data_fields"]
    return {
        str(f["name"]): int(f["constraints"]["max_length"])
        for f in fields
        if "max_length" in (f.get("constraints") or {})
    }
