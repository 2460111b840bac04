"""A week of rentals played through the sandbox's HTTP API, and what the keypads did.

Start the demo (`keyturn demo`, or `make run`), then:

    python examples/week_of_rentals.py [--url http://127.0.0.1:8080] [--days 7]

It pauses the demo's clock, books four rentals over the coming days as three renters (paying on
the sandbox checkout, sending an ID photo, approving it as the operator), then moves the clock
from one scheduled event to the next for a week. After each move it prints what the renters were
sent and tries every PIN they received on its lock's keypad, printing each time a keypad's answer
changes: refused before the window, open inside it, refused again once the code is revoked. A
renter asked for pickup photos and a checklist (the trailer T2 sends its own PIN only after them)
answers them, and at the end of each rental brings the item back: RETURN, the return's photos and
checklist, then DONE.

Only the standard library is used; the sandbox's API is described in the README.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from datetime import datetime, timedelta
from typing import Any

RENTALS = (  # who, what, where it is (the demo's inventory), when (in the location's time)
    ("+15550100011", "T1", "Harbor Yard", "tomorrow 9am to 1pm"),
    ("+15550100012", "B1", "Altstadt Depot", "in 2 days 10-16"),
    ("+15550100013", "S1", "Harbor Yard", "in 3 days 8am to 6pm"),
    ("+15550100011", "T2", "Harbor Yard", "in 5 days 9-12"),
)


class Sandbox:
    """The sandbox's HTTP API at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.seen: dict[str, int] = {}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the URL the user gave)
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise SystemExit(f"{method} {path}: {err.code} {err.read().decode()[:200]}") from None
        ctype = response.headers.get("Content-Type", "")
        return json.loads(raw) if ctype.startswith("application/json") else raw.decode()

    def clock(self, **change: Any) -> dict[str, Any]:
        """The clock; with ``change``, moved first (the answer comes once what fell due ran)."""
        if change:
            moved: dict[str, Any] = self.call("POST", "/sandbox/api/clock", change)
            return moved
        state: dict[str, Any] = self.call("GET", "/sandbox/api/clock")
        return state

    def settle(self) -> None:
        """Wait until what is due now has run (a paused clock stays where it is)."""
        self.clock(paused=True)

    def say(self, address: str, text: str = "", image: str | None = None) -> list[str]:
        body = {"address": address, "text": text, "id": str(uuid.uuid4())}
        if image is not None:
            body["image"] = image
        self.call("POST", "/sandbox/api/messages", body)
        self.settle()
        return self.inbox(address)

    def inbox(self, address: str) -> list[str]:
        """The messages ``address`` was sent since last asked."""
        after = self.seen.get(address, 0)
        query = urllib.parse.urlencode({"address": address, "after": after})
        listing = self.call("GET", f"/sandbox/api/messages?{query}")
        texts = []
        for message in listing["messages"]:
            if message["direction"] == "out" and message["status"] == "queued":
                break  # not delivered yet
            self.seen[address] = message["id"]
            if message["direction"] == "out":
                texts.append(message["text"])
        return texts

    def local_times(self) -> dict[str, str]:
        """Each location's local time on the demo's clock, by name."""
        listing = self.call("GET", "/sandbox/api/clock/locations")
        return {place["name"]: place["local"] for place in listing["locations"]}


