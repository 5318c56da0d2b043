"""This user's own settings, kept in an INI file in the station's data folder (QSettings).

Only per-user, per-machine choices live here: reviewer name, auto-advance, worker device,
theme, window layout, and the database URL (it cannot live in the database it points to).
What a whole project shares (flag thresholds, auto pre-label, model routing) lives in the
database (``app.services.project_settings``); docs/settings.md lists which is which. Values are
validated on the way in so a hand-edited file cannot break start-up (a value holding a comma or a semicolon must be
quoted there, as the station writes it: ``reviewer="Smith, John"``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings

from app.paths import data_dir
from app.services.flags import FlagSettings
from app.services.review import ReviewSettings

DEVICES = ("auto", "cpu", "cuda")
MAX_SETTINGS_BYTES = 1 << 20  # the station writes a few KiB (the window layout the most); larger is not its file


@dataclass(frozen=True)
class StationSettings:
    reviewer: str = ""
    auto_advance: bool = True
    device: str = "auto"
    database_url: str = ""   # empty: the default SQLite file in the data folder
    theme: str = "light"
    demo_prelabelled: bool = False
    # Where this computer reaches folders stored with another machine's path: "STORED=LOCAL; ..." (ADR 0065;
    # INSPECTION_PATH_MAP, set in the environment, wins). Used from the next start, by this station and its worker.
    path_map: str = ""

    def review(self, flags: FlagSettings | None = None) -> ReviewSettings:
        """The review service's settings: this user's choices with the project's thresholds."""
        flags = flags or FlagSettings()
        return ReviewSettings(self.reviewer, flags.anomaly_threshold, flags.min_confidence, self.auto_advance,
                              flags.folder_thresholds)


class SettingsStoreError(OSError):
    """This user's settings file cannot be made or written where the data folder is; ``str()`` says where and why."""


def _qsettings(notes: list[str] | None = None) -> QSettings:
    try:
        data_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a session-44 probe: INSPECTION_STATION_HOME naming a file ended the start in a traceback
        raise SettingsStoreError(f"the station's data folder {data_dir()} cannot be made "
                                 f"({exc.strerror or exc}); set INSPECTION_STATION_HOME to a folder") from None
    path = data_dir() / "settings.ini"
    note = _set_aside_if_not_ours(path)
    if note and notes is not None:
        notes.append(note)
    return QSettings(str(path), QSettings.Format.IniFormat)


