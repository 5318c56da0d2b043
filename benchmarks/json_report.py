"""One home for writing a benchmark's JSON report (the studies and measurements of issue 20 write theirs here)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], path: Path | None) -> None:
    """``report`` as indented JSON at ``path`` (its folder made); nothing when no path was asked for."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
