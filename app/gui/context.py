"""What the window needs from the rest of the station, built once by the gui command.

The context holds the Qt-free services (review, jobs, export, model versions) and the reviewer's settings; the
window only sees this object, which keeps the composition (which database, which worker) out
of the widgets and lets tests build a window on a temporary database.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from app.gui.settings_store import StationSettings
from app.services.review import ReviewService

if TYPE_CHECKING:
    from app.services.model_catalog import ModelCatalog
    from app.services.project_settings import ProjectSettings
    from app.services.review_jobs import ReviewJobs

log = logging.getLogger(__name__)


@dataclass
class StationContext:
    review: ReviewService
    settings: StationSettings
    db_url: str = ""
    project_settings: ProjectSettings | None = None  # read at start, or None
    jobs: ReviewJobs | None = None    # None: no pre-labelling
    export_db: Any = None             # the database handle the export service reads (opaque here)
    models: ModelCatalog | None = None  # None: no Models dialog
    interactive: bool = True          # False in tests/screenshots: no modal message boxes
    extensions: list[Callable[[Any], None]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    # What closing the station would stop (asked before it closes): each answers a sentence, or None when
    # nothing of it runs (the Models dialog: a retraining in progress).
    close_questions: list[Callable[[], str | None]] = field(default_factory=list)

    def extend_window(self, window) -> None:
        """Let optional parts (jobs panel, export, settings) add their docks and menu entries."""
        for ext in self.extensions:
            ext(window)

    def prepare_demo(self, window) -> None:
        """First launch of the demo on a database: route each demo subfolder (infrared frames, steel strips, tiles)
        to the family trained for it, before the demo opens, so its automatic pre-label job runs the right models. A
        project's own rules are never replaced (``ReviewJobs.adopt_routing``). Not a per-user flag: a session-44
        probe's new database (station.sqlite deleted, or --db other.sqlite) got no routing because settings.ini said
        the demo had been routed once, and the steel classifier ran on infrared frames and tiles."""
        jobs = window.jobs
        if jobs is None:
            return
        try:
            from app.paths import SAMPLES
            from app.services.routing import load_routing
            routing = load_routing(SAMPLES / "demo_routing.json")
            if jobs.jobs.adopt_routing(routing):
                if window.project is not None:  # in force on screen now, not at the next poll
                    window.project.saved_elsewhere(replace(window.project.current, routing=routing))
                window.statusBar().showMessage("Demo: each subfolder runs its own model "
                                               "(Project ▸ Model routing…)", 10000)
        except Exception as exc:  # noqa: BLE001 - the demo still runs every model on every image
            window.statusBar().showMessage(f"Demo model routing not applied: {exc}", 10000)
            return
        from app.gui.settings_store import SettingsStoreError, save_settings
        before, self.settings = self.settings, replace(self.settings, demo_prelabelled=True)
        try:
            save_settings(self.settings, before)
        except SettingsStoreError as exc:  # only a mark kept for older stations: said in the log
            log.warning("%s", exc)

    def shutdown(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing must reach every closer; logged
                log.warning("closing %r failed: %s", close, exc)
        self.closers.clear()
