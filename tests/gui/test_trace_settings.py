"""The trace rule in the Settings dialog: live preview, a bad pattern keeps the dialog open, a
saved rule re-reads the open folder and the label panel shows the part's serial."""
from __future__ import annotations

from app.gui.settings_dialog import SettingsDialog, apply_settings
from app.services.trace import TraceRule

PATTERN = r"part_(?P<serial>\d+)"


def test_preview_follows_the_pattern_and_a_bad_one_is_not_accepted(window, qtbot) -> None:
    names = [it.rel_path for it in window.gallery_model.items()[:5]]
    dlg = SettingsDialog(window.ctx.settings, window.project.current, window, sample_names=names)
    qtbot.addWidget(dlg)
    dlg.trace.pattern.setText(PATTERN)
    assert "part_00.png → serial 00" in dlg.trace.preview.text()
    dlg.trace.pattern.setText("(?P<serial>")
    assert "not a valid regular expression" in dlg.trace.preview.text()
    dlg.show()
    dlg.accept()
    assert dlg.isVisible() and "Not saved" in dlg.trace.preview.text()
    dlg.trace.pattern.setText(r"(?P<serial>x)(?P<part>y)")
    assert "unknown group name" in dlg.trace.preview.text()


def test_a_saved_rule_is_applied_and_shown_in_the_label_panel(window, qtbot) -> None:
    dlg = SettingsDialog(window.ctx.settings, window.project.current, window)
    qtbot.addWidget(dlg)
    dlg.trace.pattern.setText(PATTERN)
    apply_settings(window, dlg.result_settings(), dlg.result_project())
    qtbot.waitUntil(lambda: window.project.current.trace == TraceRule(pattern=PATTERN), timeout=5000)
    shown = window.ctx.review.db.images.get(window.review.image_id)
    assert shown.trace_serial == shown.rel_path[5:7]
    qtbot.waitUntil(lambda: f"Serial <b>{shown.trace_serial}</b>" in window.label_panel.trace.text(), timeout=5000)


def test_a_saved_rule_says_what_it_read_and_which_rows_matched_nothing(window, folder, qtbot) -> None:
    """Found by a session-44 probe: a rule reading trace.csv was saved without a word, its duplicate and bad rows
    unsaid; and a row naming no image (``./part_01.png`` style, a name copied from a Mac, a typo) was ignored in
    silence. The status line says what the re-read found; rows are matched as names are written, and the rest named."""
    import unicodedata
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    from app.services.indexing import index_folder
    nfd = unicodedata.normalize("NFD", "pärt_99.png")
    (folder / unicodedata.normalize("NFC", "pärt_99.png")).write_bytes((folder / "part_00.png").read_bytes() + b"x")
    index_folder(window.ctx.review.db, folder)
    (folder / "trace.csv").write_text(f"file,serial\n./part_01.png,SN-1\n{nfd},SN-9\nmissing.png,SN-0\n",
                                      encoding="utf-8")
    dlg = SettingsDialog(window.ctx.settings, window.project.current, window)
    qtbot.addWidget(dlg)
    dlg.trace.use_csv.setChecked(True)
    apply_settings(window, dlg.result_settings(), dlg.result_project())
    qtbot.waitUntil(lambda: any(m.startswith("Trace rule saved: trace:") for m in messages), timeout=10000)
    said = next(m for m in messages if m.startswith("Trace rule saved"))
    assert "1 row names no image" in said and "missing.png" in said
    serials = {im.rel_path: im.trace_serial for im in window.ctx.review.db.images.query()}
    assert serials["part_01.png"] == "SN-1" and serials[unicodedata.normalize("NFC", "pärt_99.png")] == "SN-9"


def test_the_history_tooltip_names_the_part_each_revision_recorded(window, qtbot) -> None:
    from dataclasses import replace

    from app.services.project_settings import load_project_settings
    window.project.save(replace(load_project_settings(window.ctx.review.db), trace=TraceRule(pattern=PATTERN)))
    qtbot.waitUntil(lambda: window.project.current.trace == TraceRule(pattern=PATTERN), timeout=5000)
    window.review.set_class("x")  # applied once the image's re-read (after the settings change) came
    qtbot.waitUntil(lambda: bool(window.ctx.review.history(window.review.image_id)), timeout=5000)
    image = window.ctx.review.db.images.get(window.review.image_id)
    [entry] = window.ctx.review.history(window.review.image_id)[-1:]
    assert entry.trace == {"serial": image.trace_serial}
    qtbot.waitUntil(lambda: window.label_panel.history.count() > 0, timeout=5000)
    assert f"serial {image.trace_serial}" in window.label_panel.history.item(0).toolTip()
