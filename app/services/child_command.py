"""A station command run as a child process, with the database URL in its environment.

A PostgreSQL URL may carry a password, and a process's command line is readable by every local
user (``ps``); the environment is not. The child's ``main.py`` reads the URL from
``INSPECTION_STATION_DB`` when no ``--db`` is given (``app.paths.default_database_url``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Mapping

from app.paths import REPO_ROOT

DB_ENV = "INSPECTION_STATION_DB"


@dataclass(frozen=True)
class ChildCommand:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the parent's environment

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def station_command(db_url: str, *args: str) -> ChildCommand:
    """``python main.py ARGS`` against ``db_url``, the URL kept off the command line."""
    return ChildCommand((sys.executable, str(REPO_ROOT / "main.py"), *args), {DB_ENV: db_url})
