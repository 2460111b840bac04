"""The structure carries the guarantees: only storage opens transactions, only the runners open a
unit of work (handlers are handed one and never commit), and no module reaches into another's
private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "flows", "locks", "storage")

#: The runners: every entry point. All of bot/ (webhook and sandbox routes, the ops bot, the CLI,
#: the dispatcher, the scheduler) and the engine and timer runner of flows/.
RUNNER_FILES = {"flows/engine.py", "flows/timers.py"}
OPENERS = {"unit_of_work", "run_unit"}

#: Modules still opening transactions of their own, moving to the unit of work. The list only
#: shrinks: an entry that no longer offends fails the test until it is taken off.
STILL_OPENING: set[str] = set()

#: Private names of libraries that storage may use: tortoise's model metadata, row loader and
#: migration SQL runner, and a named tuple's own methods.
LIBRARY_PRIVATE = {"_meta", "_init_from_db", "_run_sql", "_replace", "_asdict", "_fields"}


def sources() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found.append((rel, ast.parse(path.read_text(), rel)))
    assert len(found) > 50
    return found


def opens_transactions(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "tortoise.transactions"
        ):
            return True
        if isinstance(node, ast.Import) and any(
            alias.name.startswith("tortoise.transactions") for alias in node.names
        ):
            return True
        if isinstance(node, ast.Name | ast.Attribute) and (
            getattr(node, "id", None) == "in_transaction"
            or getattr(node, "attr", None) == "in_transaction"
        ):
            return True
    return False


def calls_an_opener(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in OPENERS:
                lines.append(node.lineno)
    return lines


def test_only_storage_opens_a_transaction() -> None:
    offenders = {
        rel
        for rel, tree in sources()
        if not rel.startswith("storage/") and opens_transactions(tree)
    }
    assert offenders <= STILL_OPENING, (
        f"opens its own transaction: {sorted(offenders - STILL_OPENING)}"
    )
    assert offenders >= STILL_OPENING, (
        f"no longer opens one; take it off: {sorted(STILL_OPENING - offenders)}"
    )


def test_only_runners_open_a_unit_of_work() -> None:
    offenders = {}
    for rel, tree in sources():
        is_runner = rel.startswith("bot/") or rel in RUNNER_FILES
        defines = rel in {"storage/uow.py", "flows/staging.py"}
        if not (is_runner or defines) and (lines := calls_an_opener(tree)):
            offenders[rel] = lines
    assert not offenders, f"a handler opens a unit of work: {offenders}"


def test_no_module_reaches_into_another_modules_private_names() -> None:
    offenders = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                offenders += [
                    f"{rel}:{node.lineno} imports {alias.name}"
                    for alias in node.names
                    if _private(alias.name)
                ]
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
                continue
            if rel.startswith("storage/") and node.attr in LIBRARY_PRIVATE:
                continue
            offenders.append(f"{rel}:{node.lineno} uses {ast.unparse(node)}")
    assert offenders == KNOWN_REACHES, offenders


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


KNOWN_REACHES: list[str] = []


#: Calls whose ``kind`` names a persisted kind, and the position of that argument.
KIND_ARGUMENT = {"Alert": 0, "Effect": 0, "SetTimer": 0, "raise_alert": None}


def test_persisted_kinds_are_named_by_their_enums() -> None:
    """An alert, effect or timer kind written as a bare string would escape the check that
    every effect and timer kind has something that runs it."""
    literals = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in KIND_ARGUMENT:
                continue
            position = KIND_ARGUMENT[name]
            kind = node.args[position] if position is not None and node.args else None
            kind = next((k.value for k in node.keywords if k.arg == "kind"), kind)
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                literals.append(f"{rel}:{node.lineno} {name}({kind.value!r})")
    assert literals == []
