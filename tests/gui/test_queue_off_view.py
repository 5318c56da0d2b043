"""The image on screen that the queue's filter no longer lists (a label moved it out, an undo brought it back):
it stays the image the keys are about, and J, K and N go on from where it was (found by a session-43 probe)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.gui.conftest import wait_listed, wait_saved, wait_shown
from tests.gui.test_main_window import press

CTRL = Qt.KeyboardModifier.ControlModifier


def _unreviewed_only(win, qtbot) -> list[int]:
    win.queue_panel.set_states({"unreviewed"})
    wait_listed(win, qtbot)
    wait_shown(win, qtbot)
    return [win.gallery_model.item_at(r).image_id for r in range(win.gallery_model.rowCount())]


def _relisted(win, qtbot, rows: int) -> None:
    """What the label watch does a few seconds after a save: the queue is read again."""
    win._labels_changed_somewhere()
    qtbot.waitUntil(lambda: win.gallery_model.rowCount() == rows)


def test_an_undo_under_a_state_filter_keeps_the_keys_on_the_image_it_brought_back(window, service, qtbot):
    """A on the first image under "unreviewed" (the next comes), the list re-read, Ctrl+Z: the viewer showed the first
    image again but the gallery kept the second selected, and the next re-read opened the second behind the
    inspector's back; G meant for the first went to the second."""
    win = window
    ids = _unreviewed_only(win, qtbot)
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    wait_shown(win, qtbot, ids[1])
    _relisted(win, qtbot, len(ids) - 1)
    press(qtbot, win, Qt.Key.Key_Z, CTRL)
    wait_saved(win, qtbot)
    wait_shown(win, qtbot, ids[0])
    assert ids[1] not in win.queue.selected_ids()
    _relisted(win, qtbot, len(ids))  # unreviewed again: listed, and it is the one selected
    qtbot.wait(200)
    assert win.review.image_id == ids[0] and win.queue.current_id() == ids[0]
    press(qtbot, win, Qt.Key.Key_G)
    wait_saved(win, qtbot)
    assert service.detail(ids[0]).label.anomaly_verdict == "normal"
    assert service.detail(ids[1]).label.anomaly_verdict is None


@pytest.mark.parametrize("key, expect", [(Qt.Key.Key_J, 4), (Qt.Key.Key_K, 2), (Qt.Key.Key_N, 4)])
def test_keys_go_on_from_the_image_a_label_moved_out_of_the_filter(window, service, qtbot, key, expect):
    """J three times, G (the image is no longer unreviewed), the list re-read: J went to the queue's first image,
    K said "Start of the queue", N went to the first unreviewed; they go on from the image's place now."""
    win = window
    ids = _unreviewed_only(win, qtbot)
    for _ in range(3):
        press(qtbot, win, Qt.Key.Key_J)
        wait_shown(win, qtbot)
    assert win.review.image_id == ids[3]
    press(qtbot, win, Qt.Key.Key_G)
    wait_saved(win, qtbot)
    _relisted(win, qtbot, len(ids) - 1)
    assert win.queue.off_view() == ids[3]
    press(qtbot, win, key)
    wait_shown(win, qtbot, ids[expect])
    assert win.review.image_id == ids[expect]


@pytest.mark.parametrize("key, expect", [(Qt.Key.Key_J, 5), (Qt.Key.Key_K, None), (Qt.Key.Key_N, 5)])
def test_keys_go_on_from_the_right_place_when_a_re_read_drops_several_images_at_once(window, service, qtbot, key,
                                                                                     expect):
    """A session-48 probe: "2 J" four times at a human pace, then "2": the label watch's re-read dropped all four
    images above the one on screen at once; J and N went four rows too far (those unreviewed images never shown) and
    K went forwards. They go on from the first image still listed that followed it."""
    win = window
    said: list[str] = []
    win.queue.message.connect(said.append)
    ids = _unreviewed_only(win, qtbot)
    for i in range(4):
        press(qtbot, win, Qt.Key.Key_G)
        wait_saved(win, qtbot)
        press(qtbot, win, Qt.Key.Key_J)
        wait_shown(win, qtbot, ids[i + 1])
    press(qtbot, win, Qt.Key.Key_G)   # the fifth, on screen: all five leave the list in one re-read
    wait_saved(win, qtbot)
    _relisted(win, qtbot, len(ids) - 5)
    assert win.queue.off_view() == ids[4]
    press(qtbot, win, key)
    if expect is None:   # every earlier image was labelled: nothing before it is listed
        qtbot.waitUntil(lambda: "Start of the queue." in said)
        assert win.review.image_id == ids[4]
    else:
        wait_shown(win, qtbot, ids[expect])
        assert win.review.image_id == ids[expect]


