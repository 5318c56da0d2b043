"""Settings: reviewer name, thresholds, device, database URL and theme (saved with QSettings)."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QWidget)

from app.gui.settings_store import DEVICES, StationSettings, save_settings
from app.gui.theme import THEMES


class SettingsDialog(QDialog):
    def __init__(self, settings: StationSettings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        form = QFormLayout(self)
        self.reviewer = QLineEdit(settings.reviewer)
        self.reviewer.setPlaceholderText("your name (recorded with every label revision)")
        form.addRow("Reviewer", self.reviewer)

        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        self.use_card = QCheckBox("model's own")
        self.use_card.setChecked(settings.anomaly_threshold is None)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1e6)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5 if settings.anomaly_threshold is None else settings.anomaly_threshold)
        self.threshold.setEnabled(not self.use_card.isChecked())
        self.use_card.toggled.connect(lambda on: self.threshold.setEnabled(not on))
        rl.addWidget(self.use_card)
        rl.addWidget(self.threshold, 1)
        form.addRow("Anomaly threshold", row)

        self.min_conf = QDoubleSpinBox()
        self.min_conf.setRange(0.0, 1.0)
        self.min_conf.setSingleStep(0.05)
        self.min_conf.setValue(settings.min_confidence)
        form.addRow("Uncertain below confidence", self.min_conf)
        self.auto_advance = QCheckBox("Accept / reject moves to the next unreviewed image")
        self.auto_advance.setChecked(settings.auto_advance)
        form.addRow("", self.auto_advance)

        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)
        form.addRow("Worker device", self.device)
        self.db_url = QLineEdit(settings.database_url)
        self.db_url.setPlaceholderText("default: SQLite file in the data folder; or postgresql+psycopg://…")
        form.addRow("Database URL", self.db_url)
        note = QLabel("A new database URL is used from the next start.")
        note.setObjectName("muted")
        form.addRow("", note)
        self.theme = QComboBox()
        self.theme.addItems(list(THEMES))
        self.theme.setCurrentText(settings.theme)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def result_settings(self) -> StationSettings:
        return replace(
            self._base, reviewer=self.reviewer.text().strip(),
            anomaly_threshold=None if self.use_card.isChecked() else self.threshold.value(),
            min_confidence=self.min_conf.value(), auto_advance=self.auto_advance.isChecked(),
            device=self.device.currentText(), database_url=self.db_url.text().strip(),
            theme=self.theme.currentText())


def apply_settings(window, new: StationSettings) -> None:
    """Save and use new settings at once (the database URL from the next start)."""
    save_settings(new)
    window.ctx.settings = new
    window.ctx.review.update_settings(new.review())
    window.apply_theme(new.theme)
    window.refresh_models()


def install(window) -> None:
    def open_dialog() -> None:
        dlg = SettingsDialog(window.ctx.settings, window)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            apply_settings(window, dlg.result_settings())
    window.actions["settings"].triggered.connect(open_dialog)
