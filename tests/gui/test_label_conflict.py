"""Two stations on one image: a save based on a label someone else has replaced since is refused,
the window shows their label and says so, and the undo stack keeps no step that did not happen."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from database import LabelChange, ReviewState
from tests.gui.conftest import slow_saves, wait_saved
from tests.gui.fixtures import CLASSES
from tests.gui.test_main_window import press


def test_a_save_over_another_stations_newer_label_is_refused_and_theirs_shown(window, service, db, qtbot):
    win = window
    image_id = win.review.image_id
    shown = win.review.label
    assert shown.revision == 0 and win.review.undo_stack.count() == 0
    theirs = next(c for c in CLASSES if c != shown.class_name)
    # Another station corrects the image while this window still shows it unreviewed.
    db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name=theirs), "inspector2")
    errors: list[str] = []
    win.review.save_failed.connect(errors.append)
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    current = service.detail(image_id).label
    assert current.class_name == theirs and current.review_state == "corrected" and current.revision == 1
    wait_saved(win, qtbot)
    assert [h.author for h in service.history(image_id)] == ["inspector2"]  # nothing saved over it
    assert errors and errors[-1].startswith("Not saved (accept): the label was changed by inspector2")
    qtbot.waitUntil(lambda: win.review.label is not None and win.review.label.revision == 1, timeout=5000)
    assert win.review.label.class_name == theirs  # the window shows their label now
    assert win.review.undo_stack.count() == 0     # no undo step for an edit that did not happen
    # From their label on, this window's edits save as usual.
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.review_state == "accepted"
    wait_saved(win, qtbot)
    assert [h.author for h in service.history(image_id)] == ["inspector2", "tester"]
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.review_state == "corrected"


def test_undo_after_another_station_saved_does_not_put_the_old_label_back(window, service, db, qtbot):
    win = window
    image_id = win.review.image_id
    press(qtbot, win, Qt.Key.Key_A)  # this window accepts (revision 1)
    db.labels.append(image_id, LabelChange(ReviewState.REJECTED), "inspector2")  # then another station rejects
    errors: list[str] = []
    win.review.save_failed.connect(errors.append)
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo of the accept
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.review_state == "rejected"       # theirs stands
    assert errors and "inspector2" in errors[-1]
    assert win.review.undo_stack.count() == 0


def test_labels_saved_at_another_station_reach_an_idle_window(service, folder, db, qtbot, monkeypatch):
    """Nobody touches this window: another station's corrections show in the counts, the gallery's
    state and the open image's label within a few polls."""
    import app.gui.label_watch as watch
    from tests.gui.conftest import build_window, wait_shown

    monkeypatch.setattr(watch, "INTERVAL_MS", 150)
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: (win.status.counts.property("counts") or {}).get("unreviewed") == 6, timeout=5000)
    opened = win.review.image_id
    other = next(i.id for i in db.images.query() if i.id != opened)
    theirs = CLASSES[1]
    db.labels.append(opened, LabelChange(ReviewState.CORRECTED, class_name=theirs), "inspector2")
    db.labels.append(other, LabelChange(ReviewState.REJECTED), "inspector2")
    qtbot.waitUntil(lambda: win.review.label is not None and win.review.label.revision == 1, timeout=5000)
    assert win.review.label.class_name == theirs and win.review.label.author == "inspector2"
    qtbot.waitUntil(lambda: win.status.counts.property("counts") == {
        "unreviewed": 4, "accepted": 0, "corrected": 1, "rejected": 1}, timeout=5000)
    press(qtbot, win, Qt.Key.Key_A)  # and the next save builds on their label, no conflict
    wait_saved(win, qtbot)
    assert [h.author for h in service.history(opened)] == ["inspector2", "tester"]
    win.close()