def test_an_empty_folder_opened_after_another_leaves_no_image_under_the_keys(window, service, tmp_path, qtbot):
    """A session-49 audit: line_a's first image on screen, then the empty line_b opened: the status said "line_b: 0
    images" and the gallery was empty, but the viewer and the label panel still showed line_a's part_00.png, the image
    keys stayed enabled, and D, F and A saved to it. Now nothing is under review, as when the window starts."""
    win = window
    first = win.review.image_id
    (tmp_path / "line_b").mkdir()
    win.open_folder(str(tmp_path / "line_b"))
    wait_listed(win, qtbot)
    qtbot.waitUntil(lambda: win.review.image_id is None)
    assert win.gallery_model.rowCount() == 0 and win.viewer_ctl._shown_id is None
    assert win.label_panel.title.text() == "No image" and win.viewer.image_size() == (0, 0)
    assert not any(win.actions[k].isEnabled() for k in ("accept", "flag", "verdict_anomalous", "class_1"))
    for key in (Qt.Key.Key_D, Qt.Key.Key_F, Qt.Key.Key_A):
        press(qtbot, win, key)
    wait_saved(win, qtbot)
    item = service.item(first)
    assert item.review_state == "unreviewed" and not item.flagged
    win.open_folder(str(tmp_path / "parts"))  # back to a folder with images: its first is chosen and the keys work
    wait_shown(win, qtbot)
    assert win.actions["accept"].isEnabled()


def test_a_search_matching_nothing_keeps_the_image_on_screen_and_says_so(window, qtbot):
    """A session-49 audit: a search that matched nothing left the image on screen under the keys without a word
    (the gallery empty, nothing chosen). It stays there, said to be outside this view, and comes back chosen when
    the search is cleared."""
    win = window
    said: list[str] = []
    win.queue.message.connect(said.append)
    shown = win.review.image_id
    win.queue_panel.search.setText("no-such-part")
    qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 0 and not win.queue.reading())
    assert win.review.image_id == shown and win.queue.off_view() == shown
    assert any("not in this view" in m and "a search or a filter" in m for m in said)
    win.queue_panel.search.setText("")
    qtbot.waitUntil(lambda: win.gallery_model.rowCount() > 0 and not win.queue.reading())
    assert win.queue.current_id() == shown


def _slow_read(service, monkeypatch, image_id: int, seconds: float, fail: bool = False):
    """The reader thread's read of ``image_id``'s detail takes ``seconds`` (a slow database), then fails if ``fail``;
    the real read is returned."""
    import threading
    import time
    real = service.detail

    def slow(asked: int):
        if asked == image_id and threading.current_thread() is not threading.main_thread():
            time.sleep(seconds)
            if fail:
                raise RuntimeError("server gone away")
        return real(asked)
    monkeypatch.setattr(service, "detail", slow)
    return real


def _d_waiting_then_empty_folder(win, service, qtbot, monkeypatch, tmp_path, seconds: float, fail: bool = False):
    """J, then D waiting for the second image's slow read (``_slow_read``), then the empty line_b opened. Returns the
    second image's id and the read without the wait."""
    ids = [it.image_id for it in win.gallery_model.items()]
    real = _slow_read(service, monkeypatch, ids[1], seconds, fail=fail)
    press(qtbot, win, Qt.Key.Key_J)
    press(qtbot, win, Qt.Key.Key_D)    # waits for the second image's read
    assert win.review._deferred
    (tmp_path / "line_b").mkdir()
    win.open_folder(str(tmp_path / "line_b"))
    return ids[1], real


def test_keys_waiting_for_an_images_read_land_on_it_when_an_empty_folder_is_opened(window, service, tmp_path, qtbot,
                                                                                    monkeypatch):
    """The empty folder's view clears the screen (a session-49 audit), but not before the keys pressed for the image
    being read (a slow database) are applied to it, as when moving on to another image: D is not lost."""
    win = window
    second, real = _d_waiting_then_empty_folder(win, service, qtbot, monkeypatch, tmp_path, 1.5)
    qtbot.waitUntil(lambda: win.review.image_id is None, timeout=10000)
    wait_saved(win, qtbot)
    assert real(second).label.anomaly_verdict == "anomalous"
    assert win.viewer_ctl._shown_id is None and not win.actions["verdict_anomalous"].isEnabled()


