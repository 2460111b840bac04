"""The renter dialog: greeting, locations and items with prices, HELP and LANG.

Every text comes from the translation catalogs through ``turn.t``; the step only reads the
inventory (``InventoryCache``) and returns what to say and which state to be in next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from babel.dates import format_timedelta

from flows.booking import Journey
from flows.digits import typed_int
from flows.effects import Audit, Outcome, Reply
from flows.engine import StepResult, Turn
from flows.i18n import SUPPORTED_LANGUAGES, Translator, fold, keyword_map
from flows.inventory_cache import InventoryCache
from flows.messages import Choice
from storage.money import Money


class DialogState(StrEnum):
    START = "start"
    PICK_LOCATION = "pick_location"
    PICK_ASSET = "pick_asset"
    ASSET = "asset"


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


KEYWORDS = {command: f"keyword.{command.value}" for command in Command}
#: What a renter who sent STOP may still say and get an answer to.
WHILE_OPTED_OUT = frozenset({Command.START, Command.HELP, Command.STOP})
BOOKING_COMMANDS = frozenset(
    {Command.EXTEND, Command.OPEN, Command.CODE, Command.CANCEL, Command.AGENT}
)
BACK = "0"


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
        journey = self.journey
        if journey is not None:
            routed = await self._journey(turn, journey, command, words)
            if routed is not None:
                return routed
        if command == Command.HELP:
            return self._stay(turn, Reply(self._help(turn)))
        if command == Command.LANG:
            return self._language(turn, words[1:])
        if command == Command.MENU or turn.state == DialogState.START:
            return await self._locations(turn, greet=True)
        if turn.message.media and not turn.text:
            return self._stay(turn, Reply(turn.t("dialog.media_not_needed")))
        if turn.state == DialogState.PICK_LOCATION:
            return await self._pick_location(turn)
        if turn.state == DialogState.PICK_ASSET:
            return await self._pick_asset(turn)
        if turn.state == DialogState.ASSET and turn.text == BACK:
            return await self._assets(turn, str(turn.data.get("location", "")))
        return self._stay(turn, Reply(turn.t("dialog.not_understood")))

    async def _journey(
        self, turn: Turn, journey: Journey, command: str | None, words: list[str]
    ) -> StepResult | None:
        """Booking and rental steps; None when the plain dialog should answer."""
        if command in (Command.STOP, Command.START):
            return journey.opt_out(turn, stop=command == Command.STOP)
        if command == Command.BOOK:
            if len(words) < 3:
                return self._stay(turn, Reply(turn.t("journey.book_usage")))
            return await journey.when(turn, words[1].upper(), " ".join(words[2:]))
        if command in (Command.YES, Command.NO):
            return await journey.answer(turn, yes=command == Command.YES)
        if command in BOOKING_COMMANDS:
            return await journey.command(turn, str(command), words[1:])
        if turn.message.media:
            return await journey.id_photo(turn)
        if command is not None:
            return None
        if turn.state == DialogState.ASSET and turn.text != BACK:
            return await journey.when(turn, str(turn.data.get("asset", "")), turn.text)
        if turn.state == "alternatives":
            return await journey.pick_alternative(turn)
        if turn.state in ("quote", "extend_quote", "cancel_quote"):
            return self._stay(turn, Reply(turn.t("journey.yes_or_no")))
        return await journey.upload_link_again(turn)

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
            return self._stay(turn, Reply(turn.t("dialog.pick_a_number", count=len(slugs))))
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
            return self._stay(turn, Reply(turn.t("dialog.pick_a_number", count=len(codes))))
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
    def _stay(turn: Turn, reply: Reply) -> StepResult:
        return StepResult(turn.state, dict(turn.data), Outcome([reply]))


def _pick(text: str, options: list[Any]) -> Any:
    """The option whose 1-based number the renter typed, or None."""
    number = typed_int(text, at_most=len(options))
    return options[number - 1] if number else None


def _duration(minutes: int, language: str) -> str:
    return str(format_timedelta(timedelta(minutes=minutes), threshold=1.1, locale=language))
