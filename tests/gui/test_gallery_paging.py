"""The gallery reads the queue in pages: an exact row count, pages read when they come on
screen, a bounded number held, and a refresh that never reads the whole queue."""
from __future__ import annotations

import pytest

from app.gui.gallery_model import GalleryModel
from app.gui.gallery_view import GalleryView
from app.gui.queue_controller import BOUND_PAGES, RECOUNT_MS, QueueController
from app.gui.thumbnails import ThumbnailCache
from app.services.review_types import QueueFilter
from tests.gui.fixtures import make_folder

RECOUNT_WAIT_MS = RECOUNT_MS + 5000  # the check after saves comes within RECOUNT_MS


def view_shown(queue, qtbot) -> None:
    """A view asked for is read on the view thread (the window never waits on the queue query): wait for it."""
    qtbot.waitUntil(lambda: not queue.reading(), timeout=5000)


@pytest.fixture
def paged(qtbot, service, tmp_path):
    info = service.open_folder(make_folder(tmp_path / "many", n=40, size=24))
    cache = ThumbnailCache(size=48)
    model = GalleryModel(page_size=4, max_pages=3)
    view = GalleryView(model, cache)
    qtbot.addWidget(view)
    view.resize(200, 150)
    view.show()
    queue = QueueController(service, model, view)
    yield info, model, view, queue
    queue.close()
    cache.shutdown()


def test_first_page_at_once_then_the_exact_count_and_pages_as_they_come_on_screen(qtbot, service, paged,
                                                                                   monkeypatch):
    info, model, view, queue = paged
    monkeypatch.setattr(service, "queue", lambda *a, **k: pytest.fail("the gallery read the whole queue"))
    import time
    real_count = service.queue_count

    def slow_exact(flt, at_most=None):
        if at_most is None:
            time.sleep(0.5)  # the exact count comes after the bounded one
        return real_count(flt, at_most=at_most) if at_most is not None else real_count(flt)
    monkeypatch.setattr(service, "queue_count", slow_exact)
    queue.set_filter(QueueFilter(folder_id=info.id, sort="name", descending=True))
    view_shown(queue, qtbot)
    assert model.rowCount() == 4 * (1 + BOUND_PAGES) and not queue.count_is_exact()  # counted no further
    qtbot.waitUntil(queue.count_is_exact, timeout=5000)  # the exact count, from the counter thread
    assert model.rowCount() == 40
    assert model.loaded_pages() == [0] and model.item_at(0).name == "part_39.png"
    assert model.item_at(39) is None  # not read yet
    view.scrollToBottom()
    qtbot.waitUntil(lambda: model.item_at(39) is not None, timeout=5000)
    assert model.item_at(39).name == "part_00.png"
    assert len(model.loaded_pages()) <= 3  # the oldest pages were let go


def test_stepping_past_a_page_reads_the_next_one(qtbot, service, paged):
    info, model, view, queue = paged
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    want = [it.image_id for it in service.queue(QueueFilter(folder_id=info.id))]
    seen = [queue.current_id()]
    for _ in range(9):
        assert queue.step(1)
        seen.append(queue.current_id())
    assert seen == want[:10]


def test_a_save_moves_the_counts_without_waiting_for_a_recount(qtbot, service, paged, monkeypatch):
    """The counts change in the same turn as the row, by the save's own move, while every
    recount is held back; the recount that follows agrees with them."""
    import threading

    from app.services.review_types import LabelState
    info, model, view, queue = paged
    got = []
    queue.counts_changed.connect(got.append)
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    qtbot.waitUntil(queue.counts_known, timeout=5000)  # they follow from a helper thread
    real, gate, asked = service.counts, threading.Event(), []

    def held(folder_id=None):
        asked.append(folder_id)
        gate.wait(10)  # no recount finishes until the assertions below are done
        return real(folder_id)
    monkeypatch.setattr(service, "counts", held)
    queue._recount.setInterval(0)  # the check is asked for at the first turn of the event loop
    ids = [model.item_at(r).image_id for r in range(3)]
    for image_id, state in zip(ids + ids[:1], ("accepted", "rejected", "corrected", "rejected")):
        saved = service.save(image_id, LabelState(review_state=state))
        queue.update_item(service.item(image_id))
        queue.apply_move(saved.moved)  # as ReviewController._after_save: no event loop turn between
        assert model.item_at(model.row_of(image_id)).review_state == state
    assert got[-1] == {"unreviewed": 37, "accepted": 0, "corrected": 1, "rejected": 2}
    qtbot.waitUntil(lambda: bool(asked), timeout=5000)  # the check was asked for, and is held
    assert queue._counts == got[-1]
    gate.set()
    _delivered(queue)
    assert queue._counts == real(info.id) == got[-1]


