"""One clear sentence for each way a database can fail to open or to answer.

Driver exceptions carry multi-line, driver-specific text; the station shows users (and the CLI
prints) a single sentence that says what is wrong and where, so these translate them.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL


class DatabaseError(Exception):
    """The database cannot be used as asked; ``str()`` is one sentence meant for the user."""


class ConflictError(DatabaseError):
    """A write collided with existing data (a duplicate name, a row that vanished)."""


class StaleLabelError(ConflictError):
    """A label save based on a revision that is no longer the newest: someone (another station,
    another window) saved the image since. Refused so that their label is never replaced unseen."""

    def __init__(self, image_id: int, expected: int, current: int, author: str | None) -> None:
        self.image_id, self.expected, self.current, self.author = image_id, expected, current, author
        by = f" by {author}" if author else ""
        super().__init__(f"image {image_id}'s label was saved again{by} (revision {current}) after the "
                         f"revision {expected} this save was based on.")


class RowGoneError(ConflictError):
    """A label save names an image or a model answer that is no longer stored (the file changed and was indexed
    again, which drops the old picture's answers, or the image was removed): the same save can never succeed.
    ``image_gone``: the image row itself (else the model answer the save takes from)."""

    def __init__(self, message: str, image_gone: bool) -> None:
        super().__init__(message)
        self.image_gone = image_gone


class LockedError(DatabaseError):
    """Another program (or station) held the lock longer than this write would wait: nothing was
    written, and the same write may succeed later."""


class ReadOnlyError(DatabaseError):
    """The database refuses every write (a read-only file or medium): nothing can be saved until that changes, and
    a station says so once, where the inspector looks (a session-52 audit: said only on stderr at start)."""


class UnreachableError(DatabaseError):
    """The server did not answer (not running yet, a network down, a wrong host or port): nothing was read, and the
    same open may succeed later, so a start-up box offers to try again (a session-51 audit: it was offered for every
    failure, a URL that is no URL included)."""


class PathMapUnusableError(DatabaseError):
    """The path map in ``INSPECTION_PATH_MAP`` cannot be read: nothing was opened (folder paths would be read wrong),
    and only changing the variable helps (a session-51 audit: the start-up box blamed this computer's database)."""


class FileReplacedError(DatabaseError):
    """The SQLite file this station opened is no longer the one at its path (deleted, or another moved over it): its
    pooled connections would go on writing to the unlinked file, every label lost at the next start (a session-48
    probe). Nothing is read or written until the station is started again on the file now there."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer version of the application."""


class UpgradeDeclinedError(DatabaseError):
    """An upgrade of the schema was not made: ``open_database``'s ``upgrade_ok`` said no (``pending`` says what it
    would have done and who uses the database). Nothing was changed."""

    def __init__(self, message: str, pending: object) -> None:
        super().__init__(message)
        self.pending = pending


class SchemaChangedError(DatabaseError):
    """A newer version of the station upgraded the schema under this running one: nothing more is written from here
    (its writes would lack the newer version's bookkeeping, a session-52 audit), until it is updated. ``revision``: the
    schema's revision found, for a worker's own line (``app.services.prelabel.newer_schema_stop``)."""

    def __init__(self, message: str, revision: str) -> None:
        super().__init__(message)
        self.revision = revision


_LOCKED = " is locked by another program; close it there or try again."
_READ_ONLY = " is read-only; the station needs to write to it."
_FOLDER_READ_ONLY = "; make the folder writable."
_UNREACHABLE = "cannot reach "
_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&;\s])(?:password|passwd|pwd)=)[^&;\s]*")


def mask_url(text: str) -> str:
    """A database URL as it may be shown: any password replaced by ``***``, even in a URL that does
    not parse (``make_url`` would echo it whole) or whose password holds an unencoded ``@``.

    Everything between ``scheme://user:`` and the *last* ``@`` is masked, so the second half of a
    password with an ``@`` in it is never mistaken for the host name and shown.
    """
    text = _QUERY_SECRET.sub(r"\1***", text)
    scheme, sep, rest = text.partition("://")
    if not sep:  # no scheme: 'user:password@host/db' typed without one is masked all the same
        scheme, rest = "", text
    elif rest.startswith("/"):  # sqlite:///path and the like carry no user part
        return text
    at = rest.rfind("@")
    if at < 0:
        return text
    user, colon, _password = rest[:at].partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{rest[at + 1:]}"


def where(url: URL) -> str:
    """The database's location for messages, never with the password. A server URL without a database name says so
    (a session-51 audit: "cannot reach the database 'None' on 127.0.0.1:1")."""
    if url.get_backend_name() == "sqlite":
        return f"the database file {url.database}" if url.database else "the in-memory database"
    if not url.database:
        return f"the server {_server(url)} (the URL names no database: add /NAME after the host)"
    return f"the database '{url.database}' on {_server(url)}"


def _server(url: URL) -> str:
    """``host:port`` of a server URL as messages show it."""
    host = (url.host or "localhost").rpartition("@")[2]  # never a password's tail (see mask_url)
    return f"{host}:{url.port}" if url.port else host


