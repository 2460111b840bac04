"""What "a removal is pending" means for an access code marked ``removing``.

A code is marked removing in the transaction that queues its removal. From then on its removal is
pending while the removal effect is queued or in flight (its outbox row is still pending, claimed
by a worker or not), or, once the provider has accepted the deletion, while a check waits for the
provider to confirm it (a pending timer). A code marked removing with neither was left behind (a
removal that reported done while the code was still on the lock, a state an earlier release could
commit without its removal): nothing would take it off its lock, and reconciling queues its
removal again.
"""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import (
    AccessCode,
    AccessCodeState,
    EffectState,
    OutboxEffect,
    Timer,
    TimerState,
)

#: The outbox effect that takes a code off its lock.
REMOVE_EFFECT = "access.remove"
#: The timer that asks the provider whether a deletion it accepted has reached the lock.
REMOVAL_CHECK_TIMER = "access.removal_check"


def removal_check_key(code_id: int) -> str:
    return f"access:removal-check:{code_id}"


async def pending_removals(conn: BaseDBAsyncClient | None, code_ids: Iterable[int]) -> set[int]:
    """Those of ``code_ids`` whose removal is pending: an effect queued or in flight, or a
    deletion waiting for the provider's confirmation."""
    wanted = set(code_ids)
    if not wanted:
        return set()
    effects = (
        await OutboxEffect.filter(kind=REMOVE_EFFECT, state=EffectState.PENDING)
        .using_db(conn)
        .values_list("payload", flat=True)
    )
    checks = (
        await Timer.filter(kind=REMOVAL_CHECK_TIMER, state=TimerState.PENDING)
        .using_db(conn)
        .values_list("payload", flat=True)
    )
    pending = {_code_of(payload) for payload in [*effects, *checks]}
    return wanted & pending


async def stranded_removals(conn: BaseDBAsyncClient | None, lock_id: int) -> list[AccessCode]:
    """The codes on this lock marked removing whose removal is not pending."""
    removing = (
        await AccessCode.filter(lock_id=lock_id, state=AccessCodeState.REMOVING)
        .using_db(conn)
        .order_by("id")
    )
    pending = await pending_removals(conn, [code.id for code in removing])
    return [code for code in removing if code.id not in pending]


def _code_of(payload: object) -> int | None:
    if isinstance(payload, dict):
        code = payload.get("code")
        if isinstance(code, int):
            return code
    return None