def test_a_waiting_save_that_meets_a_newer_label_is_kept_in_a_file_not_replayed(window, service, db, qtbot,
                                                                                  monkeypatch):
    """The database refused a save (locked); meanwhile another station saved the image: the retry
    leaves their label, says so once, and writes this inspector's label to recovery/conflicts. The line names the
    image by its file (a session-52 audit: "Your label of image 1 is kept in …", a database id no screen shows)."""
    from app.services.review import CONFLICTS, recovery_dir

    win = window
    image_id = win.review.image_id
    real_save = service.save

    def locked(*_a, **_k):
        raise RuntimeError("database is locked")
    monkeypatch.setattr(service, "save", locked)
    from datetime import datetime, timezone
    press(qtbot, win, Qt.Key.Key_X)  # reject: kept pending
    made = datetime.now(timezone.utc).replace(microsecond=0)
    wait_saved(win, qtbot)
    assert image_id in win.review.pending()
    qtbot.wait(1100)   # the retry comes later: the file says when the label was made, not when it met theirs
    monkeypatch.setattr(service, "save", real_save)
    db.labels.append(image_id, LabelChange(ReviewState.ACCEPTED), "inspector2")
    errors: list[str] = []
    win.review.save_failed.connect(errors.append)
    assert win.review.flush_pending()
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.review_state == "accepted"  # theirs stands
    assert len(errors) == 1 and "inspector2" in errors[0]
    assert f" Your label of {service.detail(image_id).item.rel_path} is kept in " in errors[0], errors
    [kept] = (recovery_dir() / CONFLICTS).glob(f"*-image{image_id}-*.json")
    assert not list(recovery_dir().glob("*.json"))  # nothing `recover` would replay over theirs
    import json
    assert datetime.fromisoformat(json.loads(kept.read_text())["decided_at"]) <= made   # (the review of session 48)


def test_an_undo_made_before_the_refusal_came_is_dropped_with_its_step(window, service, db, qtbot, monkeypatch):
    """Found by CI on a loaded machine: Accept, another station's save, and Ctrl+Z before Accept's answer came —
    the refusal dropped the step, and the undo's own refusal then touched the deleted step (an exception in the
    event loop). Their label stands, the window shows it, no step is left."""
    win = window
    image_id = win.review.image_id
    slow_saves(service, monkeypatch, 0.3)
    errors: list[str] = []
    win.review.save_failed.connect(errors.append)
    press(qtbot, win, Qt.Key.Key_A)                                              # on its way, 0.3 s
    db.labels.append(image_id, LabelChange(ReviewState.REJECTED), "inspector2")  # lands first
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)         # before Accept's answer
    wait_saved(win, qtbot)
    qtbot.waitUntil(lambda: win.review.image_id == image_id and win.review.label is not None
                    and win.review.label.review_state == "rejected", timeout=5000)
    assert [h.author for h in service.history(image_id)] == ["inspector2"]
    assert len(errors) == 1 and "inspector2" in errors[0]
    assert win.review.undo_stack.count() == 0


def test_their_label_is_shown_when_the_conflicts_reread_comes_before_the_undos_answer(window, service, db, qtbot,
                                                                                    monkeypatch):
    """Found by the test above on a loaded machine (1 run in 5): Accept refused, its re-read of the image came
    back while the undo made meanwhile still stood on screen, and the undo's own answer (dropped: it followed a
    refused edit) showed nothing again — the panel said "unreviewed" while the image was rejected by inspector2.
    Here that order is made certain: the undo's answer is held back until the re-read has come."""
    from PySide6.QtCore import QTimer
    win = window
    image_id = win.review.image_id
    slow_saves(service, monkeypatch, 0.3)
    written = win.review._written

    def late_for_followers(w, outcome):  # the answer of a write that followed a refused one comes 1 s late
        if outcome[0] == "skipped":
            QTimer.singleShot(1000, lambda: written(w, outcome))
        else:
            written(w, outcome)
    monkeypatch.setattr(win.review, "_written", late_for_followers)
    press(qtbot, win, Qt.Key.Key_A)
    db.labels.append(image_id, LabelChange(ReviewState.REJECTED), "inspector2")
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: win.review.writes_idle() and win.review.unsaved(image_id) is None, timeout=10000)
    qtbot.waitUntil(lambda: win.review.image_id == image_id and win.review.label is not None
                    and win.review.label.review_state == "rejected" and win.review.label.author == "inspector2",
                    timeout=5000)


