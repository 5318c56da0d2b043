"""Project ▸ Classes…: an inspector adds a class the active model does not know, labels with its
hotkey, and taking a class off the list keeps every label that has it."""
from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QDialogButtonBox

from app.services import project_classes
from database.dto import ImageQuery, LabelChange
from database.states import ReviewState
from tests.gui.conftest import build_window, wait_prediction_shown, wait_shown
from tests.gui.fixtures import CLASSES, seed_predictions
from tests.gui.test_main_window import press


def _buttons(win) -> list[str]:
    return [b.text().split(maxsplit=1)[-1] for b in win.label_panel.class_group.buttons()]


def test_a_new_class_reaches_the_hotkeys_and_a_removed_one_stays_on_its_labels(service, db, folder, artifacts, qtbot):
    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)            # the active classifier knows CLASSES
    win.refresh_models()
    wait_shown(win, qtbot)
    wait_prediction_shown(win, qtbot)
    qtbot.waitUntil(lambda: _buttons(win) == list(CLASSES), timeout=5000)

    win.actions["project_classes"].trigger()
    dlg = win.classes_dialog
    qtbot.waitUntil(lambda: dlg.names() == list(CLASSES), timeout=5000)
    assert "project's own list" in dlg.source.text()  # seed_predictions saves CLASSES as the project's
    qtbot.keyClicks(dlg.name, "blow hole")
    qtbot.keyClick(dlg.name, Qt.Key.Key_Return)   # adds; never saves (no default button)
    assert dlg.message.text() == "" and project_classes.names(db) == list(CLASSES)
    qtbot.keyClicks(dlg.name, "Crazing")          # already there under another case: refused, said why
    dlg.add_button.click()
    assert "'Crazing' is already on the list as 'crazing'" in dlg.message.text()
    assert dlg.names() == [*CLASSES, "blow hole"]
    dlg.name.clear()
    dlg.list.setCurrentRow(len(CLASSES))
    dlg.move_selected(-1)
    assert dlg.names() == [*CLASSES[:-1], "blow hole", CLASSES[-1]]
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "Classes saved" in dlg.message.text(), timeout=5000)
    assert project_classes.names(db) == [*CLASSES[:-1], "blow hole", CLASSES[-1]]
    qtbot.waitUntil(lambda: _buttons(win) == [*CLASSES[:-1], "blow hole", CLASSES[-1]], timeout=5000)
    assert win.queue_panel.class_combo.findData("blow hole") >= 0

    # The new class's hotkey labels the open image with it.
    dlg.close()
    wait_shown(win, qtbot)
    wait_prediction_shown(win, qtbot)   # the window re-read the open image after the save
    image_id = win.review.image_id
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)   # the dialog had the focus
    press(qtbot, win, Qt.Key.Key_4)
    qtbot.waitUntil(lambda: db.labels.current(image_id) is not None
                    and db.labels.current(image_id).class_name == "blow hole", timeout=5000)

    # Taking it off the list: the dialog says a label keeps it; the label is not changed.
    win.actions["project_classes"].trigger()
    dlg = win.classes_dialog
    qtbot.waitUntil(lambda: "blow hole   (1 label)" in [dlg.list.item(i).text() for i in range(dlg.list.count())],
                    timeout=5000)
    dlg.list.setCurrentRow(len(CLASSES) - 1)
    dlg.remove_selected()
    assert "1 label keep 'blow hole'" in dlg.message.text()
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: project_classes.names(db) == list(CLASSES), timeout=5000)
    qtbot.waitUntil(lambda: _buttons(win) == list(CLASSES), timeout=5000)
    assert db.labels.current(image_id).class_name == "blow hole"
    assert db.images.query(ImageQuery(folder_id=fid))  # nothing else went anywhere
    dlg.close()
    win.close()


