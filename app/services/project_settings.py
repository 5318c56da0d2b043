"""Project settings: flag thresholds, auto pre-label, model routing and speed profile, one copy in the database.

Why one copy in the database: the thresholds decide which images the worker flags and how every
inspector's queue is ordered, the routing decides which models run on which images, and a team
shares one database (SQLite on a share or PostgreSQL). A value kept in one user's QSettings
never reached the worker, and a JSON file beside a SQLite database cannot serve a PostgreSQL
team. Per-user choices (reviewer name, theme, window layout, device, database URL) stay in
the user's QSettings (``app.gui.settings_store``); docs/settings.md lists which is which.

Older stations kept thresholds in ``<db>-flag_settings.json`` / the user's QSettings and the
routing in ``<db>-model_routing.json``. Until a database holds its own value those files are
read (never written), and ``adopt_legacy_settings`` copies them in once, so nobody loses a
threshold or a rule by updating. Qt-free: the GUI passes its QSettings values in as plain data.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from app.paths import data_dir
from app.services.artifacts import MAPS_MARKER, beside_database, foreign_entry
from app.services.flags import SETTINGS_FILE, FlagSettings, load_flag_settings
from app.services.routing import ROUTING_FILE, Routing, RoutingError, load_routing
from app.services.trace import TRACE, TraceRule, TraceRuleError
from database.dto import ImageQuery
from inference.profiles import NAMES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.services.reflag import Reflagged
    from database.engine import Database

log = logging.getLogger(__name__)
PROFILE_NAMES = NAMES  # the speed profiles a project may choose (the GUI offers them through here)

FLAGS = "flags"
AUTO_PRELABEL = "auto_prelabel"
ROUTING = "routing"
SPEED_PROFILE = "speed_profile"
MAPS_FOLDER = "maps_folder"


class ProjectSettingsError(ValueError):
    """A stored project setting that cannot be used, with the key and the reason."""


@dataclass(frozen=True)
class ProjectSettings:
    """Plain data, safe to hand between threads: what every station and worker of a project uses."""

    flags: FlagSettings = field(default_factory=FlagSettings)
    auto_prelabel: bool = True     # pre-label images a folder gains as soon as it is indexed
    routing: Routing = field(default_factory=Routing)
    trace: TraceRule = field(default_factory=TraceRule)  # serial/lot/station from names or trace.csv
    # The model cards' speed profile pre-labelling runs ("accurate", "fast"); "" = each card's
    # default. A card without that profile runs its default (inference.profiles, ADR 0025).
    speed_profile: str = ""
    # The project's own class list (``app.services.project_classes``, the classes table; empty: the
    # active classifier's). Read here so a list saved at another station reaches this one's window
    # with the next poll; saved only through project_classes, never by ``save``.
    classes: tuple[str, ...] = ()
    # The folder every station and worker keeps anomaly maps in (ADR 0061); "" = each station its own
    # (beside a SQLite file, else the user cache), so a map made by another station's worker is not seen.
    maps_folder: str = ""


def legacy_flag_settings_path(db_url: str) -> Path:
    """Where stations before the settings table kept a project's thresholds (read for the import only)."""
    return beside_database(db_url, "-" + SETTINGS_FILE) or data_dir() / SETTINGS_FILE


def legacy_routing_path(db_url: str) -> Path:
    """Where stations before the settings table kept a project's routing (read for the import only)."""
    return beside_database(db_url, "-" + ROUTING_FILE) or data_dir() / ROUTING_FILE


def _legacy(db_url: str, keys: Sequence[str] = (FLAGS, ROUTING)) -> dict[str, Any]:
    """The values older stations kept in files, of ``keys`` only (absent files: nothing). Only the keys the database
    lacks are read: with no rules stored (a project that never had any), the flags' old file was read again at
    every load, and one this version cannot read failed every settings load, thresholds stored in the database
    ignored (the session-45 review)."""
    out: dict[str, Any] = {}
    if FLAGS in keys and legacy_flag_settings_path(db_url).is_file():
        out[FLAGS] = load_flag_settings(legacy_flag_settings_path(db_url)).to_dict()
    if ROUTING in keys and legacy_routing_path(db_url).is_file():
        out[ROUTING] = load_routing(legacy_routing_path(db_url), strict=False).to_dict()
    return out