def _two_classes_then_theirs(win, service, qtbot) -> int:
    """This window sets two classes (two undo steps, both saved); then another station saves its own."""
    image_id = win.review.image_id
    win.review.set_class(CLASSES[0])
    win.review.set_class(CLASSES[1])
    wait_saved(win, qtbot)
    service.db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name=CLASSES[2]), "inspector2")
    return image_id


def _refuse_a_restore(win) -> None:
    win.label_panel.revision_chosen.emit(1, win.review.image_id)


def _refuse_an_edit(win) -> None:
    win.review.set_class(CLASSES[3])


def _see_it_idle(win) -> None:
    win.review.reload()  # what the window's poll of new labels does on an idle image


@pytest.mark.parametrize("meet_theirs", [_see_it_idle, _refuse_an_edit, _refuse_a_restore])
def test_ctrl_z_after_the_window_showed_another_stations_label_never_puts_the_old_one_back(window, service, qtbot,
                                                                                         meet_theirs):
    """Found by a session-43 probe: once the window had read another station's newer label (its poll on an idle
    image, or an edit or a restore refused because of it: "… the new label is shown"), Ctrl+Z wrote the step's
    old class over theirs without a word — the write was based on the revision on screen, theirs. A step made before
    their label is now not replayed, and the window says why; their label stands."""
    win = window
    image_id = _two_classes_then_theirs(win, service, qtbot)
    said: list[str] = []
    win.review.save_failed.connect(said.append)
    meet_theirs(win)
    qtbot.waitUntil(lambda: win.review.label is not None and win.review.label.class_name == CLASSES[2], timeout=5000)
    wait_saved(win, qtbot)
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_saved(win, qtbot)
    assert [(h.class_name, h.author) for h in service.history(image_id)][-1] == (CLASSES[2], "inspector2")
    assert service.detail(image_id).label.class_name == CLASSES[2]
    assert any(m.startswith(f"Not undone or redone: {service.detail(image_id).item.rel_path} was labelled by "
                            "inspector2") for m in said), said
    press(qtbot, win, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # nor redone
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.class_name == CLASSES[2]


def test_ctrl_z_after_a_gallery_decision_read_another_stations_label_never_puts_the_old_one_back(window, service,
                                                                                               qtbot):
    """The session-43 review: the same through a gallery decision, whose read of the image met their label (the
    decision itself left it as it was: the class was theirs already), then two Ctrl+Z."""
    from tests.gui.conftest import wait_shown
    win = window
    x = win.review.image_id
    win.review.set_class(CLASSES[0])
    wait_saved(win, qtbot)
    press(qtbot, win, Qt.Key.Key_J)
    wait_shown(win, qtbot)
    y = win.review.image_id
    service.db.labels.append(x, LabelChange(ReviewState.CORRECTED, class_name=CLASSES[2]), "inspector2")
    with qtbot.waitSignal(win.review.decided_many, timeout=10000):
        win.review.decide_many([x, y], "class", CLASSES[2])
    wait_saved(win, qtbot)
    win.review.undo_stack.undo()
    wait_saved(win, qtbot)
    win.review.undo_stack.undo()
    wait_saved(win, qtbot)
    qtbot.wait(200)
    assert service.detail(x).label.class_name == CLASSES[2]
    assert service.history(x)[-1].author == "inspector2"


def test_accept_whose_answer_was_dropped_by_a_reindex_elsewhere_is_refused_not_retried_for_ever(
        service, folder, db, artifacts, qtbot, monkeypatch):
    """Found by a session-44 probe (two stations, one database): the window showed an image with its model answer;
    the file was replaced and another station indexed it again, which drops the old picture's answers. A then
    said "Could not save … yet (prediction 1 does not exist.). It is kept and will be saved as soon as the
    database accepts it" and retried every few seconds for good, holding the old picture's class. Now it is
    refused as a conflict: nothing is kept to retry, the image is read again, and the line says why."""
    import cv2
    import numpy as np

    from app.services.indexing import index_folder
    from tests.gui.conftest import build_window, wait_prediction_shown, wait_shown
    from tests.gui.fixtures import seed_predictions
    monkeypatch.setattr("app.gui.folder_follow.FOLLOW_MS", 0)
    service.open_folder(str(folder))
    seed_predictions(db, db.folders.list()[0].id, artifacts)
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    wait_prediction_shown(win, qtbot)
    image_id = win.review.image_id
    cv2.imwrite(str(folder / db.images.get(image_id).rel_path), np.full((64, 64, 3), 255, np.uint8))
    index_folder(db, folder)  # another station's re-index: the answers of the old picture are dropped
    failed: list[str] = []
    waiting: list[str] = []
    win.review.save_failed.connect(failed.append)
    win.review.save_waiting.connect(waiting.append)
    press(qtbot, win, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: bool(failed), timeout=5000)
    wait_saved(win, qtbot)
    assert waiting == [] and win.review.pending() == {}
    assert "changed and was indexed again" in failed[-1] and "does not exist" not in failed[-1]
    assert db.labels.current(image_id) is None
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.prediction is None, timeout=5000)
    win.close()


