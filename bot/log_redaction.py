"""Secrets never reach a log: the bot token, API keys, webhook secrets, the encryption key.

Libraries log what they hold: httpx logs every request URL (the Telegram token is in it) at
INFO, python-telegram-bot logs its base URL at DEBUG. A filter on one logger misses the others,
and a logger's filter does not see records its children propagate, so redaction happens where
every record passes: records are redacted when they are made (``logging.setLogRecordFactory``),
whatever their logger and level, for handlers that exist now and those added later; the handlers
already installed also carry the filter, for records made before it was installed.

The message is formatted with its arguments and redacted as a whole, and so are an exception's
traceback and the stack, since a secret can sit in any of them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

#: A Telegram bot token inside a Bot API URL, plain or percent-encoded (file URLs).
BOT_TOKEN_IN_TEXT = re.compile(r"bot\d+(?::|%3[Aa])[A-Za-z0-9_-]+")
REDACTED = "<redacted>"
#: Shorter values are not treated as secrets: they would blank ordinary words and numbers.
MIN_SECRET_LENGTH = 8
#: Settings fields whose values are secrets, by a word in their name.
_SECRET_NAMES = ("token", "secret", "key", "password")


class SecretRedactor(logging.Filter):
    """Replaces known secrets and bot tokens in a record's message, traceback and stack."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact these values (and their percent-encoded forms, as in URLs)."""
        with self._lock:
            known = set(self._secrets)
            for secret in secrets:
                if len(secret) >= MIN_SECRET_LENGTH:
                    known.update({secret, quote(secret, safe="")})
            # Longest first, so a secret that contains another is replaced whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def redact(self, text: str) -> str:
        text = BOT_TOKEN_IN_TEXT.sub("bot<token>", text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        self.scrub(record)
        return True

    def scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it to the handler to report as usual
            return
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


_FORMATTER = logging.Formatter()
REDACTOR = SecretRedactor()
_installed = threading.Event()


def redact_secrets_in_logs(secrets: Iterable[str] = ()) -> None:
    """Redact ``secrets`` (and bot tokens) in every log record of this process from now on."""
    REDACTOR.add(secrets)
    for handler in _all_handlers():
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
    if _installed.is_set():
        return
    _installed.set()
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        REDACTOR.scrub(record)
        return record

    logging.setLogRecordFactory(redacted_record)


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [handler for logger in loggers for handler in logger.handlers]


def settings_secrets(settings: object) -> list[str]:
    """Every secret in a settings object: fields named like a token, secret, key or password
    (in nested provider settings too), and the password of a database URL."""
    found: list[str] = []
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return found
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(value):
            found += settings_secrets(value)
        elif isinstance(value, str) and any(word in item.name for word in _SECRET_NAMES):
            found.append(value)
        elif isinstance(value, str) and item.name.endswith(("_url", "_base")):
            password = _url_password(value)
            if password:
                found.append(password)
    return found


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