def id_photo() -> str:
    """A small PNG standing in for a photo of an ID, as a data: URL."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x30\x60\x90" * 16 for _ in range(16))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def book(sandbox: Sandbox, address: str, item: str, when: str) -> str | None:
    """Book, pay, send an ID when asked and approve it; the booking's reference."""
    replies = sandbox.say(address, f"BOOK {item} {when}")
    if not any("YES" in text for text in replies):
        print(f"{address} could not book {item} {when}: {' / '.join(replies)[:160]}")
        return None
    replies = sandbox.say(address, "YES")
    link = next((m for text in replies for m in re.findall(r"\S*/sandbox/pay/\S+", text)), None)
    if link is None:
        print(f"{address}: no payment link in {replies}")
        return None
    path = link[link.index("/sandbox/pay/") :]
    page = sandbox.call("GET", path)
    reference = re.search(r"booking ([A-Z0-9]+)", page)
    sandbox.call("POST", path, {})  # the checkout's Pay button
    sandbox.settle()
    replies = sandbox.inbox(address)
    if any("photo of your ID" in text for text in replies):
        sandbox.say(address, image=id_photo())
        for check in sandbox.call("GET", "/sandbox/api/identity")["checks"]:
            if reference is not None and check["booking"] == reference.group(1):
                sandbox.call(
                    "POST", f"/sandbox/api/identity/{check['id']}/decision", {"approve": True}
                )
        sandbox.settle()
        replies = sandbox.inbox(address)
    ref = reference.group(1) if reference else "?"
    confirmed = any("is confirmed" in text for text in replies)
    print(f"{address} booked {item} {when}: {ref}, {'confirmed' if confirmed else replies}")
    return ref


def handover(sandbox: Sandbox, address: str, texts: list[str]) -> list[str]:
    """Answer what a pickup or return asks (a photo, a yes/no question, DONE once locked) until
    it asks nothing more; everything the renter was sent on the way."""
    seen = list(texts)
    for _ in range(40):  # an item asks at most a few photos and questions
        last = texts[-1] if texts else ""
        if "please send a photo" in last:
            texts = sandbox.say(address, image=id_photo())
        elif last.startswith("Question "):
            texts = sandbox.say(address, "YES")
        elif "reply DONE" in last:
            texts = sandbox.say(address, "DONE")
        else:
            return seen
        seen += texts
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="where the demo listens")
    parser.add_argument("--days", type=int, default=7, help="how long to play (default 7)")
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.url)
    start = datetime.fromisoformat(sandbox.clock(paused=True)["now"])
    print(f"demo clock paused at {start.isoformat()}")
    locks = {lock["label"]: lock for lock in sandbox.call("GET", "/sandbox/api/locks")["locks"]}
    where: dict[str, str] = {}  # booking reference -> location
    for address, item, location, when in RENTALS:
        reference = book(sandbox, address, item, when)
        if reference is not None:
            where[reference] = location
    # Where each renter's latest booking is: the time a message is printed in.
    renters = {address: location for address, _, location, _ in RENTALS}

    pins: dict[tuple[str, str], str] = {}  # (lock label, PIN) -> the keypad's last answer
    end = start + timedelta(days=args.days)
    while True:
        state = sandbox.clock(advance_to="next")
        now = datetime.fromisoformat(state["now"])
        if now > end or state["next_due"] is None:
            break
        times = sandbox.local_times()
        for address in sorted(renters):
            sent = handover(sandbox, address, sandbox.inbox(address))
            if any("Thank you for renting" in text for text in sent):
                sent += handover(sandbox, address, sandbox.say(address, "RETURN"))
            for text in sent:
                named = [where[ref] for ref in re.findall(r"K[A-Z0-9]{6}", text) if ref in where]
                if named:
                    renters[address] = named[0]
                for label, pin in re.findall(r"^(.+): (\d{4,8})$", text, re.M):
                    if label in locks:
                        pins.setdefault((label, pin), "not tried")
                first = text.splitlines()[0]
                print(f"{times[renters[address]]:>22}  {address} was sent: {first[:90]}")
        for (label, pin), last in list(pins.items()):
            if last == "revoked":
                continue
            lock = locks[label]
            answer = sandbox.call("POST", "/sandbox/api/keypad", {"lock": lock["key"], "pin": pin})
            said = "opens" if answer["opens"] else "refused"
            if said != last:
                local = times[lock["location"]]
                print(f"{local:>22}  keypad {label} ({lock['location']}), PIN {pin}: {said}")
                pins[label, pin] = "revoked" if last == "opens" and said == "refused" else said
    print(f"demo clock paused at {sandbox.clock()['now']}: resume it on the sandbox page")
    opened = sum(1 for answer in pins.values() if answer == "revoked")
    print(f"{opened} of {len(pins)} PINs opened their keypad inside their window only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
