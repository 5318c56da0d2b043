"""The architecture's import rules (docs/architecture in ../shared, ADRs in docs/adr), checked statically.

Each rule names a package (all its modules), a package's own top-level modules (``pkg/*.py``)
or one module file, and the modules it must never import, directly or through a relative import
(a banned name is a top-level package or its first two parts, e.g. ``inference.training``). The check reads the source with ``ast`` so it also covers code paths that
tests never execute (lazy imports inside functions count too).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT = {"PySide6", "shiboken6", "qtawesome", "PyQt5", "PyQt6", "qtpy", "pytestqt"}
TORCH = {"torch", "numba", "safetensors", "mamba_ssm"}
SQL = {"sqlalchemy", "alembic", "psycopg", "psycopg2"}

# The parts of inference/ (its top-level modules and subpackages) as importable names.
INFERENCE_PARTS = {f"inference.{p.stem}" for p in (ROOT / "inference").iterdir()
                   if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}

RULES = {
    "database": QT | TORCH | {"inference", "app"},
    "inference": QT | SQL | {"database", "app"},
    "app/services": QT,
    "app/gui": SQL | TORCH | {"database", "inference"},
    # Inside inference/: ssm <- models <- training; the runtime (its top-level modules: engine,
    # predict helpers, checkpoints, preprocess, the family catalogue) never imports training.
    "inference/ssm": INFERENCE_PARTS - {"inference.ssm"},
    "inference/models": {"inference.training"},
    "inference/*.py": {"inference.training"},
    # Headless command handlers reach models through the engine, services and trainers, never
    # torch or a network directly; only the `gui` command may start Qt (ALLOWED below).
    "app/commands": QT | TORCH | {"app.gui", "inference.models", "inference.ssm"},
    # The worker process: no GUI, no command line, no training; models only through the engine.
    "app/worker.py": QT | TORCH | {"app.gui", "app.commands", "app.cli", "inference.training",
                                   "inference.models", "inference.ssm"},
    # `main.py --help` must answer at once: the command line names handlers and family CLIs as
    # module paths and imports nothing heavy (the family catalogue and the --threads option are plain Python).
    "app/cli.py": QT | TORCH | SQL | {"database", "app.gui", "app.services", "app.commands", "app.worker",
                                      *(INFERENCE_PARTS - {"inference.families", "inference.threads_option"})},
}
# (file, banned name) pairs a rule allows on purpose.
ALLOWED = {("app/commands/gui.py", name) for name in QT | {"app.gui"}}


def rule_files(target: str, root: Path = ROOT) -> list[Path]:
    """A rule's target: one module file, a package's own modules (``pkg/*.py``) or a whole package."""
    if target.endswith("/*.py"):
        return sorted((root / target[:-5]).glob("*.py"))
    if target.endswith(".py"):
        return [root / target]
    return sorted((root / target).rglob("*.py"))


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg_parts = path.relative_to(root).with_suffix("").parts[:-1]
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
            # `from inference import families` imports the submodule inference.families.
            found.update(f"{mod}.{alias.name}" for alias in node.names if mod)
    return found


def violations(target: str, banned: set[str], root: Path = ROOT) -> list[str]:
    out = []
    for path in rule_files(target, root):
        rel = path.relative_to(root).as_posix()
        seen = {name for (file, name) in ALLOWED if file == rel}
        for mod in sorted(imported_modules(path, root)):  # "x" before "x.y": one line per banned name
            hit = {mod.split(".")[0], ".".join(mod.split(".")[:2])} & banned
            if hit - seen:
                out.append(f"{rel} imports {mod}")
            seen |= hit
    return out


@pytest.mark.parametrize("target", sorted(RULES))
def test_layering(target: str) -> None:
    assert rule_files(target) and all(p.is_file() for p in rule_files(target)), f"{target} is missing"
    assert violations(target, RULES[target]) == []


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    """The probe lies in a package of its own under ``tmp_path``: written into the repository's ``inference/``, it
    was read by ``test_layering[inference]`` running at the same moment in the suite's other process (ADR 0080), which
    then failed on it (a session-53 review)."""
    pkg = tmp_path / "inference"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("from . import clean as _self\nimport numpy\n")
    (pkg / "bad.py").write_text("from sqlalchemy import select\nfrom ..database import engine\n")
    assert violations("inference", RULES["inference"], tmp_path) == ["inference/bad.py imports database",
                                                                      "inference/bad.py imports sqlalchemy"]
    assert violations("inference", RULES["inference"]) == []


def test_command_line_loads_nothing_heavy() -> None:
    """The static rule reads app/cli.py's own imports only; what they import in turn once put SQLAlchemy in
    every `main.py --help` (app/paths.py imported it at the top; a session-47 audit). Imported, not read."""
    probe = ("import sys, app.cli; "
             "print(' '.join(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'torch', 'PySide6', 'numpy', 'cv2'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
