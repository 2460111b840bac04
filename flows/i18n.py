"""Translations from the gettext catalogs under locales/, and choosing a renter's language.

Message ids are stable keys (``dialog.greeting``); every language, English included, has a
catalog that maps them to text with ``{named}`` placeholders.
"""

from __future__ import annotations

import functools
import io
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_skeleton, format_time
from babel.languages import get_official_languages
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from storage.models import Conversation, Renter

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "keyturn"
DEFAULT_LANGUAGE = "en"
SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de")


def catalog_path(language: str, locales_dir: Path = LOCALES_DIR) -> Path:
    return locales_dir / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str, locales_dir: Path = LOCALES_DIR) -> Catalog:
    with catalog_path(language, locales_dir).open("rb") as po:
        return read_po(po, locale=language, domain=DOMAIN)


def placeholders(text: str) -> set[str]:
    """The ``{named}`` fields a message uses."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class Translator:
    """Renders message keys in one of the supported languages."""

    def __init__(self, locales_dir: Path = LOCALES_DIR) -> None:
        self._translations: dict[str, Translations] = {}
        for language in SUPPORTED_LANGUAGES:
            buffer = io.BytesIO()
            write_mo(buffer, read_catalog(language, locales_dir))
            buffer.seek(0)
            self._translations[language] = Translations(buffer, domain=DOMAIN)

    def text(self, language: str, key: str, **params: object) -> str:
        translations = self._translations.get(language) or self._translations[DEFAULT_LANGUAGE]
        template = translations.gettext(key)
        if template == key:  # missing in this language: English rather than a raw key
            template = self._translations[DEFAULT_LANGUAGE].gettext(key)
        return template.format(**params)

    def keywords(self, key: str) -> dict[str, str]:
        """Every spelling of a keyword across languages, upper-cased, mapped to its language."""
        spellings: dict[str, str] = {}
        for language in SUPPORTED_LANGUAGES:
            for word in self._translations[language].gettext(key).split("|"):
                spellings.setdefault(fold(word), language)
        return spellings


def fold(word: str) -> str:
    """Upper-case without accents, so AYUDA, Ayuda and ayúda match alike."""
    decomposed = unicodedata.normalize("NFKD", word.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


@functools.lru_cache(maxsize=4096)
def local_time(moment: datetime, timezone: str, language: str) -> str:
    """A day and a time a renter reads at a glance: "Tue, Jun 2 9:45 AM", "Di., 2. Juni 09:45".

    Bookings start and end on the same few half hours, so these are remembered."""
    local = moment.astimezone(ZoneInfo(timezone))
    day = format_skeleton("MMMEd", local, locale=language)
    return f"{day} {format_time(local, 'short', locale=language)}"


@functools.lru_cache(maxsize=4096)
def language_of_phone(phone: str) -> str | None:
    """The first supported official language of the phone number's country, if any.

    Asked on every renter turn; parsing a number costs more than the rest of picking a
    language, so recent numbers are remembered."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if not region:
        return None
    for language in get_official_languages(region, de_facto=True):
        base = re.split(r"[_-]", language)[0]
        if base in SUPPORTED_LANGUAGES:
            return base
    return None


@dataclass(frozen=True)
class LanguageSources:
    explicit: str | None = None  # the renter's own choice (LANG)
    channel_hint: str | None = None  # e.g. Telegram's language_code
    phone: str | None = None


def pick_language(sources: LanguageSources, default: str = DEFAULT_LANGUAGE) -> str:
    """Explicit choice, then the channel's hint, then the phone number's country, then default."""
    for candidate in (sources.explicit, sources.channel_hint):
        if candidate:
            base = re.split(r"[_-]", candidate.lower())[0]
            if base in SUPPORTED_LANGUAGES:
                return base
    if sources.phone and (language := language_of_phone(sources.phone)):
        return language
    return default


def renter_language(
    renter: Renter | None,
    conversation: Conversation | None = None,
    *,
    hint: str | None = None,
    phone: str | None = None,
) -> str:
    """The language to write to a renter in: the one they chose (LANG), else their channel's
    hint (an inbound message's, else the conversation's), else their phone number's country
    (``phone`` where the renter has none of their own), else the default."""
    if hint is None and conversation is not None:
        hint = conversation.language
    return pick_language(
        LanguageSources(
            explicit=renter.language if renter is not None else None,
            channel_hint=hint,
            phone=(renter.phone if renter is not None else None) or phone,
        )
    )


def keyword_map(translator: Translator, keys: Mapping[str, str]) -> dict[str, str]:
    """Spelling → command for the given ``{command: message_key}`` pairs."""
    mapping: dict[str, str] = {}
    for command, key in keys.items():
        for spelling in translator.keywords(key):
            mapping.setdefault(spelling, command)
    return mapping
