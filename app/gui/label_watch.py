"""Labels saved elsewhere reach this window: another station on the same database, another window,
an import from the command line.

Why: a station's counts, badges and open label used to follow only its own saves and its own
jobs, so a window left open beside a colleague's station kept saying "unreviewed 40" about images
the colleague had corrected, and the label panel showed the old label (a save over it is refused
since, ``LabelConflict``; this makes the screen right before the inspector acts). Every few seconds
a helper thread reads one number, the labels' watermark (a counter every change of labels raises,
in commit order: a primary-key read at any size). When it moved, the queue and the counts are
re-read in the background and the open image's label is re-read if its revision is no longer the
one on screen. The GUI thread never waits on it. (It read the newest revision's id before, which
on PostgreSQL stayed put when an import committed after a later single save, so the window missed
the import: a session-51 audit.)

The same poll reads the schema's revision (one more small read): a station left running while a newer one upgraded
the database went on writing without the newer version's bookkeeping (a session-52 audit). Once the revision is one
this version does not know, the database refuses this process's writes (labels wait, and go to the recovery files
when the window closes, as a locked database's do) and ``schema_changed`` says why, once.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.gui.job_monitor import BackgroundPoller

INTERVAL_MS = 4000


class LabelWatch(QObject):
    changed = Signal()   # some label was saved since the last look (here or elsewhere)
    schema_changed = Signal(str)   # a newer station upgraded the database: why nothing more is saved from here

    def __init__(self, service, parent: QObject | None = None, interval_ms: int | None = None) -> None:
        super().__init__(parent)
        self._last: int | None = None
        self._said = False

        def read() -> tuple[str | None, int | None]:   # on the poller's thread
            changed = service.schema_changed()
            return changed, None if changed else service.label_watermark()
        self._poller = BackgroundPoller(read, interval_ms or INTERVAL_MS, self, "label-watch")
        self._poller.result.connect(self._on_mark)

    def start(self) -> None:
        self._poller.start()

    def _on_mark(self, value: tuple[str | None, int | None]) -> None:
        changed, mark = value
        if changed and not self._said:
            self._said = True
            self.schema_changed.emit(changed)
        if mark is None:
            return
        if self._last is not None and mark != self._last:
            self.changed.emit()
        self._last = mark

    def close(self) -> None:
        self._poller.close()
