"""Project settings files (flag thresholds, model routing): written whole or not at all.

Why: a station killed mid-write must not leave a half-written JSON that stops the next
pre-label job; the text goes to a temporary file that then replaces the old one in one step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)
