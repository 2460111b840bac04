"""The conversation engine: order per address, concurrency across addresses, nothing lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.dispatcher import MessageSender, OutboxDispatcher
from flows.dialog import RenterDialog
from flows.effects import Outcome, Reply
from flows.engine import ConversationEngine, StepResult, Turn, TurnResult
from flows.i18n import Translator
from storage.models import Conversation, Message, OutboxEffect, Renter
from tests.conftest import FakeClock
from tests.support import RecordingChannel, inbound, small_inventory

TRANSLATOR = Translator()


def engine_for(clock: FakeClock, dialog: object | None = None) -> ConversationEngine:
    return ConversationEngine(dialog or RenterDialog(TRANSLATOR), TRANSLATOR, clock)  # type: ignore[arg-type]


def dispatcher_for(clock: FakeClock, channel: RecordingChannel) -> OutboxDispatcher:
    return OutboxDispatcher(clock, {"send_message": MessageSender({channel.name: channel})})


class GatedDialog:
    """Echoes each text; a text named in ``gates`` waits until its event is set."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.finished: list[str] = []

    async def step(self, turn: Turn) -> StepResult:
        self.started.append(turn.text)
        if turn.text in self.gates:
            await self.gates[turn.text].wait()
        self.finished.append(turn.text)
        seen = [*turn.data.get("seen", []), turn.text]  # type: ignore[misc]
        return StepResult("echo", {"seen": seen}, Outcome([Reply(f"echo {turn.text}")]))


async def test_greets_and_lists_locations_with_choices(database: str, clock: FakeClock) -> None:
    await small_inventory()
    channel = RecordingChannel()
    assert await engine_for(clock).handle(inbound("hi", at=clock.now())) == TurnResult.HANDLED
    assert await dispatcher_for(clock, channel).run_once() == 1
    [(message, _)] = channel.sent
    assert "Welcome to Keyturn" in message.text
    assert [c.label for c in message.choices] == ["Altstadt Depot", "Harbor Yard"]
    sent = await Message.get(direction="out")
    assert sent.status == "sent" and sent.provider_id == "PROV1"


async def test_picking_a_location_lists_items_with_prices(database: str, clock: FakeClock) -> None:
    await small_inventory()
    engine, channel = engine_for(clock), RecordingChannel()
    await engine.handle(inbound("hi", at=clock.now()))
    await engine.handle(inbound("2", at=clock.now()))
    await dispatcher_for(clock, channel).run_once()
    listing = channel.sent[-1][0]
    assert listing.text == "Items at Harbor Yard:"
    assert listing.choices[0].label == "T1 Utility trailer · $12.50/hour · $60.00/day"
    assert listing.choices[-1].value == "0"


async def test_two_messages_from_one_address_run_in_order(database: str, clock: FakeClock) -> None:
    dialog = GatedDialog()
    dialog.gates["first"] = asyncio.Event()
    engine = engine_for(clock, dialog)
    first = asyncio.create_task(engine.handle(inbound("first", at=clock.now())))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(engine.handle(inbound("second", at=clock.now())))
    await asyncio.sleep(0.05)
    assert dialog.started == ["first"], "the second turn must wait for the first"
    dialog.gates["first"].set()
    await asyncio.gather(first, second)
    assert dialog.finished == ["first", "second"]
    conversation = await Conversation.get()
    assert conversation.data == {"seen": ["first", "second"]}
    replies = await Message.filter(direction="out").order_by("id").values_list("body", flat=True)
    assert replies == ["echo first", "echo second"]


async def test_two_addresses_are_handled_concurrently(database: str, clock: FakeClock) -> None:
    dialog = GatedDialog()
    dialog.gates["slow"] = asyncio.Event()
    engine = engine_for(clock, dialog)
    slow = asyncio.create_task(
        engine.handle(inbound("slow", address="+15550100001", at=clock.now()))
    )
    await asyncio.sleep(0.05)
    # The other renter is answered while the first turn is still in progress.
    result = await asyncio.wait_for(
        engine.handle(inbound("quick", address="+15550100002", at=clock.now())), timeout=10
    )
    assert result == TurnResult.HANDLED
    assert dialog.finished == ["quick"]
    dialog.gates["slow"].set()
    await slow
    assert sorted(dialog.finished) == ["quick", "slow"]