def _parse(stored: Mapping[str, Any]) -> ProjectSettings:
    try:
        flags = FlagSettings.from_dict(stored.get(FLAGS))
    except (ValueError, TypeError) as exc:
        raise ProjectSettingsError(f"the project's flag thresholds cannot be used ({exc})") from None
    try:
        routing = Routing.from_dict(stored.get(ROUTING))
    except RoutingError as exc:
        raise ProjectSettingsError(f"the project's model routing cannot be used ({exc})") from None
    auto = stored.get(AUTO_PRELABEL, True)
    if not isinstance(auto, bool):
        raise ProjectSettingsError(f"the project's auto pre-label setting must be true or false, not {auto!r}")
    try:
        trace = TraceRule.from_dict(stored.get(TRACE))
    except TraceRuleError as exc:
        raise ProjectSettingsError(f"the project's trace rule cannot be used ({exc})") from None
    profile = stored.get(SPEED_PROFILE, "")
    if profile not in ("",) + PROFILE_NAMES:
        raise ProjectSettingsError(f"the project's speed profile must be one of {', '.join(PROFILE_NAMES)} "
                                   f"or empty, not {profile!r}")
    maps = stored.get(MAPS_FOLDER, "")
    if not isinstance(maps, str):
        raise ProjectSettingsError(f"the project's maps folder must be a path, not {maps!r}")
    return ProjectSettings(flags=flags, auto_prelabel=auto, routing=routing, trace=trace, speed_profile=profile,
                           maps_folder=maps)


def load_project_settings(db: "Database", s: "Session | None" = None) -> ProjectSettings:
    """The project's settings (defaults for what was never set; ProjectSettingsError if a stored value is broken;
    a not yet imported legacy file that cannot be read is passed over, logged: ``adopt_legacy_settings`` says it).
    ``s``: read in that transaction (a re-flag's, under its lock: ``reflag.stored_thresholds``)."""
    stored = db.project_settings.all(s)
    legacy: dict[str, Any] = {}
    for key in (k for k in (FLAGS, ROUTING) if k not in stored):
        try:
            legacy.update(_legacy(db.url, (key,)))
        except ValueError as exc:  # an old file this version cannot read stands for nothing: the stored settings
            # stand (a session-46 probe: a broken old routing file beside a database without rules failed every
            # load, and the station and its worker flagged with the default thresholds, not the stored ones)
            log.warning("%s: not read (%s); the project's stored settings apply", key, exc)
    stored = {**legacy, **stored}
    from app.services.project_classes import TASK
    return replace(_parse(stored), classes=tuple(db.classes.names(TASK, s)))


def readable_routing(db: "Database") -> Routing:
    """The stored model routing, or no rules when the stored settings cannot be read (whoever edits
    them is told why; readers that only look up named versions go on as without rules)."""
    try:
        return load_project_settings(db).routing
    except ValueError:
        return Routing()


def save_flag_settings(db: "Database", flags: FlagSettings, by: str | None = None) -> None:
    db.project_settings.put(FLAGS, flags.to_dict(), by=by)


def update_flag_settings(db: "Database", change: Callable[[FlagSettings], FlagSettings], by: str | None = None,
                         tries: int = 5) -> FlagSettings:
    """Apply ``change`` to the stored flag settings and store the result only if nobody saved them meanwhile (read
    again and retried otherwise); returns what was stored. Two stations saving the operating points of two folders
    at once lost one of them in 8 of 10 rounds, both told "saved" (a session-45 probe on PostgreSQL)."""
    from database.errors import ConflictError
    for _ in range(tries):
        stored = db.project_settings.get(FLAGS)
        flags = change(load_project_settings(db).flags)
        try:
            db.project_settings.put(FLAGS, flags.to_dict(), by=by, expected=stored)
            return flags
        except ConflictError:
            continue
    raise ProjectSettingsError("the project's thresholds kept changing at another station; nothing was saved: "
                               "try again")


