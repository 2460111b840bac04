"""Where things sit in an inventory file's text, so that every problem names its line:
tomllib keeps no positions after parsing."""

from __future__ import annotations

import re
import tomllib

from flows.inventory.spec import InventoryProblem


def syntax_problem(err: tomllib.TOMLDecodeError, text: str) -> tuple[int | None, str]:
    """Line and reason of a TOML syntax error (Python < 3.14 only puts them in the message)."""
    message = str(err)
    line: int | None = getattr(err, "lineno", None)
    column: int | None = getattr(err, "colno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        message = message[: found.start()]
        line, column = line or int(found.group(1)), column or int(found.group(2))
    elif message.endswith("(at end of document)"):
        message = message.removesuffix("(at end of document)").rstrip()
        line = line or max(1, len(text.splitlines()))
    message = getattr(err, "msg", message)
    where = f" at column {column}" if column else ""
    return line, f"not valid TOML: {message}{where}"


class SourceLines:
    """Where each block and key sits in the raw text: tomllib keeps no positions after parsing."""

    _ARRAY_HEADER = re.compile(r"^\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
    _TABLE_HEADER = re.compile(r"^\[\s*([^\[\]]+?)\s*\]")
    _KEY = re.compile(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")

    def __init__(self, text: str) -> None:
        self._blocks: dict[str, list[int]] = {}
        self._keys: dict[tuple[str, int], dict[str, int]] = {}
        self._top: dict[str, int] = {}
        current: tuple[str, int] | None = None
        open_quote: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if open_quote is not None:
                if line.count(open_quote) % 2 == 1:
                    open_quote = None
                continue
            if header := self._ARRAY_HEADER.match(line):
                starts = self._blocks.setdefault(header.group(1), [])
                current = (header.group(1), len(starts))
                starts.append(number)
                self._top.setdefault(header.group(1), number)
            elif table := self._TABLE_HEADER.match(line):
                self._top.setdefault(table.group(1).split(".")[0].strip("\"' "), number)
                current = ("", -1)
            elif key := self._KEY.match(line):
                name = key.group(1).strip("\"'")
                if current is None:
                    self._top.setdefault(name, number)
                else:
                    self._keys.setdefault(current, {}).setdefault(name, number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    open_quote = quote
                    break

    def top(self, key: str) -> int | None:
        return self._top.get(key)

    def block(self, section: str, index: int) -> int | None:
        starts = self._blocks.get(section, [])
        return starts[index] if index < len(starts) else self._top.get(section)

    def key(self, section: str, index: int, key: str) -> int | None:
        found = self._keys.get((section, index), {}).get(key)
        return found if found is not None else self.block(section, index)


class Problems:
    def __init__(self, path: str, lines: SourceLines) -> None:
        self.path = path
        self.lines = lines
        self.items: list[InventoryProblem] = []

    def add(self, line: int | None, reason: str) -> None:
        self.items.append(InventoryProblem(self.path, line, reason))
