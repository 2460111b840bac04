"""Stripe: one webhook endpoint at this public URL with exactly the events Keyturn handles;
its signing secret is shown once, when Stripe creates it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import stripe

from bot.config import StripeSettings
from bot.golive.checks import Check, ProviderFailed, failed, one_line, passed
from bot.payments.stripe import HANDLED_EVENTS
from bot.payments.webhook import WEBHOOK_PATH

T = TypeVar("T")
TIMEOUT = 15.0
CONNECT = "run `keyturn connect`"


@asynccontextmanager
async def _client(settings: StripeSettings) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
    try:
        yield stripe.StripeClient(
            settings.api_key,
            base_addresses={"api": settings.api_base.rstrip("/")} if settings.api_base else None,
            http_client=http,
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


async def _ask(call: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await call
    except stripe.StripeError as err:
        raise ProviderFailed(f"Stripe: {one_line(err.user_message or err)}") from None
    except TimeoutError:
        raise ProviderFailed(f"Stripe did not answer within {TIMEOUT:g} s") from None


async def _ours(client: stripe.StripeClient, url: str) -> Any:
    endpoints = await _ask(client.v1.webhook_endpoints.list_async({"limit": 100}))
    return next((e for e in endpoints.data if e.url == url), None)


async def connect(settings: StripeSettings, public_url: str) -> list[str]:
    url = public_url + WEBHOOK_PATH
    events = list(HANDLED_EVENTS)
    subscribed: Any = events  # the SDK types them as a Literal of every event Stripe has
    async with _client(settings) as client:
        endpoint = await _ours(client, url)
        if endpoint is None:
            created = await _ask(
                client.v1.webhook_endpoints.create_async(
                    {"url": url, "enabled_events": subscribed, "description": "Keyturn"}
                )
            )
            return [
                f"stripe: webhook endpoint {created.id} created at {url} for {len(events)} events",
                f"stripe: its signing secret, shown once: store it as STRIPE_WEBHOOK_SECRET="
                f"{created.secret}",
            ]
        if sorted(endpoint.enabled_events) == events and endpoint.status == "enabled":
            return [
                f"stripe: unchanged: webhook endpoint {endpoint.id} at {url}, {len(events)} events"
            ]
        await _ask(
            client.v1.webhook_endpoints.update_async(
                endpoint.id,
                {"enabled_events": subscribed, "disabled": False},
            )
        )
        return [
            f"stripe: webhook endpoint {endpoint.id} at {url} updated to {len(events)} events"
            " (its signing secret is unchanged)"
        ]


async def checks(settings: StripeSettings, public_url: str) -> list[Check]:
    url = public_url + WEBHOOK_PATH
    async with _client(settings) as client:
        try:
            account = await _ask(client.v1.accounts.retrieve_current_async())
        except ProviderFailed as err:
            return [
                failed("stripe account", str(err), "check STRIPE_API_KEY (Dashboard, API keys)")
            ]
        shown = (
            account.settings.dashboard.display_name if account.settings else None
        ) or account.id
        found = [passed("stripe account", f"{shown} ({account.id})")]
        try:
            endpoint = await _ours(client, url)
        except ProviderFailed as err:
            return [
                *found,
                failed("stripe webhook", str(err), "check STRIPE_API_KEY's permissions"),
            ]
    found.append(_endpoint(endpoint, url))
    if not settings.webhook_secret:
        found.append(
            failed(
                "stripe signing secret",
                "STRIPE_WEBHOOK_SECRET is not set: `keyturn serve` cannot verify Stripe's events",
                "store the secret `keyturn connect` printed (or roll one in Stripe's Dashboard)",
            )
        )
    return found


def _endpoint(endpoint: Any, url: str) -> Check:
    if endpoint is None:
        return failed("stripe webhook", f"no webhook endpoint posts to {url}", CONNECT)
    given = set(endpoint.enabled_events)
    missing = sorted(set(HANDLED_EVENTS) - given)
    extra = sorted(given - set(HANDLED_EVENTS))
    if endpoint.status != "enabled":
        return failed("stripe webhook", f"endpoint {endpoint.id} is {endpoint.status}", CONNECT)
    if missing or extra:
        said = [
            f"missing {', '.join(missing)}" if missing else "",
            f"extra {', '.join(extra)}" if extra else "",
        ]
        detail = "; ".join(part for part in said if part)
        return failed("stripe webhook", f"endpoint {endpoint.id} at {url}: {detail}", CONNECT)
    return passed("stripe webhook", f"endpoint {endpoint.id} at {url}, {len(given)} events")
