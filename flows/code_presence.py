"""Whether a deleted code has really left its lock.

A provider's answer to a deletion proves nothing: Seam answers at once and removes later, and a
``404`` may come back while the device still holds the code. A code is gone only when the
provider reports it removed or the device's own list of codes lacks it.
"""

from __future__ import annotations

from locks import CodeStatus, LockError, LockProvider


async def left_on_lock(
    provider: LockProvider, device_id: str, provider_ref: str
) -> CodeStatus | None:
    """How the lock still holds a code after its deletion, or None once it is proved gone.

    A provider that cannot be asked now has proved nothing: the code is still removing."""
    try:
        found = await provider.get_code(device_id, provider_ref)
        if found is not None:
            return None if found.status == CodeStatus.REMOVED else found.status
        listed = await provider.list_codes(device_id)
    except LockError:
        return CodeStatus.REMOVING
    held = next((code for code in listed if code.provider_ref == provider_ref), None)
    if held is None or held.status == CodeStatus.REMOVED:
        return None
    return held.status
