"""Settings: this user's choices (QSettings) and the project's shared ones (the database).

Two groups on purpose: the reviewer name, auto-advance, device, database URL and theme are
this user's own and stay on this machine; the flag thresholds, automatic pre-labelling and the speed profile
belong to the project and change what every station and the worker see (saving new
thresholds re-flags every stored prediction, on a helper thread).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_life import run_modal
from app.gui.project_settings_controller import ProjectSettingsController
from app.gui.settings_store import DEVICES, SettingsStoreError, StationSettings, save_settings
from app.gui.theme import THEMES
from app.gui.trace_rule_editor import TraceRuleEditor
from app.services.project_settings import PROFILE_NAMES, ProjectSettings
from app.services.station import holds_password, path_map_problem, shown_url


class SettingsDialog(QDialog):
    def __init__(self, settings: StationSettings, project: ProjectSettings | None = None, parent=None,
                 sample_names: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        self._project = project or ProjectSettings()
        flags = self._project.flags
        outer = QVBoxLayout(self)

        mine = QGroupBox("You, on this computer")
        form = QFormLayout(mine)
        self.reviewer = QLineEdit(settings.reviewer)
        self.reviewer.setPlaceholderText("your name (recorded with every label revision)")
        form.addRow("Reviewer", self.reviewer)
        self.auto_advance = QCheckBox("Accept / reject moves to the next unreviewed image")
        self.auto_advance.setChecked(settings.auto_advance)
        form.addRow("", self.auto_advance)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)
        form.addRow("Worker device", self.device)
        # A saved URL is shown with its password masked; it is kept as saved unless edited.
        self.db_url = QLineEdit(shown_url(settings.database_url))
        self.db_url.setPlaceholderText("default: SQLite file in the data folder; or postgresql+psycopg://…")
        form.addRow("Database URL", self.db_url)
        note = QLabel("A new database URL is used from the next start.")
        note.setObjectName("muted")
        form.addRow("", note)
        self.path_map = QLineEdit(settings.path_map)
        self.path_map.setPlaceholderText("e.g. /mnt/parts=Z:\\parts  (folders stored with another machine's path)")
        self.path_map.setToolTip(
            "Where this computer reaches folders that another station indexed under its own path: STORED=LOCAL "
            "pairs separated by ';'. The folder stays one folder with one set of labels, and this computer's "
            "worker reads its images. Used from the next start; INSPECTION_PATH_MAP in the environment wins.")
        form.addRow("Path map (this computer)", self.path_map)
        self.theme = QComboBox()
        self.theme.addItems(list(THEMES))
        self.theme.setCurrentText(settings.theme)
        form.addRow("Theme", self.theme)
        outer.addWidget(mine)

        shared = QGroupBox("Project: every station and worker on this database")
        pform = QFormLayout(shared)
        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        self.use_card = QCheckBox("model's own")
        self.use_card.setChecked(flags.anomaly_threshold is None)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1e6)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5 if flags.anomaly_threshold is None else flags.anomaly_threshold)
        _shown(self.threshold)
        # With "model's own" ticked no number applies here (each version's card has its own, 0.484 for the tile
        # model, 9.7 for the bottle one): a greyed 0.500 read like the threshold in force (seen under Xvfb, session 39).
        self.own_note = QLabel("each version's card threshold; a folder's saved operating point wins")
        self.own_note.setObjectName("muted")
        self.threshold.setVisible(not self.use_card.isChecked())
        self.own_note.setVisible(self.use_card.isChecked())
        self.use_card.toggled.connect(lambda on: (self.threshold.setVisible(not on), self.own_note.setVisible(on)))
        rl.addWidget(self.use_card)
        rl.addWidget(self.threshold, 1)
        rl.addWidget(self.own_note, 1)
        pform.addRow("Anomaly threshold", row)
        self.min_conf = QDoubleSpinBox()
        self.min_conf.setRange(0.0, 1.0)
        self.min_conf.setSingleStep(0.05)
        self.min_conf.setValue(flags.min_confidence)
        _shown(self.min_conf)
        pform.addRow("Uncertain below confidence", self.min_conf)
        self.min_targets = QSpinBox()
        self.min_targets.setRange(1, 100_000)
        self.min_targets.setValue(flags.min_targets)
        pform.addRow("Flag from this many targets", self.min_targets)
        self.good_classes = QLineEdit(", ".join(flags.good_classes))
        self.good_classes.setToolTip("Classifier classes that are not a defect, separated by commas")
        pform.addRow("Classes that are not a defect", self.good_classes)
        self.auto_prelabel = QCheckBox("Pre-label new images as soon as a folder is opened")
        self.auto_prelabel.setChecked(self._project.auto_prelabel)
        pform.addRow("", self.auto_prelabel)
        self.speed_profile = QComboBox()
        self.speed_profile.addItem("each model's default", "")
        for name in PROFILE_NAMES:
            self.speed_profile.addItem(name, name)
        self.speed_profile.setCurrentIndex(max(0, self.speed_profile.findData(self._project.speed_profile)))
        self.speed_profile.setToolTip(
            "The speed profile new pre-label jobs run, where a model's card names it: 'fast' runs fewer "
            "networks and test-time views (several times faster on a CPU, at the held-out cost its card "
            "states); a model without that profile runs its default. Stored predictions are kept.")
        pform.addRow("Speed profile", self.speed_profile)
        self.maps_folder = QLineEdit(self._project.maps_folder)
        self.maps_folder.setPlaceholderText("each station its own (beside a SQLite file, else this user's cache)")
        self.maps_folder.setToolTip(
            "The folder every station and worker keeps anomaly maps in (a network share, the same path on "
            "every machine; a machine that mounts it elsewhere maps it in its Path map), empty and only the "
            "station's: one holding other files is refused. Without it, "
            "a heatmap made by another station's worker cannot be drawn here. New maps go there from the "
            "workers' next batch; Pre-label folder at a station copies the maps it made before into it.")
        pform.addRow("Anomaly maps folder", self.maps_folder)
        self.trace = TraceRuleEditor(self._project.trace, sample_names)
        pform.addRow("Traceability", self.trace)
        pnote = QLabel("New thresholds re-flag every image already pre-labelled (no model runs again); "
                       "a new trace rule re-reads every folder's serial, lot and station.")
        pnote.setObjectName("muted")
        pnote.setWordWrap(True)
        pform.addRow("", pnote)
        outer.addWidget(shared)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        outer.addWidget(buttons)

    def _database_url(self) -> str:
        text = self.db_url.text().strip()
        return self._base.database_url if text == shown_url(self._base.database_url) else text

    def _accept(self) -> None:
        """A password typed into the URL would be kept in plain text in this user's settings and
        shown here: refused, with where a password goes instead (docs/database.md)."""
        problem = path_map_problem(self.path_map.text())
        if problem is not None:
            QMessageBox.warning(self, "Path map", f"The path map cannot be used: {problem}")
            return
        url = self._database_url()
        if url != self._base.database_url and holds_password(url):
            QMessageBox.warning(
                self, "Password in the database URL",
                "The database URL must not hold the password: it would be stored in plain text in your "
                "settings. Leave it out of the URL and give it in ~/.pgpass, in a file named by "
                "PGPASSFILE, or in PGPASSWORD (see docs/database.md).")
            return
        self.accept()

    def accept(self) -> None:
        """A trace pattern that cannot be used keeps the dialog open, saying why (nothing is lost)."""
        problem = self.trace.problem()
        if problem is not None:
            self.trace.pattern.setFocus()
            self.trace.preview.setText(f"<span style='color:#d14343'>Not saved: {problem}</span>")
            return
        super().accept()

    def result_settings(self) -> StationSettings:
        return replace(
            self._base, reviewer=self.reviewer.text().strip(), auto_advance=self.auto_advance.isChecked(),
            device=self.device.currentText(), database_url=self._database_url(),
            theme=self.theme.currentText(), path_map=self.path_map.text().strip())

    @property
    def read_project(self) -> ProjectSettings:
        """The project's settings this dialog opened on: OK changes only what the inspector changed of them."""
        return self._project

    def result_project(self) -> ProjectSettings:
        good = tuple(c.strip() for c in self.good_classes.text().split(",") if c.strip())
        stored = self._project.flags
        flags = replace(stored,  # keeps the folders' own thresholds (Operating point)
                        anomaly_threshold=None if self.use_card.isChecked() else _edited(
                            self.threshold, stored.anomaly_threshold),
                        min_targets=self.min_targets.value(), good_classes=good,
                        min_confidence=_edited(self.min_conf, stored.min_confidence))
        return replace(self._project, flags=flags, auto_prelabel=self.auto_prelabel.isChecked(),
                       trace=self.trace.rule(), speed_profile=str(self.speed_profile.currentData()),
                       maps_folder=self.maps_folder.text().strip())


