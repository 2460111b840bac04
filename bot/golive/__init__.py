"""Going live: ``keyturn connect`` registers the webhooks, ``keyturn doctor`` checks them and
everything else a live service needs."""

from bot.golive.commands import COMMANDS

__all__ = ["COMMANDS"]
