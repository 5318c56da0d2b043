"""Project ▸ Import…: the preview runs off the GUI thread, unknown classes are mapped, then Import writes."""
from __future__ import annotations

import shutil

import numpy as np
from PySide6.QtCore import Qt

from app.gui.import_dialog import ImportDialog
from tests.gui.conftest import tab_leaves
from tests.gui.fixtures import CLASSES


def class_tree(folder, dst, labels: dict[str, str]):
    for name, cls in labels.items():
        (dst / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, dst / cls / name)
    return dst



def _previewed(db, info, src, qtbot):
    """An Import dialog on ``src`` (ImageFolder) previewed; the dialog and the preview's signal."""
    dlg = ImportDialog(db, info.id, info.name, CLASSES, author="tester")
    qtbot.addWidget(dlg)
    dlg.source.setText(str(src))
    dlg.format.setCurrentIndex(dlg.format.findData("imagefolder"))
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        dlg.start_preview()
    return dlg, sig

def test_preview_map_then_import(service, db, folder, qtbot, tmp_path):
    db.classes.set("classifier", list(CLASSES))
    info = service.open_folder(folder)
    src = class_tree(folder, tmp_path / "dataset", {"part_00.png": "crazing", "part_01.png": "Scratch"})
    dlg = ImportDialog(db, info.id, info.name, CLASSES, author="tester")
    qtbot.addWidget(dlg)
    dlg.source.setText(str(src))
    dlg.format.setCurrentIndex(dlg.format.findData("imagefolder"))

    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        assert dlg.start_preview()
    preview, error = sig.args
    assert error == "" and preview.counts["matched"] == 2 and preview.counts["new"] == 2
    assert "unknown class Scratch" in dlg.status.text()
    assert not dlg.import_button.isEnabled()  # nothing is written while a class is unknown
    assert dlg.mapping.rowCount() == 2 and dlg.changes.rowCount() == 2
    assert tab_leaves(qtbot, dlg.mapping) and tab_leaves(qtbot, dlg.changes)   # Tab was kept there (session 49)

    row = next(r for r in range(dlg.mapping.rowCount()) if dlg.mapping.item(r, 0).text() == "Scratch")
    dlg.mapping.cellWidget(row, 1).setCurrentText("scratches")
    assert dlg.preview is None and "Preview again" in dlg.status.text()
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        dlg.start_preview()
    assert sig.args[0].errors == () and dlg.import_button.isEnabled()

    with qtbot.waitSignal(dlg.finished_import, timeout=20000) as sig:
        assert dlg.start_import()
    result, error = sig.args
    assert error == "" and result.written == 2 and "imported 2 labels" in dlg.status.text()
    by_name = {i.rel_path: i.id for i in db.images.query()}
    assert db.labels.current(by_name["part_01.png"]).class_name == "scratches"
    assert db.labels.current(by_name["part_00.png"]).author == "tester"


def test_an_option_changed_while_the_preview_runs_drops_its_answer(service, db, folder, qtbot, tmp_path, monkeypatch):
    """Found by a session-43 probe: "also replace labels saved here after the dataset's" ticked, Preview, unticked
    before the answer came, Import: the late preview (made with the box ticked) was kept and imported over the
    inspector's newer label while the box read unticked. An answer made with other options is dropped."""
    import threading

    import app.gui.import_dialog as import_dialog
    db.classes.set("classifier", list(CLASSES))
    info = service.open_folder(folder)
    src = class_tree(folder, tmp_path / "dataset", {"part_00.png": "crazing"})
    gate, real = threading.Event(), import_dialog.preview_import

    def held(*a, **k):
        gate.wait(10)
        return real(*a, **k)
    monkeypatch.setattr(import_dialog, "preview_import", held)
    dlg = ImportDialog(db, info.id, info.name, CLASSES, author="tester")
    qtbot.addWidget(dlg)
    dlg.source.setText(str(src))
    dlg.format.setCurrentIndex(dlg.format.findData("imagefolder"))
    dlg.overwrite_newer.setChecked(True)
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        assert dlg.start_preview()
        dlg.overwrite_newer.setChecked(False)  # changed while it runs
        gate.set()
    assert sig.args == [None, "options changed"]
    assert dlg.preview is None and not dlg.import_button.isEnabled() and "Preview again" in dlg.status.text()
    assert not dlg.start_import()