def _set_aside_if_not_ours(path: Path) -> str | None:
    """A settings.ini that is not one the station writes is renamed beside itself, kept for its owner, and the station
    starts with the defaults, said: one larger than ``MAX_SETTINGS_BYTES`` (QSettings reads the whole file at every
    start and every save: a 311 MB file was loaded whole, a session-47 audit), and one saved as UTF-16 (Notepad's
    "Unicode"), which QSettings reads as no setting at all (a session-51 audit: reviewer, theme and device fell back
    without a word, labels were authored by the login name, and the layout saved at close wrote mangled keys into
    it). A file the station writes is UTF-8 text of a few KiB: it never holds a NUL byte."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4096) if size <= MAX_SETTINGS_BYTES else b""
    except OSError:
        return None   # absent (a first start) or unreadable: QSettings says so through its status
    if size > MAX_SETTINGS_BYTES:
        kind, what = "oversized", (f"{size:,} bytes, more than a settings file this station writes (at most "
                                   f"{MAX_SETTINGS_BYTES:,})")
        now, then = f"holds {what}", f"held {what}"
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in head:
        kind, what = "not-utf8", "UTF-8 text, which this station reads (saved as UTF-16, Notepad's \"Unicode\", or damaged?)"
        now, then = f"is not {what}", f"was not {what}"
    else:
        return None
    aside = path.with_name(f"settings.ini.{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        path.rename(aside)
    except OSError as exc:
        raise SettingsStoreError(f"{path} {now}, and cannot be set aside ({exc.strerror or exc}); move it away") \
            from None
    again = " (saved as UTF-8 and named settings.ini, it is read again)" if kind == "not-utf8" else ""
    return f"{path} {then}: kept as {aside.name}{again}, and the settings start from the defaults"


class _NotUnderstood(ValueError):
    """A hand-edited value this file cannot hold: its setting falls back, and the start says so."""


def _coerce(name: str, raw, default):
    if raw is None or raw == "":
        return default
    if default is None:  # an optional number (the legacy anomaly threshold)
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    if isinstance(default, bool):
        word = str(raw).lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise _NotUnderstood(f"{str(raw)[:40]!r} is not true or false")  # "maybe" read as False (default: True)
        return word in ("1", "true", "yes", "on")
    if isinstance(default, float):
        try:
            return min(1.0, max(0.0, float(raw)))
        except (TypeError, ValueError):
            return default
    if isinstance(raw, (list, tuple)):  # an unquoted comma in a hand-edited file: "Smith, John" reads as a list
        raw = ", ".join(str(v) for v in raw)
    if not isinstance(raw, str):  # @ByteArray(…) and such: not a value this file holds
        return default
    if "\n" in raw or "\r" in raw:
        # a quote left open swallows every later line into this value: "Smith, John\ndevice=cpu…" was stamped on
        # label revisions as their author (a session-47 audit)
        raise _NotUnderstood("it runs over several lines (a quote left open?)")
    return raw


def load_settings(notes: list[str] | None = None) -> StationSettings:
    """This user's settings; a value the file holds that cannot be one falls back to its default, and ``notes`` gets
    a line for it (garbage in a hand-edited settings.ini was dropped without a word: a session-47 audit)."""
    said = notes if notes is not None else []
    q = _qsettings(said)
    if q.status() == QSettings.Status.FormatError:
        said.append(f"{q.fileName()}: a line could not be read (a section or quote left open?); the settings after it "
                    "may be the defaults")
    base = StationSettings()
    values = {}
    for f in fields(StationSettings):
        default = getattr(base, f.name)
        try:
            values[f.name] = _coerce(f.name, q.value(f.name), default)
        except _NotUnderstood as exc:
            values[f.name] = default
            said.append(f"settings.ini: {f.name} not used ({exc}); {default!r} instead")
    for name, allowed, default in (("device", DEVICES, "auto"), ("theme", ("light", "dark"), "light")):
        if values[name] not in allowed:
            said.append(f"settings.ini: {name} {str(values[name])[:40]!r} not understood; {default!r} instead")
            values[name] = default
    return StationSettings(**values)


def save_settings(s: StationSettings, read: StationSettings | None = None) -> None:
    """Write ``s``: only what it changes of ``read`` (the copy it was made from), so a second window of this user
    keeps what it saved meanwhile (a session-44 probe: window B's Settings wrote its whole copy back over window A's
    reviewer, theme and path map). ``SettingsStoreError`` when the file cannot be written (that probe's unwritable
    data folder: the reviewer name was lost at the next start without a word)."""
    q = _qsettings()
    for f in fields(StationSettings):
        v = getattr(s, f.name)
        if read is None or v != getattr(read, f.name):
            q.setValue(f.name, "" if v is None else v)
    q.sync()
    if q.status() != QSettings.Status.NoError:
        raise SettingsStoreError(f"{q.fileName()} cannot be written (a read-only or full disk, or not a file): your "
                                 "settings apply to this session only")


LEGACY_THRESHOLDS = {"anomaly_threshold": None, "min_confidence": 0.6}


def legacy_thresholds() -> dict:
    """The thresholds older stations' Settings dialog kept here, for the one-time import into the
    project's settings (``project_settings.adopt_legacy_settings``); never written any more."""
    q = _qsettings()
    return {k: _coerce(k, q.value(k), d) for k, d in LEGACY_THRESHOLDS.items()}


def window_state() -> QSettings:
    """Where the main window keeps its geometry and dock layout."""
    return _qsettings()
