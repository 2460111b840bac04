"""Whether a value a person typed fits the column it is looked up in.

Tortoise validates a filter's value against its column before querying: a reference, lock key
or phone number longer than its column raises ValidationError instead of finding nothing. A
lookup by typed text asks here first and treats a value that does not fit as not found.
"""

from __future__ import annotations

from tortoise.models import Model


def fits_column(model: type[Model], field: str, value: str) -> bool:
    """True when ``value`` is no longer than ``model.field``'s column allows."""
    max_length = getattr(model._meta.fields_map[field], "max_length", None)
    return max_length is None or len(value) <= max_length
