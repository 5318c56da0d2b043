"""JSON files of the station (settings, model configs and cards): read as objects, written whole.

Why: a station killed mid-write must not leave a half-written JSON that stops the next
pre-label job; the text goes to a temporary file that then replaces the old one in one step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.model_limits import parse_json


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as ``path``, whole or not at all: a write that fails (a full disk) leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class JsonFileError(ValueError):
    """A JSON file that is missing, unreadable or not an object, with the reason in one sentence."""


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; anything else is a ``JsonFileError`` naming the file."""
    if not path.is_file():  # a folder or a pipe of that name is there, not "missing" (a session-47 audit)
        what = "missing" if not path.exists() else "not a regular file"
        raise JsonFileError(f"{path.name} is {what} in {path.parent}")
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JsonFileError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise JsonFileError(f"{path} does not hold a JSON object")
    return data
