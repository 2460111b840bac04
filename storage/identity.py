"""An identity check's status and every legal move of it, each one guarded UPDATE. A decided or
withdrawn check is final; its document image is blanked by the move that decides it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import IdentityCheck
from storage.transitions import Transitions


class IdentityStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    #: Its booking was cancelled before a decision.
    WITHDRAWN = "withdrawn"


I = IdentityStatus  # noqa: E741
IDENTITY_TRANSITIONS: dict[IdentityStatus, frozenset[IdentityStatus]] = {
    I.PENDING: frozenset({I.APPROVED, I.REJECTED, I.WITHDRAWN}),
    I.APPROVED: frozenset(),
    I.REJECTED: frozenset(),
    I.WITHDRAWN: frozenset(),
}
IDENTITY_CHECKS = Transitions(IdentityCheck, "status", IDENTITY_TRANSITIONS, "identity check")


async def move_identity(
    conn: BaseDBAsyncClient, check_id: int, *, to: IdentityStatus, **fields: Any
) -> bool:
    """Decide (or withdraw) a pending check; False when it was decided meanwhile."""
    return await IDENTITY_CHECKS.move(conn, check_id, to=to, **fields)
