"""The going-live commands, as ``bot.cli`` adds them: (name, help, what runs it)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from bot.golive.connect import run_connect
from bot.golive.doctor import run_doctor

Command = Callable[[argparse.Namespace], int]


def _report_only(run: Command) -> Command:
    """What these commands print is their report: the SDKs' request lines stay out of it
    unless ``KEYTURN_LOG_LEVEL`` asks for them."""

    def quietly(args: argparse.Namespace) -> int:
        if "KEYTURN_LOG_LEVEL" not in os.environ:
            logging.getLogger().setLevel(logging.WARNING)
        return run(args)

    return quietly


COMMANDS: tuple[tuple[str, str, Command], ...] = (
    (
        "connect",
        "register Keyturn's webhooks with every configured provider for KEYTURN_PUBLIC_URL",
        _report_only(run_connect),
    ),
    (
        "doctor",
        "check credentials, webhooks, the ops chat, the database, the locks and the key",
        _report_only(run_doctor),
    ),
)
