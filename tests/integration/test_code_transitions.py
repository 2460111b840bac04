"""An access code changes state only along the declared table, through one guarded UPDATE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.codes import CODE_TRANSITIONS, IllegalTransition, move_code, predecessors
from storage.models import AccessCode, AccessCodeState, Location, Lock
from storage.uow import unit_of_work

S = AccessCodeState
AT = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)
EDGES = [(a, b) for a, nexts in CODE_TRANSITIONS.items() for b in sorted(nexts)]
NON_EDGES = [(a, b) for a in S for b in S if b not in CODE_TRANSITIONS[a]]


async def a_code(state: AccessCodeState) -> AccessCode:
    location, _ = await Location.get_or_create(
        slug="yard", defaults={"name": "Yard", "timezone": "UTC"}
    )
    lock, _ = await Lock.get_or_create(
        key="bay1",
        defaults={
            "provider": "simulated",
            "device_id": "bay1",
            "label": "Bay 1",
            "timezone": "UTC",
            "location": location,
        },
    )
    return await AccessCode.create(
        lock=lock,
        pin_encrypted="",
        starts_at=AT,
        ends_at=AT + timedelta(hours=2),
        state=state,
    )


def test_the_table_names_every_state_and_removed_is_final() -> None:
    assert set(CODE_TRANSITIONS) == set(S)
    assert CODE_TRANSITIONS[S.REMOVED] == frozenset()
    assert CODE_TRANSITIONS[S.REMOVING] == frozenset({S.REMOVED}), "a revocation is never undone"
    assert S.PENDING not in predecessors(S.REMOVED), "a code is revoked before it is removed"


@pytest.mark.parametrize(("start", "to"), EDGES, ids=[f"{a}-{b}" for a, b in EDGES])
async def test_every_legal_edge_is_taken(
    database: str, start: AccessCodeState, to: AccessCodeState
) -> None:
    code = await a_code(start)
    async with unit_of_work() as conn:
        assert await move_code(conn, code.id, to=to, expect=start, last_error="moved")
    await code.refresh_from_db()
    assert (code.state, code.last_error) == (to, "moved")


@pytest.mark.parametrize(("start", "to"), NON_EDGES, ids=[f"{a}-{b}" for a, b in NON_EDGES])
async def test_an_illegal_edge_raises_and_changes_nothing(
    database: str, start: AccessCodeState, to: AccessCodeState
) -> None:
    code = await a_code(start)
    with pytest.raises(IllegalTransition):
        async with unit_of_work() as conn:
            await move_code(conn, code.id, to=to, expect=start, last_error="moved")
    await code.refresh_from_db()
    assert (code.state, code.last_error) == (start, "")


async def test_a_code_that_moved_on_meanwhile_is_left_as_it_is(database: str) -> None:
    code = await a_code(S.REMOVING)
    async with unit_of_work() as conn:
        # Any state the table lets reach ``set``, but this one is being removed: not set.
        assert not await move_code(conn, code.id, to=S.SET)
        assert not await move_code(conn, code.id, to=S.REMOVED, where={"provider_ref": "x"})
    await code.refresh_from_db()
    assert code.state == S.REMOVING
    async with unit_of_work() as conn:
        assert await move_code(conn, code.id, to=S.REMOVED)
        assert not await move_code(conn, code.id, to=S.REMOVED), "once"