def test_unknown_classes_can_be_added_to_the_project_then_imported(service, db, folder, qtbot, tmp_path):
    """A dataset of a new kind of part: its classes are not the project's. One click puts them on the
    project's list (Project ▸ Classes…) and previews again; the import then goes through unmapped."""
    from app.services import project_classes

    db.classes.set("classifier", list(CLASSES))
    info = service.open_folder(folder)
    src = class_tree(folder, tmp_path / "tiles", {"part_00.png": "blowhole", "part_01.png": "crazing",
                                                  "part_02.png": "fray"})
    dlg, sig = _previewed(db, info, src, qtbot)
    assert sig.args[0].unknown_classes == ("blowhole", "fray") and not dlg.import_button.isEnabled()
    assert not dlg.add_classes_button.isHidden() and "Add 2 classes" in dlg.add_classes_button.text()
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig, qtbot.waitSignal(dlg.classes_added):
        dlg.add_classes_button.click()
    assert project_classes.names(db) == [*CLASSES, "blowhole", "fray"]
    assert sig.args[0].errors == () and sig.args[0].unknown_classes == ()
    assert dlg.add_classes_button.isHidden() and dlg.import_button.isEnabled()
    with qtbot.waitSignal(dlg.finished_import, timeout=20000) as sig:
        assert dlg.start_import()
    assert sig.args[0].written == 3
    by_name = {i.rel_path: i.id for i in db.images.query()}
    assert db.labels.current(by_name["part_02.png"]).class_name == "fray"


def test_add_classes_offers_only_classes_no_routed_classifier_offers(service, db, qtbot, tmp_path):
    """A session-50 audit: with tiles/* routed to the tile classifier and a project list saved, the tiles' own labels
    (its classes, offered on their keys) were refused as unknown, and "Add N classes to the project" offered to put
    the tile classes on the list, so on every steel image's keys. The tiles' classes now pass there; the button adds
    only a class no routed classifier has ("pit"), never one that is a routed classifier's ("blowhole" given to a
    steel image stays refused, to be mapped)."""
    from app.services import project_classes
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images

    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": list(CLASSES)}, activate=True)
    db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "free"]})
    root = tmp_path / "lot"
    for sub, seed in (("steel", 0), ("tiles", 1)):
        good_images(root / sub, 2, seed=seed)
    info = service.open_folder(root)
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
    db.classes.set("classifier", list(CLASSES))
    src = tmp_path / "dataset"
    for rel, cls in (("tiles/img_000.png", "blowhole"), ("tiles/img_001.png", "pit"), ("steel/img_000.png", "blowhole")):
        (src / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, src / cls / f"{rel.split('/')[0]}__{rel.split('/')[1]}")
    dlg, sig = _previewed(db, info, src, qtbot)
    preview = sig.args[0]
    assert preview.counts["matched"] == 3 and preview.unknown_classes == ("pit",)
    assert "Add 1 class to the project" in dlg.add_classes_button.text() and not dlg.add_classes_button.isHidden()
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig, qtbot.waitSignal(dlg.classes_added):
        dlg.add_classes_button.click()
    assert project_classes.names(db) == [*CLASSES, "pit"]          # no tile class on the steel keys
    again = sig.args[0]
    assert again.unknown_classes == () and dlg.add_classes_button.isHidden() and not dlg.import_button.isEnabled()
    assert len(again.errors) == 1 and again.errors[0].startswith("unknown class blowhole: the station offers "
                                                                 f"{', '.join(CLASSES)}, pit on lot/steel/")


def test_the_class_chooser_lists_a_routed_classifiers_classes_under_its_name(service, db, qtbot, tmp_path):
    """A session-51 audit: with tiles/* routed to the tile classifier, a dataset's "cracks" on a tile was refused as
    unknown and its chooser offered the project's (steel) classes alone, though the tile classifier's "crack" is
    offered on that tile: the person had to type it, and know its spelling. The chooser now lists it under a heading
    naming the classifier (the heading cannot be chosen); choosing it imports."""
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images

    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": list(CLASSES)}, activate=True)
    db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "crack"]})
    root = tmp_path / "lot"
    good_images(root / "tiles", 1, seed=1)
    info = service.open_folder(root)
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
    db.classes.set("classifier", list(CLASSES))
    src = tmp_path / "dataset" / "cracks"
    src.mkdir(parents=True)
    shutil.copy(root / "tiles" / "img_000.png", src / "tiles__img_000.png")
    dlg, sig = _previewed(db, info, src.parent, qtbot)
    assert "unknown class cracks" in dlg.status.text() and not dlg.import_button.isEnabled()
    combo = dlg.mapping.cellWidget(0, 1)
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items == ["cracks", *CLASSES, "— classes of tile-v1, where it runs —", "blowhole", "crack"]
    assert sig.args[0].routed_offers == {"tile-v1": ("blowhole", "crack")}   # read with the preview, off the GUI thread
    assert combo.currentText() == "cracks"
    heading = combo.model().item(items.index("— classes of tile-v1, where it runs —"))
    assert not heading.isEnabled() and not heading.isSelectable()
    combo.setCurrentIndex(items.index("crack"))
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        dlg.start_preview()
    assert sig.args[0].errors == () and dlg.import_button.isEnabled()
    assert sig.args[0].planned[0].class_after == "crack"