def asked_for(exc: BaseException, url: URL) -> str:
    """The database a server URL without a database name had the server asked for (libpq's fallback: the one named
    after the user), for the sentence that says it does not exist: a session-51 review found "the server 127.0.0.1
    (the URL names no database: …) does not exist on that server", the server made the subject. The name is the one
    the driver used where it tells it, else the URL's user."""
    pgconn = getattr(getattr(exc, "orig", None), "pgconn", None)
    tried = getattr(pgconn, "db", None)
    name = tried.decode("utf-8", "replace") if isinstance(tried, bytes) and tried else url.username
    return (f"the database '{name}' on {_server(url)} (the URL names no database, so the server was asked for one "
            "named after the user: add /NAME after the host)")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__


def describe(exc: BaseException, url: URL) -> str:
    """Translate a driver or SQLAlchemy error about ``url`` into one sentence."""
    msg = _first_line(exc)
    low = msg.lower()
    place = where(url)
    if isinstance(exc, sa_exc.IntegrityError):
        return f"the change conflicts with data already in {place} ({msg})."
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if "locked" in low or "busy" in low:
            return f"{place}{_LOCKED}"
        if "not a database" in low or "malformed" in low or "disk image" in low:
            return f"{place} is not a database or is damaged ({msg})."
        if "readonly" in low or "read-only" in low:
            if _folder_blocks(path):
                return (f"the folder {path.parent.absolute()} that holds {place} is read-only: SQLite needs to create "
                        f"its journal files beside the file{_FOLDER_READ_ONLY}")
            return f"{place}{_READ_ONLY}"
        if "unable to open" in low:
            if path.is_dir():
                return f"{place} is a folder, not a database file."
            return f"cannot open {place} ({msg})."
        return f"{place} cannot be used: {msg}."
    if "password authentication failed" in low or "authentication failed" in low:
        return f"{place} refused the login for user '{url.username}'; check the user name and password."
    if "does not exist" in low and "database" in low:
        return f"{asked_for(exc, url) if not url.database else place} does not exist on that server; create it first."
    if "lock timeout" in low:  # a short wait for another session's row lock ran out (Database.waiting_at_most)
        return f"{place}{_LOCKED}"
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not_answered(exc):
        return f"{_UNREACHABLE}{place}: {msg}."
    return f"{place} cannot be used: {msg}."


def _folder_blocks(path: Path) -> bool:
    """Whether a SQLite file this user may write sits in a folder this user may not write: SQLite then cannot create
    its journal files, and says the database is read-only (a session-52 audit: a writable file in a read-only folder was
    reported as "the database file … is read-only", sending the user to a file that was fine)."""
    try:
        return path.is_file() and os.access(path, os.W_OK) and not os.access(path.absolute().parent, os.W_OK)
    except OSError:
        return False


# the server's answers that say "not now": shutting down, crashed and restarting, starting up, too many connections
_NOT_NOW = frozenset({"57P01", "57P02", "57P03", "53300"})
# the same answers to a connection, which libpq hands over without their SQLSTATE (as the server words them in English)
_NOT_NOW_TEXT = ("shutting down", "terminating connection", "starting up", "not yet accepting connections",
                 "in recovery mode", "too many clients", "connection slots are reserved")
_SERVER_SAID = re.compile(r"failed: [^:\n]+:  ")  # libpq's "SEVERITY:  message" of an error the server sent


def not_answered(exc: BaseException) -> bool:
    """Whether a failure to connect or to be answered is the server's absence (not running, starting, a network
    down, a wrong host or port) or its "not now" (starting up, shutting down, too many connections), which a retry
    may get past, and not an answer that refuses (a role or a database that does not exist, ``pg_hba.conf``): a
    session-51 review found "role 'ghost' does not exist" offered Retry, "the server may be starting", since any
    driver error naming a connection was taken for no answer. An error with a SQLSTATE was sent by the server; one
    without came from the client library, save for the server's refusal of a connection, which libpq words
    "SEVERITY:  message" without its SQLSTATE."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    if state is not None:
        return state in _NOT_NOW
    text = str(orig).lower()
    if _SERVER_SAID.search(text):
        return any(t in text for t in _NOT_NOW_TEXT)
    return any(k in text for k in ("connection", "connect", "resolve", "translate host", "timeout", "timed out"))


_ENUM_REFUSAL = re.compile(r"^.* is not a valid \w+$")


def unreadable_row(exc: BaseException) -> bool:
    """Whether a ValueError raised while reading rows means a row holds what the station never
    writes (JSON that does not parse, an unknown state): a database changed by another program."""
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True
    return isinstance(exc, ValueError) and bool(_ENUM_REFUSAL.match(str(exc)))


def unreadable(exc: BaseException, url: URL) -> DatabaseError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return DatabaseError(f"{where(url)} holds a row the station cannot read ({first}); it was changed by "
                         "something other than the station. Nothing was changed.")


def translate(exc: BaseException, url: URL) -> DatabaseError:
    text = describe(exc, url)
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError(text)
    if text.endswith(_LOCKED):
        return LockedError(text)
    if text.endswith((_READ_ONLY, _FOLDER_READ_ONLY)):
        return ReadOnlyError(text)
    return UnreachableError(text) if text.startswith(_UNREACHABLE) else DatabaseError(text)