def test_a_folder_opened_while_keys_wait_keeps_its_image_when_they_land(window, service, tmp_path, qtbot,
                                                                        monkeypatch):
    """The review of a session-49 fix: J, D waiting for the second image's slow read, the empty line_b opened, then
    line_c: when D landed, the clear asked by line_b ran after it and wiped line_c's first image, chosen meanwhile
    (the gallery on it, but nothing on screen, nothing under review, the image keys off). Now line_c's image is
    opened once D has landed on the image it was pressed for."""
    from tests.gui.fixtures import make_folder
    win = window
    second, real = _d_waiting_then_empty_folder(win, service, qtbot, monkeypatch, tmp_path, 2.0)
    wait_listed(win, qtbot)
    win.open_folder(str(make_folder(tmp_path / "line_c", n=3)))
    wait_listed(win, qtbot)
    chosen = win.queue.current_id()
    assert chosen is not None and win.review._deferred   # chosen while D still waits
    qtbot.waitUntil(lambda: not win.review._deferred, timeout=10000)
    wait_shown(win, qtbot, chosen)
    assert win.review.image_id == chosen and win.actions["accept"].isEnabled()
    wait_saved(win, qtbot)
    assert real(second).label.anomaly_verdict == "anomalous"


def test_an_empty_folder_is_cleared_when_the_read_the_keys_waited_for_fails(window, service, tmp_path, qtbot,
                                                                            monkeypatch):
    """The review of a session-49 fix: J, D waiting for the second image's read, the empty line_b opened, and the read
    failed: the keys were dropped (said) and the empty folder's clear with them, so line_b still showed line_a's image
    with the image keys on. Now the keys are still said not applied, and nothing is under review."""
    win = window
    said: list[str] = []
    win.review.intent_lost.connect(said.append)
    _d_waiting_then_empty_folder(win, service, qtbot, monkeypatch, tmp_path, 1.0, fail=True)
    wait_listed(win, qtbot)
    qtbot.waitUntil(lambda: not win.review._deferred, timeout=10000)
    assert win.review.image_id is None and win.viewer_ctl._shown_id is None
    assert win.label_panel.title.text() == "No image" and not win.actions["verdict_anomalous"].isEnabled()
    assert any("1 key pressed for it was not applied" in text for text in said), said


def test_a_key_pressed_while_an_empty_folders_clear_waits_says_it_was_not_applied(window, service, tmp_path, qtbot,
                                                                                   monkeypatch):
    """A session-50 audit: J, D waiting for the second image's slow read, the empty line_b opened (its clear waits
    behind D), then F: F was kept behind the clear, found no image when the read landed, and was dropped with nothing
    said. Now F is refused when pressed, said on the status bar; D still lands on the image it was pressed for."""
    win = window
    said: list[str] = []
    win.review.message.connect(said.append)
    second, real = _d_waiting_then_empty_folder(win, service, qtbot, monkeypatch, tmp_path, 2.0)
    wait_listed(win, qtbot)
    assert win.review._deferred   # the read is still on its way
    press(qtbot, win, Qt.Key.Key_F)
    assert any("key was not applied: the folder shown lists no image" in text for text in said), said
    qtbot.waitUntil(lambda: win.review.image_id is None and not win.review._deferred, timeout=10000)
    wait_saved(win, qtbot)
    assert real(second).label.anomaly_verdict == "anomalous" and not real(second).item.flagged


def test_the_keys_waiting_line_counts_the_keys_pressed_not_the_clear_behind_them(window, service, tmp_path, qtbot,
                                                                                   monkeypatch):
    """A session-50 audit: J, then D and F waiting for the second image's slow read, then the empty line_b opened (its
    clear queued behind them): the status bar read "3 key(s) wait for image …", the clear counted as a key. It says the
    two keys pressed now, worded by their count."""
    win = window
    said: list[str] = []
    win.review.message.connect(said.append)
    ids = [it.image_id for it in win.gallery_model.items()]
    real = _slow_read(service, monkeypatch, ids[1], 3.0)
    press(qtbot, win, Qt.Key.Key_J)
    press(qtbot, win, Qt.Key.Key_D)    # both wait for the second image's read
    press(qtbot, win, Qt.Key.Key_F)
    (tmp_path / "line_b").mkdir()
    win.open_folder(str(tmp_path / "line_b"))
    qtbot.waitUntil(lambda: win.review._clear_at is not None, timeout=5000)   # the clear waits behind D and F
    assert win.review._deferred   # the read is still on its way
    said.clear()
    win.review._slow_keys.start()   # the line the slow-keys timer says, said again with the clear queued
    qtbot.waitUntil(lambda: any("wait for image" in text or "waits for image" in text for text in said), timeout=2000)
    line = next(text for text in said if "for image" in text)
    assert line.startswith(f"2 keys wait for image {ids[1]} to be read"), line
    qtbot.waitUntil(lambda: win.review.image_id is None and not win.review._deferred, timeout=10000)
    wait_saved(win, qtbot)
    assert real(ids[1]).label.anomaly_verdict == "anomalous" and real(ids[1]).item.flagged


