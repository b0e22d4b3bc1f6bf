"""docs/threat-model.md names a test for every guarantee against a named attack: those tests exist.

A guarantee whose test was renamed or deleted is a claim nobody checks any more; this keeps the
document and the suite in step (and every item of the attack list has at least one row).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "threat-model.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")


def _attack_rows() -> list[tuple[str, str]]:
    """(item, cell text) for every row of the 'Attacks refused' tables."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Attacks refused", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0].isdigit():
            rows.append((cells[0], line))
    return rows


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test")}


def test_every_named_test_exists() -> None:
    rows = _attack_rows()
    assert len(rows) > 50, "the attack tables of docs/threat-model.md were not found"
    cache: dict[str, set[str]] = {}
    missing = []
    for item, line in rows:
        refs = TEST_REF.findall(line)
        assert refs, f"row for item {item} names no test: {line}"
        for file, name in refs:
            path = ROOT / file
            if file not in cache:
                cache[file] = _test_names(path) if path.is_file() else set()
            if name not in cache[file]:
                missing.append(f"{file}::{name}")
    assert not missing, f"docs/threat-model.md names tests that do not exist: {missing}"


def test_every_item_of_the_attack_list_has_a_row() -> None:
    items = {int(item) for item, _ in _attack_rows()}
    assert items >= set(range(1, 20)), f"items without a guarantee row: {sorted(set(range(1, 20)) - items)}"
