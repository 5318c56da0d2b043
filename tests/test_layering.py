"""The architecture's import rules (docs/architecture in ../shared, ADRs in docs/adr), checked statically.

Each rule names a package and the top-level modules it must never import, directly or through
a relative import. The check reads the source with ``ast`` so it also covers code paths that
tests never execute (lazy imports inside functions count too).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT = {"PySide6", "shiboken6", "qtawesome", "PyQt5", "PyQt6", "qtpy", "pytestqt"}
TORCH = {"torch", "numba", "safetensors", "mamba_ssm"}
SQL = {"sqlalchemy", "alembic", "psycopg", "psycopg2"}

RULES = {
    "database": QT | TORCH | {"inference", "app"},
    "inference": QT | SQL | {"database", "app"},
    "app/services": QT,
    "app/gui": SQL | TORCH | {"database", "inference"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg_parts[: len(pkg_parts) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
    return found


def violations(package: str, banned: set[str]) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for mod in imported_modules(path):
            top = mod.split(".")[0]
            two = ".".join(mod.split(".")[:2])
            if top in banned or two in banned:
                out.append(f"{path.relative_to(ROOT)} imports {mod}")
    return out


@pytest.mark.parametrize("package", sorted(RULES))
def test_layering(package: str) -> None:
    assert (ROOT / package).is_dir(), f"{package} is missing"
    assert violations(package, RULES[package]) == []


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = ROOT / "inference" / "_layering_probe_tmp.py"
    bad.write_text("from sqlalchemy import select\n")
    try:
        assert violations("inference", RULES["inference"]) == ["inference/_layering_probe_tmp.py imports sqlalchemy"]
    finally:
        bad.unlink()
