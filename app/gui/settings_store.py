"""This user's own settings, kept in an INI file in the station's data folder (QSettings).

Only per-user, per-machine choices live here: reviewer name, auto-advance, worker device,
theme, window layout, and the database URL (it cannot live in the database it points to).
What a whole project shares (flag thresholds, auto pre-label, model routing) lives in the
database (``app.services.project_settings``); docs/settings.md lists which is which. Values are
validated on the way in so a hand-edited file cannot break start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from PySide6.QtCore import QSettings

from app.paths import data_dir
from app.services.flags import FlagSettings
from app.services.review import ReviewSettings

DEVICES = ("auto", "cpu", "cuda")


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


def _qsettings() -> QSettings:
    data_dir().mkdir(parents=True, exist_ok=True)
    return QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def _coerce(name: str, raw, default):
    if raw is None or raw == "":
        return default
    if default is None:  # an optional number (the legacy anomaly threshold)
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    if isinstance(default, bool):
        return str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(default, float):
        try:
            return min(1.0, max(0.0, float(raw)))
        except (TypeError, ValueError):
            return default
    return str(raw)


def load_settings() -> StationSettings:
    q = _qsettings()
    base = StationSettings()
    values = {f.name: _coerce(f.name, q.value(f.name), getattr(base, f.name)) for f in fields(StationSettings)}
    if values["device"] not in DEVICES:
        values["device"] = "auto"
    if values["theme"] not in ("light", "dark"):
        values["theme"] = "light"
    return StationSettings(**values)


def save_settings(s: StationSettings) -> None:
    q = _qsettings()
    for f in fields(StationSettings):
        v = getattr(s, f.name)
        q.setValue(f.name, "" if v is None else v)
    q.sync()


LEGACY_THRESHOLDS = {"anomaly_threshold": None, "min_confidence": 0.6}


def legacy_thresholds() -> dict:
    """The thresholds older stations' Settings dialog kept here, for the one-time import into the
    project's settings (``project_settings.adopt_legacy_settings``); never written any more."""
    q = _qsettings()
    return {k: _coerce(k, q.value(k), d) for k, d in LEGACY_THRESHOLDS.items()}


def window_state() -> QSettings:
    """Where the main window keeps its geometry and dock layout."""
    return _qsettings()
