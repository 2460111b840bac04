"""Seam: the workspace the key opens, and one webhook at this public URL for the lock events
Keyturn handles; its secret is shown once, when Seam creates it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from seam.exceptions import SeamError
from seam.resources.webhook import Webhook
from seam.seam import AsyncSeam

from bot.config import SeamSettings
from bot.golive.checks import Check, ProviderFailed, failed, one_line, passed
from bot.lock_routes import SEAM_EVENTS, SEAM_WEBHOOK_PATH

T = TypeVar("T")
TIMEOUT = 15.0
CONNECT = "run `keyturn connect`"


@asynccontextmanager
async def _client(settings: SeamSettings) -> AsyncIterator[AsyncSeam]:
    try:
        seam = AsyncSeam(api_key=settings.api_key, endpoint=settings.api_base, timeout=TIMEOUT)
    except (SeamError, ValueError) as err:
        raise ProviderFailed(f"Seam: {one_line(err)}") from None
    try:
        yield seam
    finally:
        await seam.close()


async def _ask(call: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await call
    except SeamError as err:
        raise ProviderFailed(f"Seam: {one_line(err)}") from None
    except (TimeoutError, httpx.HTTPError) as err:
        raise ProviderFailed(f"Seam did not answer: {type(err).__name__}") from None


async def _ours(seam: AsyncSeam, url: str) -> Webhook | None:
    return next((w for w in await _ask(seam.webhooks.list()) if w.url == url), None)


async def connect(settings: SeamSettings, public_url: str) -> list[str]:
    url = public_url + SEAM_WEBHOOK_PATH
    events = list(SEAM_EVENTS)
    async with _client(settings) as seam:
        webhook = await _ours(seam, url)
        if webhook is None:
            created = await _ask(seam.webhooks.create(url=url, event_types=events))
            return [
                f"seam: webhook {created.webhook_id} created at {url} for {len(events)} events",
                f"seam: its secret, shown once: store it as SEAM_WEBHOOK_SECRET={created.secret}",
            ]
        if sorted(webhook.event_types or ()) == events:
            return [f"seam: unchanged: webhook {webhook.webhook_id} at {url}, {len(events)} events"]
        await _ask(seam.webhooks.update(webhook_id=str(webhook.webhook_id), event_types=events))
        return [
            f"seam: webhook {webhook.webhook_id} at {url} updated to {len(events)} events"
            " (its secret is unchanged)"
        ]


async def checks(settings: SeamSettings, public_url: str) -> list[Check]:
    url = public_url + SEAM_WEBHOOK_PATH
    try:
        async with _client(settings) as seam:
            workspace: Any = await _ask(seam.workspaces.get())
            found = [passed("seam workspace", f"{workspace.name} ({workspace.workspace_id})")]
            try:
                found.append(_webhook(await _ours(seam, url), url))
            except ProviderFailed as err:
                found.append(failed("seam webhook", str(err), "run `keyturn doctor` again later"))
    except ProviderFailed as err:
        return [failed("seam workspace", str(err), "check SEAM_API_KEY (Seam Console, API keys)")]
    if not settings.webhook_secret:
        found.append(
            failed(
                "seam secret",
                "SEAM_WEBHOOK_SECRET is not set: `keyturn serve` does not take Seam's events",
                "store the secret `keyturn connect` printed",
            )
        )
    return found


def _webhook(webhook: Webhook | None, url: str) -> Check:
    if webhook is None:
        return failed("seam webhook", f"no webhook posts to {url}", CONNECT)
    missing = sorted(set(SEAM_EVENTS) - set(webhook.event_types or ()))
    if missing:
        detail = f"webhook {webhook.webhook_id} at {url} lacks {', '.join(missing)}"
        return failed("seam webhook", detail, CONNECT)
    return passed(
        "seam webhook", f"webhook {webhook.webhook_id} at {url}, {len(SEAM_EVENTS)} events"
    )