def test_a_recount_wins_over_the_moved_counts_when_read_after_the_save(qtbot, service, paged, monkeypatch):
    """Another station's save reaches this one's counts only by the recount: once it is read
    after this station's saves, it is shown over the moved counts (they converge)."""
    from app.services.review_types import LabelState
    info, model, view, queue = paged
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    qtbot.waitUntil(queue.counts_known, timeout=5000)
    queue._recount.setInterval(50)  # the test waits for the check, not for its pace
    mine, theirs = model.item_at(0).image_id, model.item_at(1).image_id
    service.save_label(theirs, LabelState(review_state="rejected"))  # not through this station's queue
    saved = service.save(mine, LabelState(review_state="accepted"))
    queue.apply_move(saved.moved)
    assert queue._counts["rejected"] == 0 and queue._counts["accepted"] == 1  # only its own move so far
    qtbot.waitUntil(lambda: queue._counts.get("rejected") == 1, timeout=RECOUNT_WAIT_MS)
    assert queue._counts == service.counts(info.id)


def test_a_folder_change_counts_the_states_off_the_gui_thread_and_drops_stale_counts(qtbot, service, paged,
                                                                                     tmp_path, monkeypatch):
    import threading
    info, model, view, queue = paged
    other = service.open_folder(make_folder(tmp_path / "few", n=3, size=24))
    real, threads = service.counts, []

    def counting(folder_id=None):
        threads.append(threading.current_thread())
        return real(folder_id)
    monkeypatch.setattr(service, "counts", counting)
    got = []
    queue.counts_changed.connect(got.append)
    queue.set_filter(QueueFilter(folder_id=info.id))
    queue.set_filter(QueueFilter(folder_id=other.id))  # before the first folder's counts came
    view_shown(queue, qtbot)
    qtbot.waitUntil(lambda: queue.counts_known() and got[-1].get("unreviewed") == 3, timeout=5000)
    _delivered(queue)  # any late answer for the first folder too
    assert threads and threading.main_thread() not in threads
    assert all(sum(c.values()) in (0, 3) for c in got)  # never the first folder's 40 under the second
    assert sum(got[-1].values()) == 3


def test_counts_read_before_a_save_are_counted_again(qtbot, service, paged, monkeypatch):
    from app.services.review_types import LabelState
    info, model, view, queue = paged
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    qtbot.waitUntil(queue.counts_known, timeout=5000)
    real, gate = service.counts, __import__("threading").Event()

    def before_the_save(folder_id=None):
        counts = real(folder_id)
        gate.wait(5)  # the save commits while these counts are on their way
        return counts
    monkeypatch.setattr(service, "counts", before_the_save)
    queue._recount.setInterval(50)
    queue.update_counts()
    first = queue.current_id()
    saved = service.save(first, LabelState(review_state="rejected"))
    queue.update_item(service.item(first))
    queue.apply_move(saved.moved)
    monkeypatch.setattr(service, "counts", real)
    gate.set()
    _delivered(queue)  # the stale answer: dropped (the moved counts stay), and counted again
    assert queue._counts["rejected"] == 1 and queue._counts["unreviewed"] == 39
    qtbot.waitUntil(lambda: not queue._recount.isActive(), timeout=RECOUNT_WAIT_MS)
    _delivered(queue)
    assert queue._counts["rejected"] == 1 and queue._counts["unreviewed"] == 39


def _delivered(queue) -> None:
    """The state counts asked for so far are read and their answers handled."""
    from PySide6.QtCore import QCoreApplication
    assert queue._tally.wait_idle(5)
    QCoreApplication.processEvents()


def test_a_refresh_rereads_the_pages_on_screen_and_drops_the_others(qtbot, service, paged, monkeypatch):
    from app.services.review_types import LabelState
    info, model, view, queue = paged
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    qtbot.waitUntil(queue.count_is_exact, timeout=5000)  # the scroll bar's end is the queue's
    view.scrollToBottom()
    qtbot.waitUntil(lambda: model.item_at(39) is not None, timeout=5000)
    bottom = model.item_at(39).image_id
    service.save_label(bottom, LabelState(review_state="rejected"))  # e.g. another station's save
    reads = []
    real = service.queue_page
    monkeypatch.setattr(service, "queue_page", lambda *a, **k: reads.append(k) or real(*a, **k))
    queue.refresh()
    view_shown(queue, qtbot)
    assert model.item_at(39).review_state == "rejected"  # the page on screen was read again
    assert len(reads) <= 4 and model.rowCount() == 40
    assert {0, 9} <= set(model.loaded_pages())  # the first page and the one on screen


