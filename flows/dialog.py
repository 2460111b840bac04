"""The renter dialog: greeting, locations and items with prices, HELP and LANG, and the routing
of every message to the step that answers it.

Every text comes from the translation catalogs through ``turn.t``; the step only reads the
inventory (``InventoryCache``) and returns what to say and which state to be in next.

Routing is declared, the way python-telegram-bot's ConversationHandler declares it: keywords
that work in any state (``ENTRY_POINTS``), then a photo (an ID), then per state the steps that
may answer (``STATES``, tried in order; a step that does not apply passes), then the fallbacks
(``FALLBACKS``). A step says on its result whether it understood the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from babel.dates import format_timedelta

from flows.digits import typed_int
from flows.effects import Audit, Outcome, Reply
from flows.engine import StepResult, Turn
from flows.i18n import SUPPORTED_LANGUAGES, Translator, fold, keyword_map
from flows.inventory_cache import InventoryCache
from flows.messages import Choice
from storage.money import Money

if TYPE_CHECKING:  # the journey's steps name these states: it is imported only for its type
    from flows.booking import Journey


class DialogState(StrEnum):
    """Every state a renter's conversation can be in (stored as its value)."""

    START = "start"
    PICK_LOCATION = "pick_location"
    PICK_ASSET = "pick_asset"
    #: An item is chosen: the renter says when.
    ASSET = "asset"
    #: The time asked for is taken: numbered free slots near it are offered.
    ALTERNATIVES = "alternatives"
    #: A price is quoted: YES holds it.
    QUOTE = "quote"
    #: Held, the payment link on its way.
    PAYING = "paying"
    #: A booking the renter has (or just made); keywords act on it.
    BOOKED = "booked"
    EXTEND_QUOTE = "extend_quote"
    CANCEL_QUOTE = "cancel_quote"
    #: A pickup or return under way: its photos, checklist and DONE (progress in its row).
    HANDOVER = "handover"


class Command(StrEnum):
    HELP = "help"
    LANG = "lang"
    MENU = "menu"
    BOOK = "book"
    YES = "yes"
    NO = "no"
    EXTEND = "extend"
    OPEN = "open"
    CODE = "code"
    CANCEL = "cancel"
    AGENT = "agent"
    STOP = "stop"
    START = "start"
    RETURN = "return"
    DONE = "done"


KEYWORDS = {command: f"keyword.{command.value}" for command in Command}
#: What a renter who sent STOP may still say and get an answer to.
WHILE_OPTED_OUT = frozenset({Command.START, Command.HELP, Command.STOP})
BOOKING_COMMANDS = frozenset(
    Command(c) for c in ("extend", "open", "code", "cancel", "agent", "return", "done")
)
BACK = "0"
#: The states whose question only YES or NO answers.
YES_NO_STATES = (DialogState.QUOTE, DialogState.EXTEND_QUOTE, DialogState.CANCEL_QUOTE)

#: A step the router may try: its answer, or None when it does not apply to this message.
Route = Callable[["RenterDialog", "Turn", str | None, list[str]], Awaitable["StepResult | None"]]


@dataclass(frozen=True)
class DialogSettings:
    business_name: str = "Keyturn"
    support_contact: str = ""


