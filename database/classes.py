"""Class names per task (family): their order is the model's output index."""
from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from database.convert import to_dto
from database.dto import ClassInfo
from database.errors import ConflictError
from database.locks import lock_for_transaction
from database.models import TaskClass

if TYPE_CHECKING:
    from database.engine import Database


class ClassListChanged(ConflictError):
    """The class list was saved elsewhere after the caller read it; ``now`` is the list as stored."""

    def __init__(self, now: Sequence[str]) -> None:
        self.now = list(now)
        super().__init__(f"the class list was changed at another station meanwhile (now: {', '.join(now) or 'none'})")


def _lock_list(s: Session, task: str) -> None:
    """Take the task's class list for this transaction: two stations adding a class at once each read the list and
    replaced it whole, so one addition was lost without a word, or PostgreSQL refused one with a duplicate key (a
    session-44 probe). SQLite's write transaction holds its one lock already; PostgreSQL takes a transaction-scoped
    advisory lock on the task, which also covers a list with no row yet to lock."""
    lock_for_transaction(s, f"classes:{task}")


class ClassRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, task: str, s: Session | None = None) -> builtins.list[ClassInfo]:
        """The task's classes in order; ``s``: read in that transaction (``Database.reading``)."""
        with self.db.reading(s) as r:
            rows = r.scalars(select(TaskClass).where(TaskClass.task == task).order_by(TaskClass.index))
            return [to_dto(row, ClassInfo) for row in rows]

    def names(self, task: str, s: Session | None = None) -> builtins.list[str]:
        return [c.name for c in self.list(task, s)]

    def set(self, task: str, names: Sequence[str], expected: Sequence[str] | None = None) -> builtins.list[ClassInfo]:
        """Replace the task's classes by ``names`` in this order (labels keep their names). ``expected``: the list the
        caller read and made ``names`` from; a list changed since (another station's save) raises
        ``ClassListChanged`` and nothing is written."""
        if len(set(names)) != len(names):
            raise ConflictError(f"class names for '{task}' must be unique: {list(names)}.")
        with self.db.session(write=True) as s:
            _lock_list(s, task)
            if expected is not None:
                now = list(s.scalars(select(TaskClass.name).where(TaskClass.task == task).order_by(TaskClass.index)))
                if now != list(expected):
                    raise ClassListChanged(now)
            s.execute(delete(TaskClass).where(TaskClass.task == task))
            s.flush()
            rows = [TaskClass(task=task, name=n, index=i) for i, n in enumerate(names)]
            s.add_all(rows)
            s.flush()
            return [to_dto(r, ClassInfo) for r in rows]

    def add(self, task: str, name: str) -> ClassInfo:
        """Append a class at the next index; an existing name is returned unchanged."""
        with self.db.session(write=True) as s:
            _lock_list(s, task)
            row = s.scalar(select(TaskClass).where(TaskClass.task == task, TaskClass.name == name))
            if row is None:
                nxt = s.scalar(select(func.coalesce(func.max(TaskClass.index) + 1, 0)).where(TaskClass.task == task))
                row = TaskClass(task=task, name=name, index=int(nxt or 0))  # coalesce: never NULL
                s.add(row)
                s.flush()
            return to_dto(row, ClassInfo)