def test_a_save_of_an_image_deleted_meanwhile_names_its_file(window, db, qtbot):
    """A session-52 audit: a label saved for an image whose row was deleted meanwhile (another station's clean-up)
    said "Not saved (reject): image 1 is no longer in the database", a database id no screen shows. The refusal now
    names the image's file, as the window listed it."""
    from sqlalchemy import text
    win = window
    image_id, rel_path = win.review.image_id, win.review.detail.item.rel_path
    with db.session(write=True) as s:
        s.execute(text("DELETE FROM images WHERE id = :id"), {"id": image_id})
    failed: list[str] = []
    win.review.save_failed.connect(failed.append)
    press(qtbot, win, Qt.Key.Key_X)
    qtbot.waitUntil(lambda: bool(failed), timeout=5000)
    wait_saved(win, qtbot)
    assert failed[0].startswith(f"Not saved (reject): {rel_path} is no longer in the database. "), failed
    assert f"image {image_id}" not in failed[0]
    win.close()


def test_a_save_whose_answer_was_lost_after_it_landed_is_not_called_a_conflict(window, service, db, qtbot,
                                                                               monkeypatch):
    """Found by a session-44 probe (a connection dropped between the server's commit and its reply): the label was
    stored, the window kept it and retried, and the retry, refused on the revision that label made, said "Not saved
    (reject): the label was changed by tester at another station" and wrote a conflict file. The retry now finds
    the window's own label there and takes it as saved."""
    from app.services.review import recovery_dir
    win = window
    image_id = win.review.image_id
    real = service.save
    calls = []

    def save_then_lose_the_answer(*args, **kwargs):
        calls.append(1)
        saved = real(*args, **kwargs)
        if len(calls) == 1:
            raise RuntimeError("server closed the connection unexpectedly")
        return saved
    monkeypatch.setattr(service, "save", save_then_lose_the_answer)
    failed: list[str] = []
    win.review.save_failed.connect(failed.append)
    press(qtbot, win, Qt.Key.Key_X)
    qtbot.waitUntil(lambda: len(calls) >= 2 and win.review.pending() == {}, timeout=15000)
    wait_saved(win, qtbot)
    assert failed == []
    assert [(h.review_state, h.author) for h in service.history(image_id)] == [("rejected", "tester")]
    assert not list((recovery_dir() / "conflicts").glob("*.json"))


