"""The open folder is followed (app/gui/folder_follow.py), driven with the REAL worker process and tiny
models: an image file a line writes into the shown folder reaches the queue and is pre-labelled without
re-opening anything, a deleted file leaves the queue, the image under review stays where it is, and an
unchanged folder is not written to."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("app.services.prelabel")

from app.commands.gui import build_window  # noqa: E402
from app.gui.settings_store import StationSettings  # noqa: E402
from app.services.station import open_station  # noqa: E402
from tests.gui.conftest import wait_shown  # noqa: E402
from tests.worker.helpers import good_images  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(sys.platform == "win32", reason="the worker is a POSIX process here")]
WORKER_MS = 240_000  # a worker's first batch imports torch on a loaded 2-core machine


@pytest.fixture
def station(tmp_path, monkeypatch):
    import torch

    from tests.tiny_models import save_tiny_models
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    models = save_tiny_models(tmp_path / "models")
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for family, path in models.items():
        card = json.loads((path / "card.json").read_text())
        db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    yield db, url
    db.close()


def _open_line(db, url: str, tmp_path, qtbot, images: int):
    """A window on a folder ``line`` of ``images`` pictures (the real worker pre-labels it), its first image shown."""
    good_images(tmp_path / "line", images)
    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False,
                       worker_args=("--batch-size", "2"))
    qtbot.addWidget(win)
    win.show()
    win.open_folder(str(tmp_path / "line"))
    wait_shown(win, qtbot)
    return win


def _labelled_on_screen(db, url: str, tmp_path, qtbot, monkeypatch, images: int):
    """``_open_line`` followed every 0.3 s, its first image labelled "dark" and saved: (window, image id, name)."""
    monkeypatch.setattr("app.gui.folder_follow.FOLLOW_MS", 300)
    win = _open_line(db, url, tmp_path, qtbot, images)
    shown = win.review.image_id
    qtbot.waitUntil(lambda: win.viewer._rgb is not None, timeout=10_000)
    win.review.set_class("dark")
    qtbot.waitUntil(lambda: db.labels.current(shown) is not None, timeout=10_000)
    return win, shown, db.images.get(shown).rel_path


def _predicted(db, folder_id: int) -> set[str]:
    from database.dto import ImageQuery
    return {im.rel_path for im in db.images.query(ImageQuery(folder_id=folder_id))
            if not im.missing and db.predictions.for_image(im.id)}


def test_files_a_line_writes_reach_the_queue_and_are_prelabelled_without_reopening(station, tmp_path, qtbot,
                                                                                   monkeypatch):
    monkeypatch.setattr("app.gui.folder_follow.FOLLOW_MS", 300)
    db, url = station
    win = _open_line(db, url, tmp_path, qtbot, 4)
    try:
        folder_id = win.current_folder
        qtbot.waitUntil(lambda: len(_predicted(db, folder_id)) == 4, timeout=WORKER_MS)  # the automatic job
        win.queue.step(1)
        wait_shown(win, qtbot)
        shown = win.review.image_id
        indexed_at = db.folders.get(folder_id).indexed_at
        qtbot.wait(1200)  # a few re-scans of an unchanged folder: nothing written
        assert db.folders.get(folder_id).indexed_at == indexed_at

        # the line writes two parts and one image is taken away (not the one under review)
        new = good_images(tmp_path / "incoming", 2, seed=7)
        for p in new:
            shutil.move(str(p), tmp_path / "line" / f"new_{p.name}")
        (tmp_path / "line" / "img_003.png").unlink()
        qtbot.waitUntil(lambda: win.queue.counts_known() and sum(win.queue._counts.values()) == 5, timeout=20_000)
        qtbot.waitUntil(lambda: {"new_img_000.png", "new_img_001.png"} <= _predicted(db, folder_id),
                        timeout=WORKER_MS)
        qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 5, timeout=20_000)
        names = {win.gallery_model.item_at(r).rel_path for r in range(win.gallery_model.rowCount())}
        assert names == {"img_000.png", "img_001.png", "img_002.png", "new_img_000.png", "new_img_001.png"}
        assert win.review.image_id == shown  # the inspector was not moved

        said = []
        win.statusBar().messageChanged.connect(said.append)
        shutil.rmtree(tmp_path / "line")  # an unplugged drive: said once, nothing marked gone
        qtbot.waitUntil(lambda: any("cannot be followed" in m for m in said), timeout=20_000)
        assert "folder not found" in next(m for m in said if "cannot be followed" in m)
        assert win.gallery_model.rowCount() == 5
    finally:
        win.close()


def test_a_file_moved_or_renamed_under_review_keeps_its_label_and_the_panel_names_its_new_path(
        station, tmp_path, qtbot, monkeypatch):
    """Seen under Xvfb: a labelled image's file moved into a sub-folder had become a missing row beside a new,
    unreviewed one (the label gone from the queue); now the row follows the bytes, the counts stay, and the
    panel of the image on screen names the file where it now is."""
    db, url = station
    win, shown, name = _labelled_on_screen(db, url, tmp_path, qtbot, monkeypatch, 3)
    try:
        (tmp_path / "line" / "lot2").mkdir()
        shutil.move(str(tmp_path / "line" / name), tmp_path / "line" / "lot2" / f"renamed_{name}")
        qtbot.waitUntil(lambda: f"lot2/renamed_{name}" in win.label_panel.title.text(), timeout=20_000)
        assert win.review.image_id == shown and win.review.detail.label.class_name == "dark"
        qtbot.waitUntil(lambda: win.gallery_model.row_of(shown) is not None
                        and win.gallery_model.item_at(win.gallery_model.row_of(shown)).rel_path == f"lot2/renamed_{name}",
                        timeout=20_000)
        assert win.gallery_model.rowCount() == 3
        qtbot.waitUntil(lambda: win.queue.counts_known() and win.queue._counts.get("corrected") == 1
                        and sum(win.queue._counts.values()) == 3, timeout=20_000)
    finally:
        win.close()


def test_the_open_folder_renamed_on_disk_is_followed_with_its_labels(station, tmp_path, qtbot, monkeypatch):
    """A session-46 probe: the open folder renamed on disk (``mv line line_done``) made the window say "The open
    folder cannot be followed: folder not found" every few seconds. It follows the folder to its new name: the
    Folders panel names the new path, the labels stay, the image on screen is read from there."""
    db, url = station
    win, shown, name = _labelled_on_screen(db, url, tmp_path, qtbot, monkeypatch, 3)
    try:
        folder_id = win.current_folder
        (tmp_path / "line").rename(tmp_path / "line_done")
        qtbot.waitUntil(lambda: "renamed on disk" in win.statusBar().currentMessage(), timeout=20_000)
        assert db.folders.get(folder_id).root_path == str(tmp_path / "line_done")
        qtbot.waitUntil(lambda: win.folders.list.count() == 1 and win.folders.list.item(0).toolTip()
                        == str(tmp_path / "line_done"), timeout=20_000)
        qtbot.waitUntil(lambda: win.review.detail is not None
                        and win.review.detail.item.path == str(tmp_path / "line_done" / name), timeout=20_000)
        assert win.review.image_id == shown and win.review.detail.label.class_name == "dark"
        assert "cannot be followed" not in win.statusBar().currentMessage()
    finally:
        win.close()


def test_a_labelled_file_replaced_under_review_shows_its_new_pixels_unreviewed(station, tmp_path, qtbot, monkeypatch):
    """A line that writes every part to the same name: the window kept the earlier part's pixels, thumbnail and
    label on screen. The new bytes are shown, the label went into the history (the panel says unreviewed)."""
    import cv2
    import numpy as np

    db, url = station
    win, shown, name = _labelled_on_screen(db, url, tmp_path, qtbot, monkeypatch, 2)
    try:
        assert cv2.imwrite(str(tmp_path / "line" / name), np.full((40, 24), 200, np.uint8))  # the next part
        qtbot.waitUntil(lambda: win.viewer._rgb is not None and win.viewer._rgb.shape[:2] == (40, 24), timeout=20_000)
        qtbot.waitUntil(lambda: ">UNREVIEWED<" in win.label_panel.state.text(), timeout=20_000)
        assert win.review.image_id == shown and win.review.label.class_name is None and win.review.label.revision == 2
        assert db.labels.history(shown)[0].class_name == "dark"
    finally:
        win.close()


def test_a_new_subfolder_the_line_starts_writing_is_named_in_the_routing_line(station, tmp_path, qtbot, monkeypatch):
    """Seen under Xvfb: a bottles/ subfolder arrived in a routed folder; every family ran on it (no rule matches) and
    the Jobs dock's routing line still named only the routed subfolders."""
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule

    monkeypatch.setattr("app.gui.folder_follow.FOLLOW_MS", 300)
    db, url = station
    save_routing(db, Routing((RoutingRule("old/*", ("classifier",)),)))
    good_images(tmp_path / "line" / "old", 2)
    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False, worker_args=("--batch-size", "2"))
    qtbot.addWidget(win)
    win.show()
    try:
        win.open_folder(str(tmp_path / "line"))
        wait_shown(win, qtbot)
        line = win.routing_notice.notice.text
        qtbot.waitUntil(lambda: "old/ → classifier" in line.text(), timeout=20_000)
        good_images(tmp_path / "line" / "cam2", 1, seed=5)
        qtbot.waitUntil(lambda: "cam2/ → classifier, segmenter, anomaly" in line.text(), timeout=20_000)
    finally:
        win.close()
