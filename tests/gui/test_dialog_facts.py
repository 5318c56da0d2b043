"""Project ▸ Export… and Import… open at once: what they show about the folder is read on a helper thread.

Before, the folder's counts, its name and the project's classes were read on the GUI thread as the
menu action ran, so a locked or slow database held the window before the dialog appeared."""
from __future__ import annotations

import threading

import pytest

from app.gui.export_dialog import open_export_dialog
from app.gui.import_dialog import open_import_dialog
from app.services.review_types import LabelState, QueueFilter


@pytest.fixture
def window(qtbot, service, db, folder):
    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.main_window import MainWindow
    from app.gui.settings_store import StationSettings

    win = MainWindow(StationContext(review=service, settings=StationSettings(), interactive=False,
                                    extensions=default_extensions(), export_db=db))
    qtbot.addWidget(win)
    win.open_folder(str(folder))
    qtbot.waitUntil(lambda: win.current_folder is not None, timeout=10000)
    items = service.queue(QueueFilter(folder_id=win.current_folder))
    service.save_label(items[0].image_id, LabelState(class_name="crazing", review_state="corrected"))
    service.save_label(items[1].image_id, LabelState(class_name="patches", review_state="accepted"))
    yield win
    win.close()


def _held(monkeypatch, service, name: str) -> threading.Event:
    """Make ``service.<name>`` wait for the returned event, as a database another program holds does."""
    release = threading.Event()
    real = getattr(service, name)

    def waiting(*args, **kwargs):
        assert release.wait(20), "the test never released the read"
        return real(*args, **kwargs)

    monkeypatch.setattr(service, name, waiting)
    return release


def test_export_dialog_opens_while_the_counts_are_read(window, service, monkeypatch, qtbot):
    release = _held(monkeypatch, service, "counts")
    dlg = open_export_dialog(window)  # returns although the read waits
    qtbot.addWidget(dlg)
    assert "Reading" in dlg.head.text() and not dlg.export_button.isEnabled()
    dlg.out.setText("/tmp/never-written")
    assert dlg.start() is False  # refused from code too, until the facts are in
    with qtbot.waitSignal(dlg.facts_ready, timeout=20000):
        release.set()
    assert "<b>2 reviewed images</b>" in dlg.head.text()
    name = next(f.name for f in service.folders() if f.id == window.current_folder)
    assert dlg.scope_folder.text() == f"this folder ({name})" and dlg.scope_folder.isChecked()
    assert dlg.class_order == tuple(service.classes()) and dlg.export_button.isEnabled()


def test_export_dialog_says_why_when_the_counts_cannot_be_read(window, service, monkeypatch, qtbot):
    def locked(*_a, **_k):
        raise RuntimeError("the database file is locked by another program")

    monkeypatch.setattr(service, "counts", locked)
    dlg = open_export_dialog(window)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(dlg.export_button.isEnabled, timeout=20000)
    assert "could not be read (the database file is locked by another program)" in dlg.head.text()


def test_import_dialog_opens_while_the_classes_are_read(window, service, monkeypatch, qtbot):
    release = _held(monkeypatch, service, "classes")
    dlg = open_import_dialog(window)
    qtbot.addWidget(dlg)
    assert "Reading" in dlg.status.text() and not dlg.preview_button.isEnabled()
    dlg.source.setText("/tmp/nowhere")
    assert dlg.start_preview() is False
    with qtbot.waitSignal(dlg.facts_ready, timeout=20000):
        release.set()
    assert dlg.classes == tuple(service.classes()) and dlg.author == service.settings.author
    assert dlg.preview_button.isEnabled() and dlg.status.text().startswith("Choose a dataset")