class RenterDialog:
    def __init__(
        self,
        translator: Translator,
        settings: DialogSettings | None = None,
        journey: Journey | None = None,
    ) -> None:
        self.settings = settings or DialogSettings()
        self.journey = journey
        self.inventory = journey.inventory if journey is not None else InventoryCache()
        self._keywords = keyword_map(translator, {c.value: k for c, k in KEYWORDS.items()})

    async def step(self, turn: Turn) -> StepResult:
        words = turn.text.split()
        command = self._keywords.get(fold(words[0])) if words else None
        if turn.opted_out and command not in WHILE_OPTED_OUT:
            return StepResult(turn.state, dict(turn.data))  # they asked for silence
        state = _state(turn.state)
        keyword = Command(command) if command is not None else None
        entry = self.ENTRY_POINTS.get(keyword) if keyword is not None else None
        own = self.DIALOG_KEYWORDS.get(keyword) if keyword is not None else None
        routes: list[Route] = [
            *([entry] if entry is not None else []),
            RenterDialog.PHOTO,
            *([own] if own is not None else []),
            *(self.STATES.get(state, ()) if state is not None else ()),
            *self.FALLBACKS,
        ]
        for route in routes:
            result = await route(self, turn, command, words)
            if result is not None:
                return result
        raise AssertionError("the last fallback always answers")

    # -- routes -----------------------------------------------------------------------------

    async def _opt_out(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        if self.journey is None:
            return None
        return self.journey.opt_out(turn, stop=command == Command.STOP)

    async def _book(self, turn: Turn, command: str | None, words: list[str]) -> StepResult | None:
        if self.journey is None:
            return None
        if len(words) < 3:
            return self._stay(turn, Reply(turn.t("journey.book_usage")), understood=False)
        return await self.journey.when(turn, words[1].upper(), " ".join(words[2:]))

    async def _answer(self, turn: Turn, command: str | None, words: list[str]) -> StepResult | None:
        if self.journey is None:
            return None
        return await self.journey.answer(turn, yes=command == Command.YES)

    async def _on_booking(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        if self.journey is None:
            return None
        return await self.journey.command(turn, str(command), words[1:])

    async def _help_route(self, turn: Turn, command: str | None, words: list[str]) -> StepResult:
        return self._stay(turn, Reply(self._help(turn)))

    async def _lang_route(self, turn: Turn, command: str | None, words: list[str]) -> StepResult:
        return self._language(turn, words[1:])

    async def _menu(self, turn: Turn, command: str | None, words: list[str]) -> StepResult:
        return await self._locations(turn, greet=True)

    async def _id_photo(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        if not turn.message.media or self.journey is None:
            return None
        return await self.journey.id_photo(turn)

    async def _media_not_needed(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        """A photo alone where none is asked for (without the journey, which takes IDs)."""
        if not turn.message.media or turn.text:
            return None
        return self._stay(turn, Reply(turn.t("dialog.media_not_needed")))

    async def _when(self, turn: Turn, command: str | None, words: list[str]) -> StepResult | None:
        if self.journey is None or turn.text == BACK:
            return None
        return await self.journey.when(turn, str(turn.data.get("asset", "")), turn.text)

    async def _back_to_assets(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        if turn.text != BACK:
            return None
        return await self._assets(turn, str(turn.data.get("location", "")))

    async def _alternative(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        return None if self.journey is None else await self.journey.pick_alternative(turn)

    async def _yes_or_no(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        if self.journey is None:
            return None
        return self._stay(turn, Reply(turn.t("journey.yes_or_no")), understood=False)

    async def _link_again(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        """A renter who is to send their ID by upload link writes instead: a fresh link."""
        return None if self.journey is None else await self.journey.upload_link_again(turn)

    async def _handover_text(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult | None:
        """Text where a pickup or return waits for a photo or an answer: asked again."""
        return None if self.journey is None else await self.journey.handover_text(turn)

    async def _start(self, turn: Turn, command: str | None, words: list[str]) -> StepResult:
        return await self._locations(turn, greet=True)

    async def _location_route(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult:
        return await self._pick_location(turn)

    async def _asset_route(self, turn: Turn, command: str | None, words: list[str]) -> StepResult:
        return await self._pick_asset(turn)

    async def _not_understood(
        self, turn: Turn, command: str | None, words: list[str]
    ) -> StepResult:
        return self._stay(turn, Reply(turn.t("dialog.not_understood")), understood=False)

    # -- states -----------------------------------------------------------------------------

    async def _locations(self, turn: Turn, *, greet: bool) -> StepResult:
        locations = await self.inventory.open_locations()
        if not locations:
            return StepResult(DialogState.START, {}, Outcome([Reply(turn.t("dialog.closed"))]))
        choices = tuple(Choice(str(i), loc.name) for i, loc in enumerate(locations, start=1))
        text = turn.t("dialog.pick_location")
        if greet:
            text = turn.t("dialog.greeting", business=self.settings.business_name) + "\n" + text
        return StepResult(
            DialogState.PICK_LOCATION,
            {"locations": [loc.slug for loc in locations]},
            Outcome([Reply(text, choices)]),
        )

    async def _pick_location(self, turn: Turn) -> StepResult:
        slugs = [str(s) for s in turn.data.get("locations", [])]
        picked = _pick(turn.text, slugs)
        if picked is None:
            reply = Reply(turn.t("dialog.pick_a_number", count=len(slugs)))
            return self._stay(turn, reply, understood=False)
        return await self._assets(turn, picked)

    async def _assets(self, turn: Turn, slug: str) -> StepResult:
        location = await self.inventory.location(slug)
        if location is None:
            return await self._locations(turn, greet=False)
        assets = await self.inventory.active_assets(location)
        choices = [
            Choice(
                str(i),
                turn.t(
                    "dialog.asset_choice",
                    code=asset.code,
                    label=asset.label,
                    hourly=Money(asset.price_per_hour_cents, asset.currency).format(turn.language),
                    daily=Money(asset.price_per_day_cents, asset.currency).format(turn.language),
                ),
            )
            for i, asset in enumerate(assets, start=1)
        ]
        choices.append(Choice(BACK, turn.t("dialog.back")))
        return StepResult(
            DialogState.PICK_ASSET,
            {"location": slug, "assets": [a.code for a in assets]},
            Outcome([Reply(turn.t("dialog.pick_asset", location=location.name), tuple(choices))]),
        )

    async def _pick_asset(self, turn: Turn) -> StepResult:
        if turn.text == BACK:
            return await self._locations(turn, greet=False)
        codes = [str(c) for c in turn.data.get("assets", [])]
        by_code = {code.upper(): code for code in codes}
        picked = by_code.get(turn.text.upper()) or _pick(turn.text, codes)
        if picked is None:
            reply = Reply(turn.t("dialog.pick_a_number", count=len(codes)))
            return self._stay(turn, reply, understood=False)
        asset = await self.inventory.asset(picked)
        if asset is None:
            return await self._assets(turn, str(turn.data.get("location", "")))
        language = turn.language
        details = turn.t(
            "dialog.asset_details",
            code=asset.code,
            label=asset.label,
            location=asset.location.name,
            hourly=Money(asset.price_per_hour_cents, asset.currency).format(language),
            daily=Money(asset.price_per_day_cents, asset.currency).format(language),
            deposit=Money(asset.deposit_cents, asset.currency).format(language),
            shortest=_duration(asset.min_duration_minutes, language),
            longest=_duration(asset.max_duration_minutes, language),
        )
        data = {**turn.data, "asset": asset.code}
        return StepResult(
            DialogState.ASSET,
            data,
            Outcome([Reply(details, (Choice(BACK, turn.t("dialog.back")),))]),
        )

    # -- keywords ---------------------------------------------------------------------------

    def _help(self, turn: Turn) -> str:
        text = turn.t("dialog.help", languages=", ".join(SUPPORTED_LANGUAGES))
        text += "\n" + turn.t("dialog.help_handover")
        if self.settings.support_contact:
            text += "\n" + turn.t("dialog.help_contact", contact=self.settings.support_contact)
        return text

    def _language(self, turn: Turn, args: list[str]) -> StepResult:
        wanted = args[0].lower()[:2] if args else ""
        if wanted not in SUPPORTED_LANGUAGES:
            return self._stay(
                turn,
                Reply(turn.t("dialog.language_unknown", languages=", ".join(SUPPORTED_LANGUAGES))),
            )
        text = turn.translator.text(wanted, "dialog.language_set")
        outcome = Outcome(
            [Reply(text)],
            audits=[
                Audit(f"renter:{turn.renter_id}", "renter.language", details={"language": wanted})
            ],
        )
        return StepResult(turn.state, dict(turn.data), outcome, language=wanted)

    @staticmethod
    def _stay(turn: Turn, reply: Reply, *, understood: bool = True) -> StepResult:
        return StepResult(turn.state, dict(turn.data), Outcome([reply]), understood=understood)

    # -- the routing table (declared once the routes are defined) ----------------------------

    #: The journey's keywords, which work in any state (a renter who sent STOP gets only
    #: ``WHILE_OPTED_OUT``).
    ENTRY_POINTS: ClassVar[Mapping[Command, Route]] = {
        Command.STOP: _opt_out,
        Command.START: _opt_out,
        Command.BOOK: _book,
        Command.YES: _answer,
        Command.NO: _answer,
        **dict.fromkeys(BOOKING_COMMANDS, _on_booking),
    }
    #: Then a photo is an ID for the booking that waits for one, in any state.
    PHOTO: ClassVar[Route] = _id_photo
    #: Then the dialog's own keywords, in any state.
    DIALOG_KEYWORDS: ClassVar[Mapping[Command, Route]] = {
        Command.HELP: _help_route,
        Command.LANG: _lang_route,
        Command.MENU: _menu,
    }
    #: Per state, the steps that may answer a message that is no keyword, in order.
    STATES: ClassVar[Mapping[DialogState, tuple[Route, ...]]] = {
        DialogState.START: (_link_again, _start),
        DialogState.PICK_LOCATION: (_link_again, _media_not_needed, _location_route),
        DialogState.PICK_ASSET: (_link_again, _media_not_needed, _asset_route),
        DialogState.ASSET: (_when, _link_again, _media_not_needed, _back_to_assets),
        DialogState.ALTERNATIVES: (_alternative,),
        **dict.fromkeys(YES_NO_STATES, (_yes_or_no,)),
        DialogState.HANDOVER: (_handover_text,),
    }
    #: When nothing else answered; the last one always does.
    FALLBACKS: ClassVar[tuple[Route, ...]] = (
        _link_again,
        _media_not_needed,
        _handover_text,
        _not_understood,
    )


def _pick(text: str, options: list[Any]) -> Any:
    """The option whose 1-based number the renter typed, or None."""
    number = typed_int(text, at_most=len(options))
    return options[number - 1] if number else None


def _duration(minutes: int, language: str) -> str:
    return str(format_timedelta(timedelta(minutes=minutes), threshold=1.1, locale=language))


def _state(value: str) -> DialogState | None:
    try:
        return DialogState(value)
    except ValueError:  # a state no longer declared: the fallbacks answer
        return None