def change_flag_settings(db: "Database", flags: FlagSettings | Callable[[FlagSettings], FlagSettings],
                         by: str | None = None) -> Reflagged:
    """Store new thresholds and re-flag every stored prediction with them (no model runs);
    returns how many images were re-checked and how many changed flag. ``flags``: the settings, or a change of the stored ones (applied over
    them as they are when written: ``update_flag_settings``). Slow on a big project: call it off the GUI thread."""
    from app.services.reflag import reflag_project, stored_thresholds
    if callable(flags):
        update_flag_settings(db, flags, by=by)
    else:
        save_flag_settings(db, flags, by=by)
    return reflag_project(db, stored_thresholds(db))   # read as stored when each part is re-flagged: a later save's
    # re-flag at another station may be ahead of this one, and the last to write must write what is stored


class RoutingChanged(ProjectSettingsError):
    """The rules were saved elsewhere after the caller read the ones it edited; ``now`` are the rules stored."""

    def __init__(self, now: Routing) -> None:
        self.now = now
        shown = "; ".join(f"{r.pattern} → {', '.join(r.families) or 'none'}" for r in now.rules) or "no rules"
        super().__init__(f"the model routing was changed at another station meanwhile (now: {shown}); nothing was "
                         "saved")


def save_routing(db: "Database", routing: Routing, by: str | None = None, read: Routing | None = None) -> int:
    """Save the rules; the versions they name must exist (a bundled one is registered), else a
    ``RoutingError`` and nothing saved. When these or the previous rules name versions, the
    answers that count are re-marked (``counting_versions``): returns how many rows changed. ``read``: the rules the
    caller edited (the Model routing dialog's); rules saved elsewhere since raise ``RoutingChanged`` and nothing is
    saved (a session-44 probe: a rule another station saved while the dialog was open was dropped by its OK)."""
    from app.services.counting_versions import remark_after_change, resolve_named
    resolve_named(db, routing)
    stored = db.project_settings.get(ROUTING)
    before = readable_routing(db)
    if read is not None and before != read:
        raise RoutingChanged(before)
    db.project_settings.put(ROUTING, routing.to_dict(), by=by, **({} if read is None else {"expected": stored}))
    return remark_after_change(db, before, routing)


def save_auto_prelabel(db: "Database", on: bool, by: str | None = None) -> None:
    db.project_settings.put(AUTO_PRELABEL, bool(on), by=by)


def save_speed_profile(db: "Database", profile: str, by: str | None = None) -> None:
    """Store the speed profile new pre-label jobs run (predictions already stored are kept)."""
    if profile not in ("",) + PROFILE_NAMES:
        raise ProjectSettingsError(f"unknown speed profile {profile!r}; choose from {', '.join(PROFILE_NAMES)}")
    db.project_settings.put(SPEED_PROFILE, profile, by=by)


def checked_maps_folder(folder: str) -> str:
    """The maps folder to store: "" (each station its own), or an absolute path to a folder that exists
    and this station can write to; else ``ProjectSettingsError`` saying which. Checked on the saving
    station only, and stored as the path map's canonical path: another machine that reaches the share elsewhere
    maps it (ADR 0065; or sets ``INSPECTION_STATION_ARTIFACTS``). A folder not yet marked as a maps folder must hold
    nothing the station did not write (``artifacts.foreign_entry``): a session-51 audit saved a share holding a line's
    part images in ``L1/`` and ``db sweep-maps`` then removed them. A marked one is taken as it is (a project's
    folder saved before this check, or another project's that this one shares)."""
    folder = folder.strip()
    if not folder:
        return ""
    path = Path(os.path.expanduser(folder))
    if not path.is_absolute():
        raise ProjectSettingsError(f"the maps folder must be a full path that every station reaches, not {folder!r}")
    if not path.is_dir():
        raise ProjectSettingsError(f"the maps folder {path} is not a folder on this station")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ProjectSettingsError(f"this station cannot write to the maps folder {path} ({exc.strerror or exc})") from None
    if not (path / MAPS_MARKER).is_file():
        try:
            foreign = foreign_entry(path)
        except OSError as exc:
            raise ProjectSettingsError(f"the maps folder {path} cannot be read ({exc.strerror or exc})") from None
        if foreign is not None:
            raise ProjectSettingsError(f"the maps folder {path} holds files the station did not write "
                                       f"({foreign.relative_to(path)}): choose an empty folder only the station writes "
                                       "to, on the share")
    from database import path_map
    return path_map.stored(str(path))  # as the folders are stored: each machine reads it through its path map