def _review_all_but(service, info, keep: set[int]) -> list[int]:
    """Accept every image of the folder except the rows ``keep`` (by name); returns the ids by name."""
    from app.services.review_types import LabelState
    want = [it.image_id for it in service.queue(QueueFilter(folder_id=info.id))]
    for row, image_id in enumerate(want):
        if row not in keep:
            service.save_label(image_id, LabelState(review_state="accepted"))
    return want


def test_n_finds_an_unreviewed_image_on_a_page_not_read_yet(qtbot, service, paged, monkeypatch):
    info, model, _view, queue = paged
    want = _review_all_but(service, info, {1, 30})
    said = []
    queue.message.connect(said.append)
    monkeypatch.setattr(service, "queue", lambda *a, **k: pytest.fail("N read the whole queue"))
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    assert model.item_at(30) is None  # not read: the answer has to come from the database
    queue.next_unreviewed(1)
    assert queue.current_id() == want[1]  # within the rows read: at once
    queue.next_unreviewed(1)
    qtbot.waitUntil(lambda: queue.current_id() == want[30], timeout=5000)
    assert model.row_of(want[30]) == 30
    assert not any("No unreviewed" in m for m in said), said
    queue.next_unreviewed(1)  # wraps to the top
    qtbot.waitUntil(lambda: queue.current_id() == want[1], timeout=5000)
    queue.next_unreviewed(-1)  # and back, past the end
    qtbot.waitUntil(lambda: queue.current_id() == want[30], timeout=5000)


def test_n_presses_while_looking_make_one_search_and_none_left_is_the_databases_word(
        qtbot, service, paged, monkeypatch):
    info, _model, _view, queue = paged
    want = _review_all_but(service, info, {25})
    said = []
    queue.message.connect(said.append)
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    calls = []
    real = service.next_unreviewed
    monkeypatch.setattr(service, "next_unreviewed", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        queue.next_unreviewed(1)
    qtbot.waitUntil(lambda: queue.current_id() == want[25], timeout=5000)
    assert len(calls) == 1
    from app.services.review_types import LabelState
    service.save_label(want[25], LabelState(review_state="accepted"))
    queue.update_item(service.item(want[25]))
    queue.next_unreviewed(1)
    qtbot.waitUntil(lambda: len(calls) == 2 and not queue._seeking, timeout=5000)
    assert said[-1] == "No unreviewed image left in this view."
    assert queue.current_id() == want[25]


def test_n_pressed_while_indexing_goes_to_the_first_unreviewed_image_beyond_the_first_page(
        qtbot, service, paged):
    info, _model, _view, queue = paged
    want = _review_all_but(service, info, {22})
    queue.await_items()
    queue.next_unreviewed(1)  # nothing listed yet: kept
    queue.set_filter(QueueFilter(folder_id=info.id))
    view_shown(queue, qtbot)
    qtbot.waitUntil(lambda: queue.current_id() == want[22], timeout=5000)


def test_n_after_a_save_goes_on_from_where_the_row_sits_in_a_by_state_order(qtbot, service, paged):
    """By state, a row just accepted still sits among the unreviewed ones (until the next
    refresh): N continues below it, not from the accepted ones' stretch (which would wrap to
    the top)."""
    from app.services.review_types import LabelState
    info, model, view, queue = paged
    view.resize(40, 40)  # about one thumbnail on screen: the pages below stay unread
    want = _review_all_but(service, info, set(range(6)))
    queue.set_filter(QueueFilter(folder_id=info.id, sort="state"))
    view_shown(queue, qtbot)
    assert queue.select(want[3])
    service.save_label(want[3], LabelState(review_state="accepted"))
    queue.update_item(service.item(want[3]))
    qtbot.wait(50)
    assert model.item_at(4) is None, model.loaded_pages()
    queue.next_unreviewed(1)
    qtbot.waitUntil(lambda: queue.current_id() != want[3], timeout=5000)
    assert queue.current_id() == want[4]


def test_a_cell_says_out_of_domain_where_that_familys_answer_would_stand_and_keeps_the_others():
    """Seen under Xvfb (session 43): once the active classifier had no answer on the tiles, the segmenter's "out of
    domain" took the anomaly score's corner and every tile's in-domain score vanished from the gallery."""
    from app.gui.gallery_view import ood_chip_place
    from app.services.review_types import QueueItem

    def cell(*outside: str, label_class: str | None = None) -> QueueItem:
        return QueueItem(image_id=1, folder_id=1, rel_path="t.png", path="/t.png", anomaly_score=0.16,
                         out_of_domain=outside, label_class=label_class)
    assert ood_chip_place(cell("segmenter")) == "tl"                  # where the target count would be
    assert ood_chip_place(cell("anomaly", "segmenter")) == "tr"       # where the score would be
    assert ood_chip_place(cell("classifier", "segmenter")) == "bl"    # where the class would be
    assert ood_chip_place(cell("classifier", label_class="crack")) is None  # the inspector's class stands there
    assert ood_chip_place(cell()) is None


def test_a_new_view_is_read_off_the_gui_thread(qtbot, service, paged, monkeypatch):
    """Found by a session-45 probe (storage slowed to 1.5 s a statement): every filter, order, search, folder and P
    held the window for the whole count and first page, 24 s for a search, nothing on screen meanwhile. The view is
    read on its own thread and shown when it comes; the newest asked wins."""
    import threading
    import time
    info, model, view, queue = paged
    real, on_gui = service.queue_count, []

    def slow(flt, at_most=None):
        on_gui.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.5)
        return real(flt, at_most=at_most) if at_most is not None else real(flt)
    monkeypatch.setattr(service, "queue_count", slow)
    started = time.monotonic()
    queue.set_filter(QueueFilter(folder_id=info.id, sort="name"))
    queue.set_filter(QueueFilter(folder_id=info.id, sort="name", descending=True))  # typed on: the newest wins
    assert time.monotonic() - started < 0.4 and queue.reading()
    view_shown(queue, qtbot)
    qtbot.waitUntil(queue.count_is_exact, timeout=5000)
    assert model.item_at(0).name == "part_39.png" and not any(on_gui)