def test_a_list_holding_a_name_no_folder_takes_can_be_edited_here_too(service, db, folder, qtbot):
    """A session-46 probe: with "crack>1mm" stored (before the folder-name check, or by a model), every Add and Save
    in the dialog was refused for that name, while ``main.py classes add`` could edit the list."""
    db.classes.set(project_classes.TASK, ("crack>1mm", "ok"))
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    win.actions["project_classes"].trigger()
    dlg = win.classes_dialog
    qtbot.waitUntil(lambda: dlg.names() == ["crack>1mm", "ok"], timeout=5000)
    qtbot.keyClicks(dlg.name, "pit")
    dlg.add_button.click()
    assert dlg.message.text() == "" and dlg.names() == ["crack>1mm", "ok", "pit"]
    qtbot.keyClicks(dlg.name, "edge|burr")   # a new name is still checked
    dlg.add_button.click()
    assert "cannot name a folder" in dlg.message.text()
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: project_classes.names(db) == ["crack>1mm", "ok", "pit"], timeout=5000)
    dlg.close()
    win.close()


def test_renaming_a_labelled_class_by_case_is_refused_here_and_says_how_many_labels_use_it(service, db, folder,
                                                                                            qtbot):
    """A session-49 audit: Remove "crazing", Add "Crazing", Save was accepted; key 1 then saved "Crazing" beside the
    old labels' "crazing", and every ImageFolder or MVTec export and retraining was refused from then on."""
    db.classes.set(project_classes.TASK, ("crazing", "ok"))
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    image_id = db.images.query()[0].id
    db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="crazing"), "ann")
    win.actions["project_classes"].trigger()
    dlg = win.classes_dialog
    qtbot.waitUntil(lambda: dlg.names() == ["crazing", "ok"], timeout=5000)
    dlg.list.setCurrentRow(0)
    dlg.remove_selected()
    qtbot.keyClicks(dlg.name, "Crazing")
    dlg.add_button.click()
    assert "'Crazing' would share a class folder with 'crazing' (1 label uses it)" in dlg.message.text()
    assert dlg.names() == ["ok"]
    dlg.close()
    win.close()


def test_a_failed_save_keeps_the_list_on_screen(service, db, folder, qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", tmp_path / "no-bundled-models")   # no classifier at all
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    win.actions["project_classes"].trigger()
    dlg = win.classes_dialog
    qtbot.waitUntil(lambda: "No classes yet" in dlg.source.text(), timeout=5000)
    qtbot.keyClicks(dlg.name, "crack")
    dlg.add_button.click()

    def locked(*_a, **_k):
        raise RuntimeError("database is locked")
    monkeypatch.setattr(project_classes, "save", locked)
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "were not saved" in dlg.message.text(), timeout=5000)
    assert "database is locked" in dlg.message.text() and dlg.names() == ["crack"]
    assert project_classes.names(db) == []
    dlg.close()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5000)
    press(qtbot, win, Qt.Key.Key_1)           # no class yet: the status bar says where to add one
    assert "There is no class 1: the project has 0 (Project ▸ Classes… adds one)" in win.statusBar().currentMessage()
    win.close()


def test_a_list_saved_at_another_station_reaches_this_window_with_the_next_poll(service, db, db_url, folder, artifacts,
                                                                                qtbot):
    from database import open_database

    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)
    win.refresh_models()
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: _buttons(win) == list(CLASSES), timeout=5000)
    other = open_database(db_url)   # another station on the same project database
    try:
        project_classes.add(other, ["fray"])
    finally:
        other.close()
    win.project.reload()             # what its poll does every POLL_MS
    qtbot.waitUntil(lambda: _buttons(win) == [*CLASSES, "fray"], timeout=5000)
    assert win.project.current.classes == (*CLASSES, "fray")
    win.close()


def test_an_image_no_classifier_runs_on_offers_no_other_parts_classes(service, db, tmp_path, qtbot):
    """Seen under Xvfb (session 35): bottles routed to the segmenter and the bottle anomaly model showed the
    steel classifier's class buttons, and 1 would have labelled a bottle "crazing"."""
    from tests.gui.conftest import open_bottles_without_classifier

    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": ["crazing", "patches"]},
                               activate=True)
    win = open_bottles_without_classifier(service, db, tmp_path, qtbot, n=3)
    qtbot.waitUntil(lambda: win.label_panel.no_classes.isVisible(), timeout=5000)
    assert _buttons(win) == [] and win.label_panel.classes() == []
    assert "runs no classifier on this image" in win.label_panel.no_classes.text()
    image_id = win.review.image_id
    press(qtbot, win, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: "No class 1 here" in win.statusBar().currentMessage(), timeout=5000)
    current = db.labels.current(image_id)
    assert current is None or current.class_name is None
    win.close()