def test_each_routed_model_lists_all_its_classes_under_its_own_heading(service, db, folder, qtbot):
    """A session-51 review: a class two routed models share was listed under the first model's heading alone, and a
    model whose classes were all shared lost its heading, though docs/import.md says "under a heading naming each".
    Each model's whole list is under its own heading, each line's tooltip naming its model; choosing a repeat reads
    the same text."""
    info = service.open_folder(folder)
    dlg = ImportDialog(db, info.id, info.name)
    qtbot.addWidget(dlg)
    dlg.classes = ("crazing", "patches")
    dlg._fill_mapping({"cracks": "cracks"}, {"cam-v1": ("crack",), "tile-v1": ("blowhole", "crack")})
    combo = dlg.mapping.cellWidget(0, 1)
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items == ["cracks", "crazing", "patches", "— classes of cam-v1, where it runs —", "crack",
                     "— classes of tile-v1, where it runs —", "blowhole", "crack"]
    tips = [combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())]
    assert tips[4].startswith("cam-v1's class") and tips[6].startswith("tile-v1's") and tips[7].startswith("tile-v1's")
    combo.setCurrentIndex(7)
    assert combo.currentText() == "crack"


def test_bad_dataset_shows_the_reason_and_writes_nothing(service, db, folder, qtbot, tmp_path):
    info = service.open_folder(folder)
    bad = tmp_path / "coco.json"
    bad.write_text("{not json")
    dlg = ImportDialog(db, info.id, info.name)
    qtbot.addWidget(dlg)
    dlg.source.setText(str(bad))
    dlg.format.setCurrentIndex(dlg.format.findData("coco"))
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000) as sig:
        dlg.start_preview()
    assert sig.args[0] is None and "not valid JSON" in dlg.status.text()
    assert not dlg.import_button.isEnabled()
    assert all(db.labels.current(i.id) is None for i in db.images.query())


def test_window_has_project_import(qtbot, service, db, folder, monkeypatch):
    from app.gui import import_dialog
    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.main_window import MainWindow
    from app.gui.settings_store import StationSettings

    win = MainWindow(StationContext(review=service, settings=StationSettings(), interactive=False,
                                    extensions=default_extensions(), export_db=db))
    qtbot.addWidget(win)
    win.open_folder(str(folder))
    action = win.actions["import_labels"]
    assert action.isEnabled() and action in win.menus["Project"].actions()
    opened = []
    monkeypatch.setattr(import_dialog.ImportDialog, "exec", lambda self: opened.append(self) or 0)
    action.trigger()
    assert len(opened) == 1 and opened[0].db is db and opened[0].scope_folder.isChecked()
    win.close()


def test_the_dataset_folder_chooses_the_format_it_holds(service, db, folder, qtbot, tmp_path):
    """Seen under Xvfb (session 36): given one of this station's exports, the dialog stayed on its first format,
    ImageFolder, whose preview read the export's coco/ and masks/ folders as classes ("per class: coco 12")."""
    from app.services.display import encode_mask_png
    from app.services.export import ExportOptions, export_database
    from database import LabelChange, ReviewState

    info = service.open_folder(folder)
    image_id = db.images.query()[0].id
    mask = np.zeros((64, 64), bool)
    mask[5:9, 5:9] = True
    db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name=CLASSES[0],
                                           mask_png=encode_mask_png(mask)), "ann")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=("masks", "coco", "csv")))
    dlg = ImportDialog(db, info.id, info.name, CLASSES, author="tester")
    qtbot.addWidget(dlg)
    dlg.source.setText(str(out))
    assert dlg.format.currentData() == "imagefolder"
    assert dlg.detect_format()
    qtbot.waitUntil(lambda: dlg.format.currentData() == "coco", timeout=10000)
    assert "Found here: COCO JSON, PNG mask folder, CSV table" in dlg.status.text()
    assert not dlg.detect_format()  # the same path is not looked at twice
    dlg.source.setText(str(tmp_path / "nothing-here"))
    assert dlg.detect_format()
    qtbot.waitUntil(lambda: "No known dataset layout" in dlg.status.text(), timeout=10000)
    assert dlg.format.currentData() == "coco"   # the person's (or the last) choice stays