NAV_KEYS = ((Qt.Key.Key_N, Qt.KeyboardModifier.NoModifier), (Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier),
            (Qt.Key.Key_J, Qt.KeyboardModifier.NoModifier), (Qt.Key.Key_K, Qt.KeyboardModifier.NoModifier))


def _said_by_nav_keys(win, qtbot) -> list[str]:
    said: list[str] = []
    win.queue.message.connect(said.append)
    qtbot.waitUntil(win.isActiveWindow)  # the keys are the window's shortcuts
    for key, modifier in NAV_KEYS:
        before = len(said)
        press(qtbot, win, key, modifier)
        assert len(said) == before + 1, f"{key} said nothing"
    return said


@pytest.mark.parametrize("view, why", [("no folder", "no folder is open"), ("empty", "the folder is empty"),
                                       ("search", "a search or a filter hides the folder's images")])
def test_n_j_and_k_in_a_view_listing_no_image_say_why(service, tmp_path, qtbot, view, why):
    """A session-49 audit: with no folder open, an empty folder, or a search matching nothing, N, Shift+N, J and K did
    nothing and said nothing (P explained). Each says why there is no image to move to."""
    from tests.gui.conftest import build_window, open_window
    from tests.gui.fixtures import make_folder
    if view == "no folder":
        win = build_window(service, qtbot)
    elif view == "empty":
        (tmp_path / "line_b").mkdir()
        win = build_window(service, qtbot)
        win.open_folder(str(tmp_path / "line_b"))
        wait_listed(win, qtbot)
        qtbot.waitUntil(win.queue.counts_known)
    else:
        win = open_window(service, qtbot, make_folder(tmp_path / "parts", n=3))
        win.queue_panel.search.setText("no-such-part")
        qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 0 and not win.queue.reading())
    try:
        assert all(why in text for text in _said_by_nav_keys(win, qtbot))
    finally:
        win.close()


def test_an_empty_folder_indexed_in_the_background_is_empty_not_still_indexed(service, tmp_path, qtbot):
    """The review of a session-49 fix: the empty line_b opened as the menu and the start-up open a folder (indexed in
    the background), N pressed before its list came: once indexing was done, J and K still said "the folder is still
    being indexed" (waited for until a view listed an image), and the N kept was made when line_c opened next, which
    showed its second image instead of its first. Now the folder is said to be empty and N's move goes nowhere."""
    from app.services.review_types import LabelState, QueueFilter
    from tests.gui.conftest import build_window
    from tests.gui.fixtures import make_folder
    line_c = service.open_folder(make_folder(tmp_path / "line_c", n=3))
    first = service.queue(QueueFilter(folder_id=line_c.id))[0].image_id
    service.save_label(first, LabelState(review_state="accepted"))   # N there would move past it
    win = build_window(service, qtbot)
    qtbot.waitUntil(win.isActiveWindow)  # the keys are the window's shortcuts
    said: list[str] = []
    win.queue.message.connect(said.append)
    (tmp_path / "line_b").mkdir()
    try:
        with qtbot.waitSignal(win.folder_ctl.opened, timeout=10000):   # its last: an empty folder has no first page
            win.open_folder(str(tmp_path / "line_b"), wait=False)
            press(qtbot, win, Qt.Key.Key_N)
            assert "still being indexed" in said[-1]
        wait_listed(win, qtbot)
        qtbot.waitUntil(lambda: "the folder is empty" in said[-1])   # N's kept move: nothing to move to
        for key in (Qt.Key.Key_J, Qt.Key.Key_K):
            press(qtbot, win, key)
            assert "the folder is empty" in said[-1]
        win.open_folder(str(tmp_path / "line_c"))
        wait_shown(win, qtbot)
        assert win.review.image_id == first
    finally:
        win.close()