def test_a_thumbnail_is_the_one_of_the_bytes_the_image_holds_now(qtbot, tmp_path):
    """Session-46 probes: the thumbnail cache was keyed by image id alone, so a file replaced while another folder
    was open kept its old thumbnail beside the viewer's new pixels (until a restart), and a decode of the old bytes
    answering after an invalidate was kept for good."""
    import cv2
    import numpy as np

    path = tmp_path / "cam.png"
    cv2.imwrite(str(path), np.zeros((24, 24), np.uint8))
    cache = ThumbnailCache(size=24, store=False)
    try:
        assert cache.pixmap(7, str(path), "old-bytes") is None
        qtbot.waitUntil(lambda: cache.pixmap(7, str(path), "old-bytes") is not None, timeout=5000)
        assert cache.pixmap(7, str(path), "old-bytes").toImage().pixelColor(5, 5).value() == 0
        cv2.imwrite(str(path), np.full((24, 24), 255, np.uint8))   # replaced and indexed again: a new hash
        assert cache.pixmap(7, str(path), "new-bytes") is None       # not the old picture: decoded again
        qtbot.waitUntil(lambda: cache.pixmap(7, str(path), "new-bytes") is not None, timeout=5000)
        assert cache.pixmap(7, str(path), "new-bytes").toImage().pixelColor(5, 5).value() == 255
    finally:
        cache.shutdown()


def test_an_empty_folder_read_again_raises_nothing_and_its_counts_come(qtbot, service, tmp_path):
    """A session-49 audit: an empty folder on screen (a line that has written nothing yet), then another station's save
    or Pre-label folder read the queue again: KeyError 0 in the gallery model (the view "unchanged" at 0 rows, its
    empty first page never held), and the counts refresh after it was skipped."""
    (tmp_path / "line_out").mkdir()
    info = service.open_folder(tmp_path / "line_out")
    model, cache = GalleryModel(page_size=4), ThumbnailCache(size=48)
    view = GalleryView(model, cache)
    qtbot.addWidget(view)
    queue = QueueController(service, model, view)
    counted: list[dict] = []
    queue.counts_changed.connect(counted.append)
    try:
        queue.set_filter(QueueFilter(folder_id=info.id))  # the first read of a fresh window
        view_shown(queue, qtbot)
        counted.clear()
        queue.refresh_in_background()                      # what the label watch does after another station's save
        qtbot.waitUntil(lambda: bool(counted), timeout=5000)
        assert model.rowCount() == 0
    finally:
        queue.close()
        cache.shutdown()