def _edited(box: QDoubleSpinBox, stored: float | None) -> float:
    """The box's value where the inspector changed it, else the stored one: a box shows a few decimals, and OK with
    nothing edited wrote a stored 0.4843 back as 0.484 for every station and re-flagged the project (a session-47
    audit). "Changed" is against the value the box took when it was filled (``_shown``; Qt rounds a half up where
    Python's round() goes to even: 0.5625 compared unequal, the review of session 47)."""
    shown = box.property("shown_value")
    if stored is not None and isinstance(shown, float) and box.value() == shown:
        return stored
    return box.value()


def _shown(box: QDoubleSpinBox) -> None:
    """Note the value the box shows once filled (``_edited`` compares with it)."""
    box.setProperty("shown_value", float(box.value()))


def apply_settings(window, new: StationSettings, project: ProjectSettings | None = None,
                   read: ProjectSettings | None = None) -> None:
    """Save and use new settings: this user's at once (the database URL from the next start),
    the project's on a helper thread (the window follows when they are stored): what ``project`` changes of
    ``read``, the copy the dialog opened on (default: the window's copy now)."""
    try:
        save_settings(new, window.ctx.settings)
    except SettingsStoreError as exc:
        window._warn(f"Your settings were not saved: {exc}.")
    jobs = window.ctx.jobs
    if jobs is not None and new.device != window.ctx.settings.device:
        _use_device(window, jobs, new.device)
    window.ctx.settings = new
    controller: ProjectSettingsController = window.project
    window.ctx.review.update_settings(new.review(controller.current.flags))
    window.apply_theme(new.theme)
    window.refresh_models()
    if project is not None and project != (controller.current if read is None else read):
        window._say("Saving the project settings …")
        controller.save(project, read)