async def test_a_flood_runs_a_bounded_number_of_turns_at_once(
    database: str, clock: FakeClock
) -> None:
    dialog = GatedDialog()
    engine = ConversationEngine(dialog, TRANSLATOR, clock, max_concurrent_turns=2)
    texts = [f"slow{i}" for i in range(4)]
    for text in texts:
        dialog.gates[text] = asyncio.Event()
    turns = [
        asyncio.create_task(engine.handle(inbound(text, address=f"+1555010000{i}", at=clock.now())))
        for i, text in enumerate(texts)
    ]
    await asyncio.sleep(0.1)
    assert len(dialog.started) == 2, "two turns run, the others wait"
    for text in texts:
        dialog.gates[text].set()
    assert await asyncio.wait_for(asyncio.gather(*turns), timeout=10) == [TurnResult.HANDLED] * 4
    assert sorted(dialog.finished) == texts


async def test_crash_between_commit_and_send_resends_once(database: str, clock: FakeClock) -> None:
    await small_inventory()
    message = inbound("hi", at=clock.now(), provider_id="SM-crash")
    assert await engine_for(clock).handle(message) == TurnResult.HANDLED
    # The process died here: the state and the reply are committed, nothing was sent.
    clock.advance(timedelta(minutes=3))
    restarted = engine_for(clock)
    channel = RecordingChannel()
    dispatcher = dispatcher_for(clock, channel)
    assert await restarted.handle(message) == TurnResult.DUPLICATE  # the provider retried
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert len(channel.sent) == 1
    assert "Welcome" in channel.sent[0][0].text
    assert await OutboxEffect.filter(kind="send_message").count() == 1


async def test_a_restart_resumes_the_conversation(database: str, clock: FakeClock) -> None:
    await small_inventory()
    await engine_for(clock).handle(inbound("hi", at=clock.now()))
    channel = RecordingChannel()
    await engine_for(clock).handle(inbound("1", at=clock.now()))  # a new engine: a restart
    await dispatcher_for(clock, channel).run_once()
    assert channel.texts()[-1] == "Items at Altstadt Depot:"


async def test_help_lang_and_garbage_get_useful_answers(database: str, clock: FakeClock) -> None:
    await small_inventory()
    engine, channel = engine_for(clock), RecordingChannel()
    for text in ("hi", "HELP", "lang es", "ayuda", "blorp", "x" * 5000, "99"):
        await engine.handle(inbound(text, at=clock.now()))
    await dispatcher_for(clock, channel).run_once()
    texts = channel.texts()
    assert "LANG <code>" in texts[1]
    assert texts[2] == "A partir de ahora te escribiré en español."
    assert "IDIOMA <código>" in texts[3]
    assert texts[4].startswith("Responde con un número del 1 al 2")
    assert texts[5].startswith("Responde con un número del 1 al 2")
    assert texts[6].startswith("Responde con un número del 1 al 2")
    conversation = await Conversation.get(channel="sandbox", address="+15550100001")
    renter = await Renter.get(id=conversation.renter_id)
    assert renter.language == "es"
    stored = await Message.filter(direction="in").order_by("id").values_list("body", flat=True)
    assert max(len(body) for body in stored) == 1600


async def test_language_follows_the_phone_number_country(database: str, clock: FakeClock) -> None:
    await small_inventory()
    engine, channel = engine_for(clock), RecordingChannel()
    await engine.handle(inbound("Hallo", address="+4915112345678", at=clock.now()))
    await engine.handle(inbound("hi", address="+15550100001", at=clock.now(), language_hint="fr"))
    await dispatcher_for(clock, channel).run_once()
    assert channel.texts()[0].startswith("Willkommen bei Keyturn!")
    assert channel.texts()[1].startswith("Bienvenue chez Keyturn")
