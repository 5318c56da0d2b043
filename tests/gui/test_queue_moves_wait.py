"""A move (J, K, N, the move-on after a decision) pressed while a view the inspector asked for is read waits for it,
and is made only where the screen did not move meanwhile (a session-50 review of the first form, which made the
move after a click, after another folder was opened, after the view failed, and once more after the view's landing
had already shown the next image)."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt

from tests.gui.conftest import wait_listed, wait_saved, wait_shown
from tests.gui.fixtures import make_folder
from tests.gui.test_main_window import _seeded_window, press


def _slow(win, seconds=1.0, fail=False):
    real = win.queue._read

    def slow(flt, *a, **k):
        if flt.narrows:
            time.sleep(seconds)
            if fail:
                raise RuntimeError("database gone away")
        return real(flt, *a, **k)
    win.queue._read = slow


def _ids(service, win):
    return {service.item(i).rel_path: i for i in range(1, 40) if _exists(service, i)}


def _exists(service, i):
    try:
        return service.item(i) is not None
    except Exception:  # noqa: BLE001 - a gap in the ids: no image
        return False


def _name(service, i):
    return None if i is None else service.item(i).rel_path


def test_a_click_while_a_move_waits_keeps_the_clicked_image(service, db, folder, artifacts, qtbot):
    """J pressed during a slow search, then a click on part_03: the waiting J moved off the clicked image."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    ids = _ids(service, win)
    _slow(win)
    win.queue.set_filter(win.queue.filter.with_(text="part_0"))   # all six match
    assert win.queue.reading()
    win.queue.step(1)                              # J, deferred
    assert win.queue.select(ids["part_03.png"])    # a mouse click in the gallery meanwhile
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    qtbot.wait(300)
    assert _name(service, win.queue.current_id()) == "part_03.png"
    win.close()


def test_a_move_waiting_for_one_folders_view_is_not_made_in_another(service, db, folder, artifacts, tmp_path, qtbot):
    """J pressed during a slow search in folder A, folder B opened before it came: J was made in B."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    other = make_folder(tmp_path / "other", n=4)
    info = service.open_folder(other)
    _slow(win)
    win.queue.set_filter(win.queue.filter.with_(text="part_0"))
    win.queue.step(1)                              # J for folder A's search
    win.show_folder(info.id)                       # the inspector opens folder B
    qtbot.waitUntil(lambda: not win.queue.reading() and win.queue.filter.folder_id == info.id, timeout=10000)
    qtbot.wait(300)
    cur = win.queue.current_id()
    assert _name(service, cur) == "part_00.png"
    win.close()


def test_a_move_waiting_for_a_view_that_could_not_be_read_is_not_made(service, db, folder, artifacts, qtbot):
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    _slow(win, fail=True)
    before = win.queue.current_id()
    win.queue.set_filter(win.queue.filter.with_(text="part_03"))
    win.queue.step(1)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    qtbot.wait(300)
    assert win.queue.current_id() == before
    win.close()


def test_the_move_on_after_a_decision_is_not_made_twice(service, db, folder, artifacts, qtbot):
    """A on part_00 while a slow state filter that leaves it out is read: the view's landing shows part_01, and the
    waiting move-on then passed over it to part_02."""
    from tests.gui.conftest import wait_saved
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    win.activateWindow(); win.gallery.setFocus()
    qtbot.keyClick(win.gallery, Qt.Key.Key_D)      # part_00 reviewed (corrected)
    wait_saved(win, qtbot)
    _slow(win)
    win.queue.set_filter(win.queue.filter.with_(states=frozenset({"unreviewed"})))   # part_01..05
    qtbot.keyClick(win.gallery, Qt.Key.Key_A)      # accept part_00; auto-advance deferred
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    qtbot.wait(800)
    assert _name(service, win.queue.current_id()) == "part_01.png"
    win.close()


def test_several_moves_pressed_while_a_view_is_read_are_all_made(service, db, folder, artifacts, qtbot):
    """J J J pressed during a slow search that keeps the image on screen: the first form compared each move with the
    screen after the previous one had moved it, and made one move of three (a session-50 review)."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    assert _name(service, win.queue.current_id()) == "part_00.png"
    _slow(win)
    win.queue.set_filter(win.queue.filter.with_(text="part_0"))   # all six match, part_00 kept
    for _ in range(3):
        win.queue.step(1)
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    qtbot.wait(300)
    assert _name(service, win.queue.current_id()) == "part_03.png"
    win.close()


def _shown_off_the_list(win, qtbot) -> list[int]:
    """The first image accepted under "unreviewed", the queue re-read, then Ctrl+Z: on screen, off the list. The ids
    the view listed at first."""
    win.queue_panel.set_states({"unreviewed"})
    wait_listed(win, qtbot)
    wait_shown(win, qtbot)
    ids = [win.gallery_model.item_at(r).image_id for r in range(win.gallery_model.rowCount())]
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    wait_shown(win, qtbot, ids[1])
    win._labels_changed_somewhere()
    qtbot.waitUntil(lambda: win.gallery_model.rowCount() == len(ids) - 1)
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_saved(win, qtbot)
    wait_shown(win, qtbot, ids[0])
    assert win.queue.current_id() is None and win.queue.off_view() == ids[0]
    return ids


@pytest.mark.parametrize("searches", [("part_0",), ("part", "part_0")], ids=["one view", "two views"])
def test_a_move_from_an_image_shown_off_the_list_is_made_when_the_view_lists_it(window, service, qtbot, searches):
    """An image on screen that the view no longer listed (accepted under "unreviewed", then Ctrl+Z), J pressed while a
    view that lists it again is read: the first form read "no image" as where J was pressed, and dropped the move;
    with a search typed in two goes the second view, asked while the first was read, kept no image (the first had
    cleared where it was), its first row was shown and J dropped (session-50 reviews). A dropped move now says so."""
    win = window
    ids = _shown_off_the_list(win, qtbot)
    _slow(win)
    for text in searches:                # each lists part_00 again
        win.queue.set_filter(win.queue.filter.with_(states=frozenset(), text=text))
    assert win.queue.reading()
    win.queue.step(1)                    # J
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    qtbot.wait(300)
    assert win.queue.current_id() == ids[1]
    win.close()


def test_a_failed_read_keeps_the_place_of_an_image_shown_off_the_list(window, service, qtbot):
    """A session-50 review: with an image shown off the list, a search whose read failed forgot it (the view's reset
    had cleared its place): J then went to the top of the old list. The old list and the image's place are kept."""
    win = window
    ids = _shown_off_the_list(win, qtbot)
    _slow(win, fail=True)
    win.queue.set_filter(win.queue.filter.with_(text="part_0"))
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=10000)
    assert win.queue.off_view() == ids[0]
    win.queue.step(1)                    # J in the old list, from the image shown off it
    qtbot.waitUntil(lambda: win.queue.current_id() is not None, timeout=5000)
    assert win.queue.current_id() == ids[1]
    win.close()