def test_a_class_key_on_a_selection_leaves_out_the_images_no_classifier_runs_on(service, db, tmp_path, qtbot):
    """A selection that holds another line's frames (bottles routed away from the classifier) gives them no class,
    as their own key would not, and says how many it left out."""
    from tests.gui.conftest import open_bottles_without_classifier

    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": ["crazing", "patches"]},
                               activate=True)
    win = open_bottles_without_classifier(service, db, tmp_path, qtbot, n=3)
    ids = [it.image_id for it in win.gallery_model.items()]
    with qtbot.waitSignal(win.review.decided_many, timeout=10000):
        win.review.decide_many(ids, "class", "crazing")
    assert "No class here: the model routing runs no classifier on the 3 selected images" in \
        win.statusBar().currentMessage()
    assert all((db.labels.current(i) is None or db.labels.current(i).class_name is None) for i in ids)
    win.close()


def test_a_save_over_a_class_added_at_another_station_is_refused_and_said(tmp_path, qtbot, monkeypatch):
    """Found by a session-44 probe: the dialog opened at station B; station A (or ``main.py classes add``) added
    "blowhole"; B added "fray" and saved: "Classes saved: crack, scratch, fray." and A's class was gone from the
    list. Now the save is refused, the list stays on screen and the line says what the list holds now."""
    from app.gui.classes_dialog import ClassesDialog
    from database import open_database
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", tmp_path / "no-bundled-models")   # no classifier at all
    url = f"sqlite:///{(tmp_path / 'shared.sqlite').as_posix()}"
    a, b = open_database(url), open_database(url)
    dlg = ClassesDialog(b)  # the project has no list of its own yet
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.source.text().startswith("No classes yet"), timeout=5000)
    project_classes.add(a, ["crack", "scratch", "blowhole"])
    dlg.name.setText("fray")
    dlg.add_typed()
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "not saved" in dlg.message.text(), timeout=5000)
    assert "changed at another station" in dlg.message.text() and "blowhole" in dlg.message.text()
    assert dlg.names() == ["fray"]
    assert project_classes.names(a) == ["crack", "scratch", "blowhole"]
    assert dlg.source.text().startswith("This is the project's own list.")  # seen under Xvfb: it still said "model"
    dlg.buttons.button(QDialogButtonBox.StandardButton.Save).click()  # the inspector saves their list as it stands
    qtbot.waitUntil(lambda: dlg.message.text().startswith("Classes saved"), timeout=5000)
    assert project_classes.names(a) == ["fray"]
    dlg.close()
    a.close()
    b.close()


def test_accept_keeps_no_class_the_project_took_off_its_list_and_says_so(service, db, folder, artifacts, qtbot):
    """A session-46 probe: with the predicted class renamed on the project's list, A saved the model's old name as a
    reviewed label, without a word: the labels split between the old name and the new in exports, counts and
    retraining. Accept now keeps the rest of the answer and no class, and says why; a class key still labels."""
    from tests.gui.conftest import wait_saved
    from tests.gui.test_out_of_domain import _mark_out_of_domain

    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    versions = seed_predictions(db, fid, artifacts)
    _mark_out_of_domain(db, fid, versions, {"part_00.png"}, families=("segmenter",))  # a second note to say
    win.refresh_models()
    wait_shown(win, qtbot)
    wait_prediction_shown(win, qtbot)
    assert win.review.detail.item.name == "part_00.png"
    predicted = win.review.detail.prediction.predicted_class
    project_classes.save(db, [c if c != predicted else f"{c} defect" for c in CLASSES])  # renamed on the list
    win.refresh_models()
    win.review.reload()
    qtbot.waitUntil(lambda: f"{predicted} defect" in _buttons(win), timeout=5000)
    image_id = win.review.image_id
    notes: list[str] = []
    win.review.note.connect(notes.append)
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    label = db.labels.current(image_id)
    assert label.review_state == "accepted" and label.class_name is None
    # one note says both (a second replaced the first on the status bar, seen under Xvfb)
    assert len(notes) == 1 and f"without the classifier's class '{predicted}'" in notes[0]
    assert "segmenter's answer" in notes[0]
    win.close()


