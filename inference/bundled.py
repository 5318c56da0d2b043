"""The model directories shipped in ``resources/models`` and which one each family uses by default."""
from __future__ import annotations

from pathlib import Path

from inference import families

BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "resources" / "models"
DEFAULT_MODEL = families.table("default_model")  # family -> bundled directory name


def bundled_model_dir(family: str, name: str | None = None) -> Path:
    """Directory of a bundled model (``name``) or of the family's default one."""
    if family not in DEFAULT_MODEL:
        raise KeyError(f"unknown family {family!r}")
    return BUNDLED_ROOT / (name or DEFAULT_MODEL[family])


def bundled_models() -> list[Path]:
    return sorted(p for p in BUNDLED_ROOT.glob("*") if (p / "config.json").is_file())