def test_a_button_disabled_while_it_has_the_focus_hands_it_to_the_one_named(qtbot):
    """Seen under Xvfb (session 36): after Import, no key reached the review window (A, N, Ctrl+Z): the Import
    button had the focus when the import disabled it, and the focus left the dialog for good. The dialogs now hand
    it to a widget they name (the Close button) before disabling (``dialog_rows.disable_keeping_focus``)."""
    from PySide6.QtWidgets import QApplication, QDialog, QLineEdit, QPushButton, QVBoxLayout

    from app.gui.dialog_rows import disable_keeping_focus

    dlg = QDialog()
    qtbot.addWidget(dlg)
    lay = QVBoxLayout(dlg)
    keep, pressed, after = QLineEdit(), QPushButton("Import"), QPushButton("Next in the tab chain")
    for w in (keep, pressed, after):
        lay.addWidget(w)
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.activateWindow()
    pressed.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is pressed, timeout=3000)
    disable_keeping_focus(keep, pressed)
    assert not pressed.isEnabled() and QApplication.focusWidget() is keep   # Qt alone would pick ``after``
    after.setFocus()
    disable_keeping_focus(keep, pressed)   # the focus elsewhere: left where it is
    assert QApplication.focusWidget() is after


def test_the_open_image_shows_its_imported_label_at_once(service, db, folder, qtbot, tmp_path):
    """Found by a session-44 probe: after an import the open image kept its old label for seconds (until the periodic
    label check), and a key pressed then was refused as "changed by root at another station or window"."""
    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.import_dialog import open_import_dialog
    from app.gui.main_window import MainWindow
    from app.gui.settings_store import StationSettings
    from tests.gui.conftest import wait_shown
    win = MainWindow(StationContext(review=service, settings=StationSettings(), interactive=False,
                                    extensions=default_extensions(), export_db=db))
    qtbot.addWidget(win)
    win.show()
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    shown = win.review.detail.item.rel_path
    dataset = class_tree(folder, tmp_path / "ds", {shown: CLASSES[1]})
    dlg = open_import_dialog(win)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.reading, timeout=5000)
    dlg.source.setText(str(dataset))
    assert dlg.start_preview()
    qtbot.waitUntil(lambda: dlg.preview is not None, timeout=10000)
    assert dlg.start_import()
    qtbot.waitUntil(lambda: win.review.label is not None and win.review.label.class_name == CLASSES[1], timeout=2000)
    win.close()


def test_closing_while_an_import_runs_holds_nothing_and_closes_when_it_is_done(service, db, folder, qtbot, tmp_path,
                                                                               monkeypatch):
    """Found by a session-44 probe: Close or Escape while the import (or its preview) ran waited on the GUI thread for
    up to a minute, the whole station frozen with nothing on screen. Now the dialog says the import is finishing and
    closes when it has answered; the window is never held."""
    import threading
    import time

    from app.gui import import_dialog
    db.classes.set("classifier", list(CLASSES))
    info = service.open_folder(folder)
    src = class_tree(folder, tmp_path / "dataset", {"part_00.png": "crazing"})
    dlg = ImportDialog(db, info.id, info.name, CLASSES, author="tester")
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.source.setText(str(src))
    with qtbot.waitSignal(dlg.finished_preview, timeout=20000):
        assert dlg.start_preview()
    gate, real = threading.Event(), import_dialog.apply_import
    monkeypatch.setattr(import_dialog, "apply_import", lambda *a: (gate.wait(10), real(*a))[1])
    assert dlg.start_import()
    started = time.monotonic()
    dlg.reject()
    assert time.monotonic() - started < 1.0 and dlg.isVisible() and "Finishing the import" in dlg.status.text()
    gate.set()
    qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=10000)
    assert db.labels.current(next(i.id for i in db.images.query() if i.rel_path == "part_00.png")) is not None
