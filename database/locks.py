"""Transaction-scoped locks for what two stations must not do at once and that has no row to lock yet (a task's
class list, one kind of job's submissions, a folder's index).

One home for the way it is done: SQLite's write transaction (BEGIN IMMEDIATE) holds the database's one write lock
from its first statement, so there is nothing to take but that start; PostgreSQL takes an advisory lock on the name,
held to the commit or rollback, so the next transaction that asks for it waits and then reads what this one wrote.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session


def lock_for_transaction(s: Session, *names: str) -> None:
    """Take ``names`` for the rest of the session's transaction: PostgreSQL's advisory locks; on SQLite the write
    transaction is begun here, its one write lock taken (SQLAlchemy sends BEGIN IMMEDIATE with the first statement,
    and a re-flag reads what it works from through other sessions before its own first statement: another station
    saved thresholds and re-flagged in between, a session-52 audit). Names hash to 32 bits: two names that collide
    only wait for each other, never share what they guard. Several are taken in the order of their keys, so two
    transactions that ask for the same ones never take them crosswise."""
    if s.get_bind().dialect.name == "postgresql":
        for key in sorted({zlib.crc32(name.encode()) for name in names}):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        s.connection()   # BEGIN IMMEDIATE (database.engine), which SQLAlchemy sends with the first statement


def lock_folder_indexes(s: Session, folder_ids: Iterable[int]) -> None:
    """Take the folders' index (``ImageRepository.sync`` and ``move`` take their folder's) for the rest of the
    transaction, before any image row is locked: a writer of many image rows of a folder waits for a re-scan of it
    instead of locking the rows in another order. An import (``LabelRepository.append_many``) locked its images'
    rows while a folder sync updated the same rows in its own order, and PostgreSQL broke the deadlock by failing
    one, the import saying "nothing imported: ... deadlock detected." (a session-51 review). A folder's removal
    (``FolderRepository.remove``) and the models' flags and priorities written for many images
    (``ImageRepository.set_flagged``, ``set_priorities``) met a re-scan the same way (a session-52 audit), and take
    it too. A write of one image's row (a label save, F) cannot lock a folder's rows crosswise, so it takes none."""
    lock_for_transaction(s, *(f"folder-index:{int(f)}" for f in folder_ids))


def lock_image_folders(s: Session, image_ids: Iterable[int]) -> None:
    """``lock_folder_indexes`` for the folders of ``image_ids`` (PostgreSQL; on SQLite there is nothing to take, so
    their folders are not even read: an import there paid a query per 500 images for no lock)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    from database.images import chunks
    from database.models import Image

    folders: set[int] = set()
    for part in chunks(sorted(image_ids)):
        folders.update(s.scalars(select(Image.folder_id).where(Image.id.in_(part)).distinct()))
    lock_folder_indexes(s, folders)