def _use_device(window, jobs, device: str) -> None:
    """The worker runs on ``device`` from now on (restarted on a helper thread when one runs): it used to keep the old
    device until the station restarted."""
    calls = getattr(window, "_device_calls", None)
    if calls is None:
        calls = window._device_calls = BackgroundCalls("worker-device", window)
        window.ctx.closers.append(calls.close)
    calls.call(lambda: jobs.use_device(device),
               lambda restarted: window._say(f"Worker device: {device}"
                                             + (" (the worker was restarted with it)." if restarted else ".")),
               lambda text: window._warn(f"The worker could not be moved to {device}: {text}"))


def _follow_project(window, settings: ProjectSettings) -> None:
    """New project settings (saved here or at another station): verdicts and the queue follow."""
    window.ctx.review.update_settings(window.ctx.settings.review(settings.flags))
    window.ctx.review.use_maps_folder(settings.maps_folder)
    window.refresh_models(background=True)  # the queue's flags and order, read on a helper thread
    window.gallery.viewport().update()      # score badges are coloured by the threshold
    window.review.reload()                  # the open image's verdict and flags


def install(window) -> None:
    ctx = window.ctx
    controller = ProjectSettingsController(ctx.review.db, ctx.project_settings,
                                           author=lambda: ctx.settings.review().author, parent=window)
    window.project = controller
    controller.changed.connect(lambda s: _follow_project(window, s))
    controller.reflagged.connect(lambda r: window._say(f"Project thresholds saved: {r.summary()}."))
    controller.traced.connect(lambda text: window._say(f"Trace rule saved: {text}"))
    controller.failed.connect(window._warn)
    ctx.closers.append(controller.close)

    probes = BackgroundCalls("database-probe", window)
    ctx.closers.append(probes.close)

    def open_dialog() -> None:
        names = [it.rel_path for it in window.gallery_model.items()[:5]]  # rows already read: no wait
        dlg = SettingsDialog(ctx.settings, controller.current, window, sample_names=names)

        def answered(code: int) -> None:
            if code == QDialog.DialogCode.Accepted:
                before = ctx.settings.database_url
                apply_settings(window, dlg.result_settings(), dlg.result_project(), read=dlg.read_project)
                if ctx.settings.database_url != before:
                    check_database_url(window, probes, ctx.settings.database_url)
        run_modal(dlg, answered)
    window.actions["settings"].triggered.connect(open_dialog)


def check_database_url(window, probes: BackgroundCalls, url: str) -> None:
    """Try a new database URL at once, on a helper thread, and say what the next start will meet. Seen under Xvfb
    (session 42): a URL with a wrong port was saved without a word, and the next start printed one line on stderr
    and showed no window at all."""
    from app.services.station import database_problem, new_database_note, shown_url

    if not url:
        window._say("The database URL is back to the default (this computer's file); it is used from the next start.")
        return
    window._say(f"Trying the new database {shown_url(url)} …")

    def answered(found: tuple[str | None, str | None]) -> None:
        problem, note = found
        if problem is None and note is not None:
            window._warn(f"The new database URL is saved: {note}. The station uses it from the next start.")
        elif problem is None:
            window._say(f"The new database {shown_url(url)} answers; the station uses it from the next start.")
        else:
            window._warn(f"The new database URL is saved, but it cannot be opened now: {problem} This session keeps "
                         "its database; at the next start the station will say so and offer this computer's "
                         "database instead. Correct it in Settings (Ctrl+,) or clear it for the default.")
    probes.call(lambda: (problem := database_problem(url), None if problem else new_database_note(url)), answered,
                lambda text: window._warn(f"The new database URL could not be tried: {text}"))