def save_maps_folder(db: "Database", folder: str, by: str | None = None) -> str:
    """Store the project's maps folder (``checked_maps_folder``); workers write new maps there from their
    next batch, and stations read there; a map made before reaches it when a job covers its image at the station
    that made it (copied, no model runs: ADR 0061). The folder's marker names the project (``project_id``)."""
    checked = checked_maps_folder(folder)
    if checked:
        mark_maps_folder_here(db, checked)
    db.project_settings.put(MAPS_FOLDER, checked, by=by)
    return checked


def mark_maps_folder_here(db: "Database", stored: str) -> None:
    """Mark the project's maps folder as this project's where its marker does not say so (a worker writes only where
    it finds the mark: a share not mounted leaves an empty folder; ``db sweep-maps`` sweeps only a folder naming its
    project). Settings' OK calls it for a folder saved before markers existed, without storing the setting again."""
    from app.services.artifacts import maps_folder_project, mark_maps_folder
    from database import path_map

    path = Path(path_map.local(stored))   # (stored as the path map's canonical path: reached here locally)
    project = project_id(db)
    if path.is_dir() and maps_folder_project(path) != project:
        try:
            mark_maps_folder(path, project)
        except OSError as exc:
            raise ProjectSettingsError(f"this station cannot write to the maps folder {path} "
                                       f"({exc.strerror or exc})") from None


PROJECT_ID = "project_id"


def project_id(db: "Database") -> str:
    """This project's own name for itself, made once (a maps folder's marker names it: ``db sweep-maps`` sweeps only
    the maps of the project a folder names)."""
    import uuid

    stored = db.project_settings.get(PROJECT_ID)
    if isinstance(stored, str) and stored:
        return stored
    db.project_settings.put_missing({PROJECT_ID: uuid.uuid4().hex})
    again = db.project_settings.get(PROJECT_ID)
    return str(again)


def adopt_legacy_settings(db: "Database", station_thresholds: Mapping[str, Any] | None = None,
                          by: str | None = None) -> list[str]:
    """Copy an older station's values into the database, once: the files beside a SQLite database
    and the thresholds the Settings dialog kept in this user's QSettings (``anomaly_threshold``,
    ``min_confidence``; they win over the file, as they were what the window showed). Keys the
    database already holds are never replaced. Returns the keys written (empty after the first time).
    Raises ProjectSettingsError, writing nothing, when a legacy file is broken."""
    stored = db.project_settings.all()
    if FLAGS in stored and (ROUTING in stored or not legacy_routing_path(db.url).is_file()):
        return []
    try:
        legacy = _legacy(db.url)
    except ValueError as exc:
        raise ProjectSettingsError(f"{exc}; fix or remove the file, nothing was imported") from None
    flags = FlagSettings.from_dict(legacy.get(FLAGS))
    overlay = {k: v for k, v in (station_thresholds or {}).items()
               if k in ("anomaly_threshold", "min_confidence") and v != getattr(FlagSettings(), k)}
    if overlay:
        flags = replace(flags, **overlay)
    # Rules only where an older station kept some: stored as "no rules" here, they read as rules a person saved empty
    # on purpose, and the demo's routing was never adopted on a new database (every family ran on every demo image;
    # the session-45 Xvfb run of the README's launch command)
    values = {FLAGS: flags.to_dict(), **({ROUTING: legacy[ROUTING]} if ROUTING in legacy else {})}
    return db.project_settings.put_missing({k: v for k, v in values.items() if k not in stored}, by=by)


