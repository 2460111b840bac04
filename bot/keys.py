"""Typed keys for what the aiohttp application shares with its handlers."""

from __future__ import annotations

from aiohttp import web

from bot.channels import Channel
from bot.config import Settings
from bot.dispatcher import OutboxDispatcher
from bot.timers import TimerRunner
from flows.access import AccessCodes
from flows.booking import Journey
from flows.clock import Clock
from flows.engine import ConversationEngine
from flows.i18n import Translator
from flows.ops import OpsDesk
from storage.sealing import Sealer

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
ENGINE = web.AppKey("engine", ConversationEngine)
TRANSLATOR = web.AppKey("translator", Translator)
ACCESS = web.AppKey("access", AccessCodes)
JOURNEY = web.AppKey("journey", Journey)
SEALER = web.AppKey("sealer", Sealer)
CHANNELS = web.AppKey("channels", dict[str, Channel])
OPS = web.AppKey("ops", OpsDesk)

TIMERS = web.AppKey("timers", TimerRunner)
DISPATCHER = web.AppKey("dispatcher", OutboxDispatcher)
