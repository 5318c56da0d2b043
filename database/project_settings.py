"""Project settings: named JSON values every station and worker on this database share.

Why in the database: thresholds and routing decide what the worker writes and what every
inspector's queue shows, so one copy must serve all of them (a file beside a SQLite database
cannot serve a PostgreSQL team, and a per-user QSettings value cannot reach the worker).
This module stores and returns plain JSON; the typed view (validation, defaults) is
``app.services.project_settings``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from database.errors import ConflictError
from database.model_versions import json_safe
from database.models import ProjectSetting, utcnow

if TYPE_CHECKING:
    from database.engine import Database


_UNSET = object()


class ProjectSettingRepository:
    def __init__(self, db: "Database") -> None:
        self.db = db

    def all(self, s: Session | None = None) -> dict[str, Any]:
        """Every stored setting, key -> JSON value (absent keys mean the caller's default); ``s``: read in that
        transaction (``Database.reading``)."""
        with self.db.reading(s) as r:
            return {row.key: row.value for row in r.scalars(select(ProjectSetting))}

    def get(self, key: str, default: Any = None) -> Any:
        with self.db.session() as s:
            row = s.get(ProjectSetting, key)
            return default if row is None else row.value

    def put(self, key: str, value: Any, by: str | None = None, expected: Any = _UNSET) -> None:
        """Store ``value`` under ``key`` (insert or replace), in one transaction; ``expected``: as ``put_in``."""
        with self.db.session(write=True) as s:
            put_in(s, key, value, by, expected)

    def put_missing(self, values: dict[str, Any], by: str | None = None) -> list[str]:
        """Store the keys not stored yet (a one-time import); returns the keys written.

        Two processes importing at once: the second's insert conflicts and it writes nothing,
        so the first import wins whole and nothing stored is ever replaced.
        """
        try:
            with self.db.session(write=True) as s:
                have = set(s.scalars(select(ProjectSetting.key).where(ProjectSetting.key.in_(list(values)))))
                new = [k for k in values if k not in have]
                s.add_all(ProjectSetting(key=k, value=json_safe(values[k]), updated_by=by) for k in new)
            return new
        except ConflictError:
            return []




def put_in(s: Session, key: str, value: Any, by: str | None = None, expected: Any = _UNSET) -> None:
    """Store ``value`` under ``key`` (insert or replace) inside the caller's transaction (a routed promotion
    writes the rules and its record together: ``ModelVersionRepository.record_routed``). With ``expected`` (the
    value the caller read and computed ``value`` from; None: absent), the row is locked and a value changed
    meanwhile — another station's save — raises ``ConflictError`` instead of being overwritten unseen."""
    row = s.get(ProjectSetting, key, with_for_update=expected is not _UNSET)
    if expected is not _UNSET and (row.value if row is not None else None) != json_safe(expected):
        who = f" by {row.updated_by}" if row is not None and row.updated_by else ""
        raise ConflictError(f"the project's {key} was changed{who} meanwhile; nothing was saved: look again and retry")
    if row is None:
        s.add(ProjectSetting(key=key, value=json_safe(value), updated_by=by))
    else:
        row.value, row.updated_at, row.updated_by = json_safe(value), utcnow(), by