MAX_LISTED = 6                   # subfolders named in the Jobs dock's routing line
GROUP_NAMED = 3                  # of subfolders that get the same models, how many are named before "and N more"
TOP_LEVEL = "(top level)"        # images directly in the folder


def first_level(rel_path: str) -> str:
    """The first-level subfolder (``"ir/"``) an image of a folder lies in, or ``TOP_LEVEL``."""
    path = rel_path.replace("\\", "/")
    return path.split("/", 1)[0] + "/" if "/" in path else TOP_LEVEL


def subfolders_of(db: "Database", image_ids: Sequence[int]) -> frozenset[str]:
    """The first-level subfolders of these images (the window asks whether new files opened a new one)."""
    return frozenset(first_level(im.rel_path) for im in db.images.get_many(list(image_ids)))


def routing_overview(db: "Database", folder_id: int, routing: Routing, families: list[str]) -> str:
    """``routing_overview_of``'s line alone."""
    return routing_overview_of(db, folder_id, routing, families)[0]


def routing_overview_of(db: "Database", folder_id: int, routing: Routing, families: list[str]
                        ) -> tuple[str, frozenset[str]]:
    """One line saying which families run on which subfolders of a folder (for the Jobs dock), and the
    first-level subfolders it covers (a new file elsewhere makes the line stale).

    Without rules every family runs on every image, which is worth saying out loud: a steel
    classifier's verdict on an infrared frame is noise the inspector has to look past. With
    rules, each first-level subfolder lists what its images actually get.
    """
    folder = db.folders.get(folder_id)
    name = folder.name if folder is not None else ""
    per_sub: dict[str, set[tuple[str, ...]]] = {}
    for im in db.images.query(ImageQuery(folder_id=folder_id, sort="id")):
        path = im.rel_path.replace("\\", "/")
        sub = first_level(path)
        rule = routing.rule_for(path, name)
        versions = rule.named if rule is not None else {}
        fams = tuple(f"{f} ({versions[f]})" if f in versions else f
                     for f in routing.families_for(path, name) if f in families)
        per_sub.setdefault(sub, set()).add(fams)
    subs = sorted(per_sub)
    more = " …" if len(subs) > MAX_LISTED else ""
    if not routing.rules:
        named = [x for x in subs if x != TOP_LEVEL]
        where = ", ".join(named[:MAX_LISTED]) + more if named else "this folder"
        if named and TOP_LEVEL in per_sub:
            where += " and at its top level"
        return (f"No model routing: every family ({', '.join(families) or 'no model'}) runs on every image in "
                f"{where}.", frozenset(per_sub))
    # subfolders that get the same models are named together: seven lots under one rule read as one line part
    # (seen under Xvfb, session 40: the same part seven times, cut off before anything new was said)
    groups: dict[str, list[str]] = {}
    for sub in subs:
        choices = sorted(per_sub[sub], key=len, reverse=True)
        groups.setdefault(" or ".join(", ".join(c) or "nothing" for c in choices), []).append(sub)
    named = [x for x in subs if x != TOP_LEVEL]
    if len(groups) == 1 and len(named) > 1:
        what = next(iter(groups))
        top = " and the top level" if TOP_LEVEL in per_sub else ""
        return f"Model routing: all {len(named)} subfolders{top} → {what}", frozenset(per_sub)
    parts = []
    for what, members in list(groups.items())[:MAX_LISTED]:
        names = ", ".join(members[:GROUP_NAMED]) + (f" and {len(members) - GROUP_NAMED} more"
                                                     if len(members) > GROUP_NAMED else "")
        parts.append(f"{names} → {what}")
    more = " …" if len(groups) > MAX_LISTED else ""
    return "Model routing: " + ("; ".join(parts) or "no image yet") + more, frozenset(per_sub)
