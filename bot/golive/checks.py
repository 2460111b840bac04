"""What ``keyturn connect`` and ``keyturn doctor`` report: one line per registration or check,
and the public URL every webhook must point at."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import Settings, SettingsError


class ProviderFailed(Exception):
    """A provider could not be asked (refused credentials, no answer); the message says why in
    one line and carries no secret."""


@dataclass(frozen=True)
class Check:
    """One thing ``doctor`` verified; ``fix`` says what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}; fix: {self.fix}"


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def public_base(settings: Settings) -> str:
    """``KEYTURN_PUBLIC_URL``, which every provider posts to: it must be https (Telegram, Stripe
    and Seam refuse anything else, and Twilio's signatures would travel in the clear)."""
    url = settings.public_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(
            f"KEYTURN_PUBLIC_URL: must be the https address the providers reach Keyturn at,"
            f" got {url!r}"
        )
    return url


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
