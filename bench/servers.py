"""The benchmark's helper processes, each on a free loopback port it prints once it listens.

- ``twilio``: the fake Twilio REST API of the test suite (``tests/fakes/twilio.py``) so replies are
  really "sent", plus ``GET /bench/stats`` with how many it accepted (its lists are emptied as they
  are counted, so a long run stays small).
- ``baseline``: a bare aiohttp handler that reads the same form body as Keyturn's Twilio webhook,
  parses it the same way and answers the same empty TwiML: the framework's ceiling on this machine.

Run as ``python -m bench.servers twilio|baseline``; the first stdout line is ``LISTENING <url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from bot.transports.twilio_routes import EMPTY_TWIML, INBOUND_PATH
from tests.fakes.twilio import FakeTwilio

STATS_PATH = "/bench/stats"
READY_PREFIX = "LISTENING "


def twilio_app(public_url: str) -> web.Application:
    fake = FakeTwilio(public_url=public_url)
    counted = {"sent": 0, "requests": 0}

    async def stats(request: web.Request) -> web.Response:
        counted["sent"] += len(fake.sent)
        counted["requests"] += len(fake.requests)
        fake.sent.clear()
        fake.requests.clear()
        return web.json_response(counted)

    fake.app.router.add_get(STATS_PATH, stats)
    return fake.app


async def bare_inbound(request: web.Request) -> web.Response:
    body = await request.read()
    form: MultiDict[str] = MultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    if not form.get("MessageSid"):
        raise web.HTTPBadRequest(text="MessageSid is required")
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def baseline_app() -> web.Application:
    app = web.Application()
    app.router.add_post(INBOUND_PATH, bare_inbound)
    return app


async def serve(app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    port = server.sockets[0].getsockname()[1]
    print(f"{READY_PREFIX}http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("which", choices=("twilio", "baseline"))
    parser.add_argument("--public-url", default="http://127.0.0.1")
    args = parser.parse_args()
    app = twilio_app(args.public_url) if args.which == "twilio" else baseline_app()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app))


if __name__ == "__main__":
    main()
