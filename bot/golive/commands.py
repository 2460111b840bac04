"""The going-live commands, as ``bot.cli`` adds them: (name, help, what runs it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bot.golive.connect import run_connect
from bot.golive.doctor import run_doctor

COMMANDS: tuple[tuple[str, str, Callable[[argparse.Namespace], int]], ...] = (
    (
        "connect",
        "register Keyturn's webhooks with every configured provider for KEYTURN_PUBLIC_URL",
        run_connect,
    ),
    (
        "doctor",
        "check credentials, webhooks, the ops chat, the database, the locks and the key",
        run_doctor,
    ),
)
