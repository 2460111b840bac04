"""Who answers a renter moves only along the declared hand-off table, in one guarded UPDATE: a
conversation changed since it was read, or a move the table forbids, changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.conversations import (
    CONVERSATION_TRANSITIONS,
    REQUESTED,
    Handling,
    IllegalTransition,
    handling,
    move_handling,
    save_turn,
)
from storage.dialog_states import move_states
from storage.models import Conversation, Renter
from storage.uow import unit_of_work

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
AGENT = 4242


async def _conversation(**fields: object) -> Conversation:
    return await Conversation.create(channel="sms", address="+15550100077", **fields)


def test_every_hand_off_state_is_in_the_table_and_leads_back_to_the_bot() -> None:
    assert set(CONVERSATION_TRANSITIONS) == set(Handling)
    for state, targets in CONVERSATION_TRANSITIONS.items():
        assert targets <= set(Handling)
        assert state == Handling.BOT or Handling.BOT in targets


async def test_a_waiting_conversation_is_taken_over_and_handed_back(database: str) -> None:
    conversation = await _conversation(data={"handoff": REQUESTED, "misunderstood": 2, "x": 1})
    assert handling(conversation) == Handling.WAITING
    async with unit_of_work() as conn:
        await move_handling(conn, conversation, Handling.TAKEN, agent_id=AGENT, at=NOW)
    stored = await Conversation.get(id=conversation.id)
    assert handling(stored) == Handling.TAKEN
    assert (stored.agent_id, stored.agent_since, stored.data) == (AGENT, NOW, {"x": 1})
    assert stored.version == 1
    async with unit_of_work() as conn:
        await move_handling(conn, stored, Handling.BOT, at=NOW)
    back = await Conversation.get(id=conversation.id)
    assert handling(back) == Handling.BOT
    assert (back.agent_id, back.agent_since, back.version) == (None, None, 2)


async def test_a_conversation_with_the_bot_cannot_be_handed_back_to_it(database: str) -> None:
    conversation = await _conversation()
    with pytest.raises(IllegalTransition):
        async with unit_of_work() as conn:
            await move_handling(conn, conversation, Handling.BOT, at=NOW)
    assert (await Conversation.get(id=conversation.id)).version == 0


async def test_a_move_from_a_state_read_before_another_change_changes_nothing(
    database: str,
) -> None:
    conversation = await _conversation()
    stale = await Conversation.get(id=conversation.id)
    async with unit_of_work() as conn:
        await move_handling(conn, conversation, Handling.TAKEN, agent_id=AGENT, at=NOW)
        await move_handling(conn, conversation, Handling.BOT, at=NOW)
    with pytest.raises(IllegalTransition):
        async with unit_of_work() as conn:
            await move_handling(conn, stale, Handling.TAKEN, agent_id=AGENT + 1, at=NOW)
    stored = await Conversation.get(id=conversation.id)
    assert (stored.agent_id, stored.version) == (None, 2)


async def test_waiting_for_a_person_is_the_renters_turn_to_write_not_a_move(
    database: str,
) -> None:
    conversation = await _conversation()
    with pytest.raises(IllegalTransition):
        async with unit_of_work() as conn:
            await move_handling(conn, conversation, Handling.WAITING, at=NOW)


async def test_a_renters_open_questions_move_and_a_turn_read_before_is_not_saved(
    database: str,
) -> None:
    renter = await Renter.create(name="Ana", phone="+15550100071")
    other = await Renter.create(name="Ben", phone="+15550100072")
    quoted = await Conversation.create(
        channel="sms", address="+15550100071", renter=renter, state="cancel_quote"
    )
    booked = await Conversation.create(
        channel="telegram", address="71", renter=renter, state="booked"
    )
    elsewhere = await Conversation.create(
        channel="sms", address="+15550100072", renter=other, state="cancel_quote"
    )
    async with unit_of_work() as conn:
        moved = await move_states(
            conn, renter.id, from_states=("quote", "cancel_quote"), to="handover", at=NOW
        )
    assert moved == 1
    states = {c.id: (c.state, c.version) for c in await Conversation.all()}
    assert states == {
        quoted.id: ("handover", 1),
        booked.id: ("booked", 0),
        elsewhere.id: ("cancel_quote", 0),
    }
    async with unit_of_work() as conn:  # the renter's YES, computed from the quote read before
        saved = await save_turn(
            conn, quoted, state="start", data={}, language="en", renter_id=renter.id, at=NOW
        )
    assert not saved
    assert (await Conversation.get(id=quoted.id)).state == "handover"