def test_a_class_key_on_a_selection_works_with_an_image_no_classifier_runs_on_shown(service, db, tmp_path, qtbot,
                                                                                  monkeypatch):
    """A session-47 audit: with a tile on screen (the routing runs no classifier on it) and two steel images selected
    beside it, 2 changed nothing and said "No class 2 here"; with a steel image on screen the same selection was
    labelled. The selection gets the project's class, the tile left out and said. The project's classes are read off
    the GUI thread (a session-49 audit: after a model refresh the key waited there on two queries)."""
    import threading

    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.gui.fixtures import make_folder

    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": ["crazing", "patches"]},
                               activate=True)
    root = tmp_path / "line"
    make_folder(root / "tiles", n=1)
    make_folder(root / "steel", n=2)
    save_routing(db, Routing((RoutingRule("steel/*", ("classifier",)), RoutingRule("tiles/*", ("anomaly",)))))
    win = build_window(service, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    items = win.gallery_model.items()
    tile = next(it.image_id for it in items if it.rel_path.startswith("tiles/"))
    steel = [it.image_id for it in items if it.rel_path.startswith("steel/")]
    win.queue.select_alone(tile)
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: win.review.image_id == tile and win.label_panel.no_classes.isVisible(), timeout=5000)
    view = win.gallery
    for image_id in steel:
        view.selectionModel().select(win.gallery_model.index(win.gallery_model.row_of(image_id)),
                                     QItemSelectionModel.SelectionFlag.Select)
    assert sorted(view.selected_ids()) == sorted([tile, *steel])
    on_gui_thread: list[str] = []
    real_classes = service.classes

    def watched() -> list[str]:
        if threading.current_thread() is threading.main_thread():
            on_gui_thread.append("classes")
        return real_classes()
    monkeypatch.setattr(service, "classes", watched)
    service.refresh_models()   # as after every pre-label job's progress: the cached list forgotten
    said: list[str] = []   # every status-bar line (a slow save's line may follow the one asked about)
    win.statusBar().messageChanged.connect(said.append)
    with qtbot.waitSignal(win.review.decided_many, timeout=10000):
        press(qtbot, win, Qt.Key.Key_2)
    assert on_gui_thread == []
    qtbot.waitUntil(lambda: all(db.labels.current(i) is not None for i in steel), timeout=10000)
    assert all(db.labels.current(i).class_name == "patches" for i in steel)  # the 2nd of the project's classes
    current = db.labels.current(tile)
    assert current is None or current.class_name is None
    assert any("1 image left out: the model routing runs no classifier there" in m for m in said), said
    win.close()


def test_a_new_project_offers_the_classes_of_the_classifier_its_first_pre_label_runs(service, db, folder, qtbot):
    """A session-52 audit: in a new project, before its first pre-label, key 2 said "There is no class 2: the project
    has 0 (Project ▸ Classes… adds one)" and the label panel had no class button, although pre-labelling runs the
    bundled classifier; only opening Project ▸ Models (its listing makes that classifier active) changed what the
    project offers, and the window was not told. Now the keys offer that classifier's classes from the start, and
    listing the models changes nothing on them."""
    from app.services.model_catalog import ModelCatalog
    from app.services.prelabel import read_card
    from inference.bundled import bundled_model_dir
    expected = list(read_card(bundled_model_dir(project_classes.TASK))["classes"])
    assert len(expected) >= 2 and db.model_versions.active(project_classes.TASK) is None
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: _buttons(win) == expected, timeout=5000)
    image_id = win.review.image_id
    press(qtbot, win, Qt.Key.Key_2)
    qtbot.waitUntil(lambda: db.labels.current(image_id) is not None
                    and db.labels.current(image_id).class_name == expected[1], timeout=5000)
    ModelCatalog(db).rows()          # Project ▸ Models lists them
    win.refresh_models()
    wait_shown(win, qtbot)
    qtbot.wait(300)
    assert _buttons(win) == expected and db.model_versions.active(project_classes.TASK) is not None
    win.close()
