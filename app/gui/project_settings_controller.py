"""The project's shared settings as the window sees them: a copy kept fresh, saves off the GUI thread.

The settings live in the database (``app.services.project_settings``) so every station and the
worker use one copy. The window keeps the last copy it read (``current``) for dialogs and
verdicts, re-reads it now and then so a change made at another station shows here too, and
saves on a helper thread: a threshold change re-flags every stored prediction, which takes a
while on a big project.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from app.gui.background import BackgroundCalls
from app.services.project_settings import (
    ProjectSettings,
    ProjectSettingsError,
    change_flag_settings,
    checked_maps_folder,
    load_project_settings,
    mark_maps_folder_here,
    save_auto_prelabel,
    save_maps_folder,
    save_routing,
    save_speed_profile,
)
from app.services.reflag import Reflagged
from app.services.trace import change_trace_rule


class ProjectSettingsController(QObject):
    changed = Signal(object)    # ProjectSettings now in force (saved here or at another station)
    reflagged = Signal(object)  # Reflagged: what a threshold change saved here re-flagged
    traced = Signal(str)        # what a new trace rule saved here read in each folder (one line)
    failed = Signal(str)

    POLL_MS = 20_000

    def __init__(self, db: Any, current: ProjectSettings | None, author: Callable[[], str],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._db = db
        self._author = author
        self.current = current or ProjectSettings()
        self._active: dict[str, int] | None = None   # family -> active version id, as last read (None: not yet)
        # Bumped by each change made here: a read submitted before it answers with the old copy and
        # is ignored (it would put the old settings back on screen until the next poll).
        self._generation = 0
        self.calls = BackgroundCalls("project-settings", self)
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self.reload)
        self._timer.start()
        if current is None:
            self.reload()

    def reload(self) -> None:
        """Re-read the database's copy; ``changed`` when it differs from ours."""
        if self.calls.busy:
            return  # a save or read is on its way; it reports the new copy itself
        self._read()

    def _read(self) -> None:
        generation = self._generation

        def done(answer: tuple[ProjectSettings, dict[str, int]]) -> None:
            if generation == self._generation:
                self._adopt(*answer)
        # each family's active version is read beside them: one made active at another station reaches this window
        # with the poll (its class keys went on labelling with the old classifier's classes: a session-48 probe)
        self.calls.call(lambda: (load_project_settings(self._db), self._db.model_versions.active_ids()), done,
                        lambda e: self.failed.emit(f"Cannot read the project settings: {e}"))

    def save(self, new: ProjectSettings, read: ProjectSettings | None = None) -> None:
        """Store what ``new`` changes of ``read`` (the copy it was made from; default ``current``), each part
        over the database's copy as it is now: new thresholds re-flag every stored prediction. Found by a session-44
        probe: OK in Settings wrote its whole copy, up to 20 s old, back, so a routing rule or a folder's own
        threshold (Operating point) saved at another station meanwhile was undone without a word."""
        base, by, db = (self.current if read is None else read), self._author(), self._db
        self._generation += 1

        def work() -> tuple[ProjectSettings, Reflagged | None, str, str | None]:
            nonlocal new
            fresh = load_project_settings(db)
            reflagged, traced, maps_problem = None, "", None
            if new.maps_folder != base.maps_folder:
                try:  # a folder that cannot be used is not saved, and said; the dialog's other edits are (they were
                    checked_maps_folder(new.maps_folder)  # all dropped with it: a session-47 audit)
                except ProjectSettingsError as exc:
                    maps_problem, new = str(exc), replace(new, maps_folder=base.maps_folder)
            edited = {f.name: getattr(new.flags, f.name) for f in fields(new.flags)
                      if getattr(new.flags, f.name) != getattr(base.flags, f.name)}
            if replace(fresh.flags, **edited) != fresh.flags:  # over the stored ones as they are when written (the
                # session-45 review: a folder's operating point saved between this read and the write was lost)
                reflagged = change_flag_settings(db, lambda now: replace(now, **edited), by=by)
            if new.auto_prelabel != base.auto_prelabel:
                save_auto_prelabel(db, new.auto_prelabel, by=by)
            if new.routing != base.routing:
                save_routing(db, new.routing, by=by, read=base.routing)
            if new.speed_profile != base.speed_profile:  # new pre-label jobs run it (ADR 0025)
                save_speed_profile(db, new.speed_profile, by=by)
            if new.trace != base.trace:  # re-reads every folder's serial/lot/station, and says what it read (a
                # session-44 probe: a trace.csv with a duplicate and a bad row was saved without a word)
                traced = " · ".join(r.summary(changes=True) for r in change_trace_rule(db, new.trace, by=by))
            try:  # the rest is saved by now: a marker it cannot write is the maps folder's note, not "nothing saved"
                if new.maps_folder != base.maps_folder:  # workers write there from their next batch (ADR 0061)
                    save_maps_folder(db, new.maps_folder, by=by)
                elif new.maps_folder:   # unchanged: marked as this project's if it is not yet (a folder an older
                    mark_maps_folder_here(db, new.maps_folder)   # version saved has no marker, and is not written
            except ProjectSettingsError as exc:                  # until it has)
                maps_problem = str(exc)
            return load_project_settings(db), reflagged, traced, maps_problem

        def done(answer: tuple[ProjectSettings, Reflagged | None, str, str | None]) -> None:
            self._adopt(answer[0])
            if answer[1] is not None:
                self.reflagged.emit(answer[1])
            if answer[2]:
                self.traced.emit(answer[2])
            if answer[3]:
                self.failed.emit(f"The maps folder was not saved (the other project settings were): {answer[3]}")
        self.calls.call(work, done, lambda e: self.failed.emit(f"The project settings were not saved: {e}"))

    def saved_elsewhere(self, settings: ProjectSettings) -> None:
        """Take ``settings`` as in force now, for a change another service has just stored (the demo's
        routing on first launch): waiting for the next poll left the Jobs dock saying "No model
        routing" for up to ``POLL_MS`` while the routed jobs ran. A read already on its way is
        ignored, and a fresh one confirms the database's copy after it."""
        self._generation += 1
        self._adopt(settings)
        self._read()

    def set_auto_prelabel(self, on: bool) -> None:
        self.save(replace(self.current, auto_prelabel=on))

    def _adopt(self, settings: ProjectSettings, active: dict[str, int] | None = None) -> None:
        moved = active is not None and self._active is not None and active != self._active
        if active is not None:
            self._active = active
        if settings != self.current or moved:
            self.current = settings
            self.changed.emit(settings)

    def close(self) -> None:
        self._timer.stop()
        self.calls.close()
