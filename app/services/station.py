"""Opening the station's database for the GUI: migrate, and one clear sentence if it fails."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from database.engine import Database


class StationError(Exception):
    """The station cannot start on this database; ``str()`` is one sentence for the user."""


def open_station(url: str) -> "Database":
    from database.engine import open_database
    from database.errors import DatabaseError
    try:
        return open_database(url, migrate=True)
    except DatabaseError as exc:
        raise StationError(str(exc)) from None


def shown_url(url: str) -> str:
    """The database URL as a window may show it: any password masked (``database.errors.mask_url``)."""
    from database.errors import mask_url
    return mask_url(url)


def holds_password(url: str) -> bool:
    """Whether ``url`` carries a password (in its user part or as a ``password=`` parameter)."""
    return shown_url(url) != url
