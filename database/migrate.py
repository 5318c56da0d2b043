"""Alembic, configured in code: the migration scripts ship inside the package, no alembic.ini.

The station migrates its database to the newest schema when it starts; a database whose
revision this version does not know was written by a newer version and is left untouched.
"""
from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"

log = logging.getLogger(__name__)


# What the migrations keep outside the ORM's metadata: SQLite's FTS5 index of the image names
# (0008_queue_keys) and its shadow tables; PostgreSQL's trigram index of the names (0009_pg_search,
# present only where pg_trgm could be created). Comparisons with the metadata leave them out.
UNMAPPED_PREFIX = "images_name_fts"
UNMAPPED_INDEXES = frozenset({"ix_images_name_trgm"})


def mapped_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: False for the tables and indexes the metadata does not describe."""
    if name is None:
        return True
    return not ((type_ == "table" and name.startswith(UNMAPPED_PREFIX))
                or (type_ == "index" and name in UNMAPPED_INDEXES))


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def known_revisions() -> set[str]:
    return {rev.revision for rev in script_directory().walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The schema revision stored in the database (None for an empty database)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return MigrationContext.configure(connection).get_current_revision()


def has_user_tables(connection: Connection) -> bool:
    return any(t != VERSION_TABLE for t in inspect(connection).get_table_names())


def upgrade(connection: Connection, target: str = "head") -> None:
    log.info("migrating the database schema from %s to %s", current_revision(connection) or "(empty)", target)
    command.upgrade(alembic_config(connection), target)


def downgrade(connection: Connection, target: str) -> None:
    command.downgrade(alembic_config(connection), target)
