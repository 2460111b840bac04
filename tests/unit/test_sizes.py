"""The code stays readable by a newcomer: no module in flows/ or bot/ over 500 lines, and no
function in flows/ over 60 (a declarative table is an assignment, not a function, and is not
counted)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_LINES = 500
FUNCTION_LINES = 60


def flows_modules() -> list[Path]:
    modules = sorted((ROOT / "flows").rglob("*.py"))
    assert len(modules) > 30
    return modules


def bot_modules() -> list[Path]:
    modules = sorted((ROOT / "bot").rglob("*.py"))
    assert len(modules) > 30
    return modules


def long_modules(modules: list[Path]) -> dict[str, int]:
    return {
        path.relative_to(ROOT).as_posix(): lines
        for path in modules
        if (lines := len(path.read_text().splitlines())) > MODULE_LINES
    }


def test_no_module_in_flows_is_over_500_lines() -> None:
    assert long_modules(flows_modules()) == {}


def test_no_module_in_bot_is_over_500_lines() -> None:
    assert long_modules(bot_modules()) == {}


def test_no_function_in_flows_is_over_60_lines() -> None:
    long = {}
    for path in flows_modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - first + 1
                if lines > FUNCTION_LINES:
                    long[f"{rel}:{node.name}"] = lines
    assert long == {}