def test_ctrl_z_after_a_retried_save_was_refused_never_puts_the_old_label_back(service, db, folder, artifacts, qtbot,
                                                                               monkeypatch):
    """Found by a session-45 probe: a class key met a locked database and waited; another station saved the image;
    the window's retry was refused as a conflict and their label shown, yet Ctrl+Z then wrote "undo class" over it
    without a word (the step stayed on the stack and the image's revision had been forgotten)."""
    from app.services.review import StorageBusy
    from tests.gui.test_main_window import _save_refused, _seeded_window
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    x = win.review.image_id
    _save_refused(service, monkeypatch, 1, StorageBusy("the database file is locked by another program (test)"))
    press(qtbot, win, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: bool(win.review.pending()), timeout=5000)
    db.labels.append(x, LabelChange(ReviewState.CORRECTED, class_name=CLASSES[2]), "inspector2")
    said: list[str] = []
    win.review.save_failed.connect(said.append)
    qtbot.waitUntil(lambda: not win.review.pending(), timeout=10000)  # the retry timer's round, refused
    wait_saved(win, qtbot)
    qtbot.waitUntil(lambda: win.review.label.class_name == CLASSES[2], timeout=5000)
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_saved(win, qtbot)
    qtbot.waitUntil(lambda: not win.review.pending(), timeout=10000)
    wait_saved(win, qtbot)
    assert service.detail(x).label.class_name == CLASSES[2]
    assert [h.author for h in service.history(x)] == ["inspector2"]
    assert any(m.startswith("Not undone or redone") for m in said)
    win.close()


def test_ctrl_z_of_an_earlier_step_on_an_image_a_gallery_decision_was_refused_on_keeps_their_label(
        service, db, folder, artifacts, qtbot, monkeypatch):
    """Found by a session-45 probe: key 1 on image X (saved); a gallery decision over X and two others met another
    station's save of X between its read and its write (refused for X, said); two Ctrl+Z then undid the decision
    (X left alone) and the earlier class on X, written over their label with no revision check."""
    from PySide6.QtCore import QItemSelectionModel

    from tests.gui.conftest import wait_shown
    from tests.gui.test_main_window import _seeded_window
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    press(qtbot, win, Qt.Key.Key_J)
    wait_shown(win, qtbot)
    x = win.review.image_id
    press(qtbot, win, Qt.Key.Key_1)
    wait_saved(win, qtbot)
    press(qtbot, win, Qt.Key.Key_K)
    wait_shown(win, qtbot)
    real_save, armed = service.save, [True]

    def save(image_id, state, changed="", **k):
        if armed and image_id == x:
            armed.clear()  # another station saves X after the selection was read, before its write
            db.labels.append(x, LabelChange(ReviewState.CORRECTED, class_name=CLASSES[2]), "inspector2")
        return real_save(image_id, state, changed, **k)
    monkeypatch.setattr(service, "save", save)
    for row in (1, 2):
        win.gallery.selectionModel().select(win.gallery_model.index(row), QItemSelectionModel.SelectionFlag.Select)
    assert x in win.queue.selected_ids()
    with qtbot.waitSignal(win.review.decided_many, timeout=10000):
        press(qtbot, win, Qt.Key.Key_3)
    wait_saved(win, qtbot)
    for _ in range(2):
        press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        wait_saved(win, qtbot)
        qtbot.wait(200)
    assert service.detail(x).label.class_name == CLASSES[2]
    assert service.history(x)[-1].author == "inspector2"
    win.close()


def test_a_station_told_that_a_newer_one_upgraded_the_database_stops_saving(service, folder, db, qtbot, monkeypatch):
    """A session-52 audit: a station left running while a newer one upgraded the database went on writing labels and
    flags without the newer version's bookkeeping, and nothing told anyone. Its label watch now reads the schema's
    revision on its poll: a revision this version does not know is said (a box, the title), and the label made after
    waits ("not saved yet") instead of being written, to be kept in the recovery files when the window closes."""
    from sqlalchemy import create_engine, text

    import app.gui.label_watch as watch
    from tests.gui.conftest import build_window, wait_shown

    monkeypatch.setattr(watch, "INTERVAL_MS", 150)
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    said: list[str] = []
    win.label_watch.schema_changed.connect(said.append)
    newer = create_engine(db.sa_url)
    try:
        with newer.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_station'"))
    finally:
        newer.dispose()
    qtbot.waitUntil(lambda: "out of date" in win.windowTitle(), timeout=5000)
    assert len(said) == 1 and "this station must be updated" in said[0]
    image_id = win.review.image_id
    press(qtbot, win, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: "not saved yet" in win.status.pending.text(), timeout=5000)
    assert "must be updated" in win.status.pending.toolTip()
    assert service.detail(image_id).label.revision == 0   # nothing written
