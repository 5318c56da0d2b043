"""Indexing a folder into the database: formats, incremental re-index, missing and changed files."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import app.services.file_scan as file_scan
from app.services.indexing import FolderIndexError, index_folder
from database.dto import ImageQuery
from database.engine import open_database


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    yield database
    database.close()


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "gray.png"), rng.integers(0, 255, (20, 30), dtype=np.uint8))
    cv2.imwrite(str(root / "colour.jpg"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "deep.bmp"), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "wide.tiff"), rng.integers(0, 65535, (16, 16), dtype=np.uint16))
    (root / "readme.txt").write_text("not an image")
    return root


def test_index_records_every_image_with_hash_and_size(db, tmp_path: Path) -> None:
    root = _folder(tmp_path / "parts")
    report = index_folder(db, root)
    assert report.files == 4 and len(report.added) == 4
    rows = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=report.folder_id))}
    assert set(rows) == {"gray.png", "colour.jpg", "sub/deep.bmp", "sub/wide.tiff"}
    for rel, im in rows.items():
        assert im.size_bytes == (root / rel).stat().st_size
        assert im.content_hash == file_scan.hash_file(root / rel)


def test_a_webp_image_is_indexed_and_read(db, tmp_path: Path) -> None:
    """Found by a session-45 probe: a WebP image (which the reader decodes) was passed over without a word."""
    from inference.imageio import read_raw
    root = tmp_path / "web"
    root.mkdir()
    cv2.imwrite(str(root / "part.webp"), np.full((40, 64, 3), 90, np.uint8))
    report = index_folder(db, root)
    assert report.files == 1 and not report.skipped
    assert read_raw(root / "part.webp").shape == (40, 64, 3)


def test_reindex_hashes_only_new_or_changed_files(db, tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    hashed: list[str] = []
    real = file_scan.hash_file
    monkeypatch.setattr(file_scan, "hash_file", lambda p: hashed.append(Path(p).name) or real(p))

    again = index_folder(db, root)
    assert hashed == [] and again.added == () and again.unchanged == 4 and again.folder_id == first.folder_id

    cv2.imwrite(str(root / "new.png"), np.zeros((5, 5), np.uint8))
    (root / "gray.png").write_bytes((root / "gray.png").read_bytes() + b"\0")  # content changed
    st = (root / "gray.png").stat()
    os.utime(root / "gray.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (root / "sub" / "deep.bmp").unlink()
    third = index_folder(db, root)
    assert sorted(hashed) == ["gray.png", "new.png"]
    assert len(third.added) == 1 and len(third.changed) == 1 and third.missing == 1
    missing = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert [im.rel_path for im in missing if im.missing] == ["sub/deep.bmp"]


def test_bad_folders_are_refused_with_a_reason(db, tmp_path: Path) -> None:
    with pytest.raises(FolderIndexError, match="not found"):
        index_folder(db, tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(FolderIndexError, match="not a folder"):
        index_folder(db, tmp_path / "file.png")


def test_a_large_new_folder_shows_its_first_page_while_the_rest_indexes(db, tmp_path: Path) -> None:
    root = tmp_path / "line"
    root.mkdir()
    for i in range(12):
        cv2.imwrite(str(root / f"p{i:02d}.png"), np.full((4, 4), i, np.uint8))
    seen = []

    def first(folder_id: int) -> None:  # called while the indexer still hashes the rest
        seen.append(sorted(im.rel_path for im in db.images.query(ImageQuery(folder_id=folder_id))))
    report = index_folder(db, root, on_first=first, first_batch=5)
    assert seen == [[f"p{i:02d}.png" for i in range(5)]]  # the first page by name
    assert len(report.added) == 12 and report.unchanged == 0
    assert index_folder(db, root, on_first=first, first_batch=5).unchanged == 12 and len(seen) == 1


def test_reopening_an_unchanged_folder_only_stats_files(db, tmp_path: Path, monkeypatch) -> None:
    """Issue 22: unchanged files are stat'ed and counted; no image row is read one by one or
    written, and nothing is hashed (a million-file folder re-opens at the speed of its stats)."""
    from sqlalchemy import event
    root = _folder(tmp_path / "parts")
    index_folder(db, root)
    monkeypatch.setattr(file_scan, "hash_file", lambda p: pytest.fail(f"hashed {p}"))
    statements: list[str] = []
    listen = lambda conn, cursor, statement, params, context, many: statements.append(statement)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        again = index_folder(db, root)
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert again.unchanged == 4 and again.added == again.changed == () and again.missing == 0
    writes = [s for s in statements if s.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert all(s.lstrip().upper().startswith("UPDATE FOLDERS") for s in writes), writes
    reads = [s for s in statements if "FROM images" in s]
    assert len(reads) == 1, reads  # what the disk is compared with, read once


def test_chunked_writes_and_a_file_back_from_missing(db, tmp_path: Path, monkeypatch) -> None:
    import app.services.indexing as indexing
    monkeypatch.setattr(indexing, "CHUNK", 2)  # several transactions for a handful of files
    root = tmp_path / "line"
    root.mkdir()
    for i in range(7):
        cv2.imwrite(str(root / f"p{i}.png"), np.full((4, 4), i, np.uint8))
    first = index_folder(db, root, on_first=lambda _folder_id: None, first_batch=3)
    assert len(first.added) == 7
    kept = (root / "p4.png").read_bytes()
    st = (root / "p4.png").stat()
    (root / "p4.png").unlink()
    assert index_folder(db, root).missing == 1
    (root / "p4.png").write_bytes(kept)
    os.utime(root / "p4.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    back = index_folder(db, root)
    assert back.added == back.changed == () and back.missing == 0 and back.unchanged == 6
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert sorted(im.rel_path for im in rows) == [f"p{i}.png" for i in range(7)]
    assert not any(im.missing for im in rows) and all(im.content_hash for im in rows)


def test_a_rescan_of_an_open_folder_says_what_changed_and_writes_nothing_when_nothing_did(db, tmp_path: Path) -> None:
    """``ReviewService.rescan_folder`` (the window follows the open folder with it every few seconds)."""
    import shutil

    from app.services.review import ReviewError, ReviewService, ReviewSettings
    root = _folder(tmp_path / "parts")
    folder_id = index_folder(db, root).folder_id
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    indexed_at = db.folders.get(folder_id).indexed_at
    same = svc.rescan_folder(folder_id)
    assert not same.any and same.summary() == "parts: unchanged"
    assert db.folders.get(folder_id).indexed_at == indexed_at  # an unchanged folder is not written to

    cv2.imwrite(str(root / "new.png"), np.full((9, 9), 7, np.uint8))
    shutil.move(str(root / "gray.png"), tmp_path / "gray.png")
    change = svc.rescan_folder(folder_id)
    assert (change.added, change.changed, change.gone, change.restored) == (1, 0, 1, 0)
    assert change.summary() == "parts: 1 new, 1 gone image files on disk"
    shutil.move(str(tmp_path / "gray.png"), root / "gray.png")
    back = svc.rescan_folder(folder_id)
    assert (back.added, back.gone, back.restored) == (0, 0, 1)
    rows = {im.rel_path: im.missing for im in db.images.query(ImageQuery(folder_id=folder_id, include_missing=True))}
    assert rows["gray.png"] is False and rows["new.png"] is False

    shutil.rmtree(root)  # an unplugged drive
    with pytest.raises(ReviewError, match="folder not found"):
        svc.rescan_folder(folder_id)


def test_a_gone_file_copied_back_under_a_new_mtime_is_said_back_with_its_label(db, tmp_path: Path) -> None:
    """Seen under Xvfb (session 43): two tiles deleted from a followed folder left the queue ("2 gone"), one of
    them labelled; copied back (``cp`` gives a new mtime) their rows were un-marked missing, but the re-scan
    said nothing had changed, so the window kept showing 158 of 160 images and one correction fewer until
    the folder was opened again. The same bytes back count as back; other bytes back count as changed."""
    from app.services.review import ReviewService, ReviewSettings
    from database.dto import LabelChange
    from database.states import ReviewState
    root = _folder(tmp_path / "parts")
    folder_id = index_folder(db, root).folder_id
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    rows = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=folder_id))}
    db.labels.append(rows["gray.png"], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")
    kept = {name: (root / name).read_bytes() for name in ("gray.png", "colour.jpg")}
    for name in kept:
        (root / name).unlink()
    assert svc.rescan_folder(folder_id).gone == 2

    (root / "gray.png").write_bytes(kept["gray.png"])  # as cp does: same bytes, a new mtime
    (root / "colour.jpg").write_bytes(kept["colour.jpg"][:-40] + bytes(40))  # other bytes under the name
    change = svc.rescan_folder(folder_id)
    assert (change.added, change.changed, change.restored, change.gone) == (0, 1, 1, 0)
    assert change.any and change.summary() == "parts: 1 changed, 1 back image files on disk"
    assert not db.images.get(rows["gray.png"]).missing
    assert db.labels.current(rows["gray.png"]).class_name == "scratch"
    assert db.images.count(ImageQuery(folder_id=folder_id)) == 4


def test_a_moved_or_renamed_file_keeps_its_row_with_labels_history_and_predictions(db, tmp_path: Path) -> None:
    """A file renamed, or moved into a sub-folder, had become a missing row (labels and all) beside a new
    unreviewed one: the inspector's work vanished from the queue. The row now follows the bytes."""
    import shutil

    from app.services.review import ReviewService, ReviewSettings
    from database.dto import LabelChange, PredictionIn
    from database.states import ReviewState

    root = tmp_path / "line"
    (root / "lot7").mkdir(parents=True)
    for name, v in (("a.png", 10), ("b.png", 20), ("c.png", 30), ("twin1.png", 40), ("twin2.png", 40)):
        cv2.imwrite(str(root / name), np.full((6, 6), v, np.uint8))
    first = index_folder(db, root)
    ids = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=first.folder_id))}
    db.labels.append(ids["a.png"], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    db.labels.append(ids["a.png"], LabelChange(ReviewState.CORRECTED, class_name="dent"), "ann")
    mv = db.model_versions.register("classifier", "v1", "/m", activate=True).id
    db.predictions.upsert_many([PredictionIn(ids["a.png"], mv, predicted_class="dent", confidence=0.9)])

    shutil.move(str(root / "a.png"), root / "lot7" / "A-renamed.png")  # moved and renamed
    (root / "twin1.png").unlink()  # two rows with the same bytes: which one a new copy is cannot be told...
    (root / "twin2.png").unlink()
    cv2.imwrite(str(root / "twin3.png"), np.full((6, 6), 40, np.uint8))
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    change = svc.rescan_folder(first.folder_id)
    assert (change.moved, change.added, change.gone) == (1, 1, 2), change
    assert change.summary() == "line: 1 new, 1 moved or renamed, 2 gone image files on disk (moved ones keep their labels)"
    assert change.moved_ids == (ids["a.png"],) and len(change.new_ids) == 1  # the moved one is not pre-labelled again

    moved = db.images.get(ids["a.png"])
    assert moved.rel_path == "lot7/A-renamed.png" and not moved.missing
    assert [r.class_name for r in db.labels.history(moved.id)] == ["crack", "dent"]
    assert db.predictions.get(moved.id, mv).predicted_class == "dent"
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert len(rows) == 6 and {r.rel_path for r in rows if r.missing} == {"twin1.png", "twin2.png"}
    assert db.images.by_path(first.folder_id, "twin3.png").review_state is ReviewState.UNREVIEWED  # ...so a new row
    from database.review_queue import QueueQuery, queue_rows
    by_name = queue_rows(db, QueueQuery(folder_id=first.folder_id, path_contains="renamed"))
    assert [r.image_id for r in by_name] == [moved.id]  # the name search (SQLite's trigram index) follows
    by_confidence = queue_rows(db, QueueQuery(folder_id=first.folder_id, sort="confidence"))
    assert [r.rel_path for r in by_confidence][0] == "lot7/A-renamed.png"  # the prediction's copy of the name too
    from sqlalchemy import select

    from database.models import Prediction
    with db.session() as s:
        assert s.scalar(select(Prediction.name_key).where(Prediction.image_id == moved.id)) == "lot7/a-renamed.png"

    # A file that had gone earlier (its row missing) and comes back under another name gets that row back.
    shutil.move(str(root / "b.png"), tmp_path / "b.png")
    assert index_folder(db, root).missing == 1
    shutil.move(str(tmp_path / "b.png"), root / "lot7" / "b-again.png")
    back = index_folder(db, root)
    assert back.moved == (ids["b.png"],) and back.added == () and back.missing == 0
    assert db.images.get(ids["b.png"]).rel_path == "lot7/b-again.png"


def _one_labelled_frame(db, tmp_path: Path, shape: tuple[int, int]):
    """A folder of one frame of ``shape``, indexed and labelled by ann (a 4 x 4 mask on it): (its id, the review
    service, ``replace(shape, value)``, which writes other pixels there and indexes the folder again)."""
    from app.services.review import ReviewService, ReviewSettings
    from app.services.review_types import LabelState

    root = tmp_path / "line"
    root.mkdir()
    cv2.imwrite(str(root / "cam1.png"), np.full(shape, 10, np.uint8))
    index_folder(db, root)
    image_id = db.images.query()[0].id
    service = ReviewService(db, ReviewSettings(reviewer="ann"))
    mask = np.zeros(shape, bool)
    mask[1:5, 1:5] = True
    service.save(image_id, LabelState(class_name="crack", review_state="corrected", mask=mask), expected_revision=0)

    def replace(new_shape: tuple[int, int], value: int) -> None:
        st = (root / "cam1.png").stat()
        cv2.imwrite(str(root / "cam1.png"), np.full(new_shape, value, np.uint8))
        os.utime(root / "cam1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        index_folder(db, root)
    return image_id, service, replace


def test_an_edit_made_before_its_file_changed_is_refused_with_that_reason(db, tmp_path: Path) -> None:
    """A session-48 probe: an undo written after the file changed on disk and its label was set aside said "the label
    was changed by station at another station or window meanwhile"; no one else had saved it."""
    from app.services.review import LabelConflict
    from app.services.review_types import LabelState

    image_id, service, replace = _one_labelled_frame(db, tmp_path, (6, 6))
    replace((6, 6), 11)
    with pytest.raises(LabelConflict, match="file changed on disk after this edit, so its label was set aside"):
        service.save(image_id, LabelState(class_name="dent", review_state="corrected"), expected_revision=1)


def test_a_set_aside_revision_is_restored_only_onto_a_file_of_its_size(db, tmp_path: Path) -> None:
    """A session-48 probe restored a set-aside revision (ADR 0056: one click away) after its frame was replaced by one
    of another size: the mask was stretched on screen, Accept kept the old size and the export skipped the image."""
    from app.services.review import ReviewError

    image_id, service, replace = _one_labelled_frame(db, tmp_path, (24, 32))
    replace((48, 64), 11)
    with pytest.raises(ReviewError, match=r"its mask is 32 x 24 px, made for the file's earlier content, and the "
                                          r"image is now 64 x 48 px"):
        service.revision_label(image_id, 1)
    replace((24, 32), 12)   # the same size again: it goes back on
    assert service.revision_label(image_id, 1).mask.sum() == 16


def test_a_reviewed_image_whose_file_now_holds_other_bytes_goes_back_to_unreviewed_its_label_in_history(
        db, tmp_path: Path, monkeypatch) -> None:
    """A line writing every part to the same name left the earlier part's label on the new pixels (on screen,
    in exports, in retraining): the label now goes into the history, one click from being restored; a file
    that merely could not be read keeps its label, and an image nobody labelled gets no revision."""
    from app.services.indexing import CONTENT_CHANGED_NOTE, INDEXER
    from database.dto import AnomalyVerdict, LabelChange
    from database.states import ReviewState

    root = tmp_path / "line"
    root.mkdir()
    for name, v in (("cam1.png", 10), ("cam2.png", 20), ("cam3.png", 30)):
        cv2.imwrite(str(root / name), np.full((6, 6), v, np.uint8))
    first = index_folder(db, root)
    ids = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=first.folder_id))}
    db.labels.append(ids["cam1.png"], LabelChange(ReviewState.CORRECTED, class_name="crack", mask_png=b"m",
                                                  anomaly_verdict=AnomalyVerdict.ANOMALOUS), "ann")
    db.labels.append(ids["cam3.png"], LabelChange(ReviewState.ACCEPTED, class_name="ok"), "ann")
    db.images.set_inspector_flag([ids["cam1.png"], ids["cam3.png"]], True, "ann")

    def replace(name: str, value: int) -> None:
        st = (root / name).stat()
        cv2.imwrite(str(root / name), np.full((6, 6), value, np.uint8))
        os.utime(root / name, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    replace("cam1.png", 11)
    replace("cam2.png", 21)
    replace("cam3.png", 31)
    real = file_scan.hash_file
    monkeypatch.setattr(file_scan, "hash_file",
                        lambda p: (_ for _ in ()).throw(OSError("busy")) if Path(p).name == "cam3.png" else real(p))
    report = index_folder(db, root)
    assert set(report.changed) == set(ids.values()) and report.set_aside == (ids["cam1.png"],)
    history = db.labels.history(ids["cam1.png"])
    assert [r.review_state for r in history] == [ReviewState.CORRECTED, ReviewState.UNREVIEWED]
    last = history[-1]
    assert (last.class_name, last.mask_png, last.anomaly_verdict, last.author, last.note) == \
        (None, None, None, INDEXER, CONTENT_CHANGED_NOTE)
    assert history[0].class_name == "crack" and history[0].mask_png == b"m"  # kept, restorable
    assert db.images.get(ids["cam1.png"]).review_state is ReviewState.UNREVIEWED
    assert db.labels.history(ids["cam2.png"]) == []  # nothing to set aside
    assert db.labels.current(ids["cam3.png"]).class_name == "ok"  # unreadable while indexing: not a new content
    from sqlalchemy import select

    from database.models import Image
    with db.session() as s:
        overrides = {i: o for i, o in s.execute(select(Image.id, Image.flag_override))}
    assert overrides[ids["cam1.png"]] is None and overrides[ids["cam3.png"]] is True  # the flag was the old pixels'


def test_a_renamed_sub_folder_moves_its_rows_in_chunks(db, tmp_path: Path, monkeypatch) -> None:
    """Renaming a lot's sub-folder moves every file in it: the moves are written in chunks, as new rows are."""
    import app.services.indexing as indexing
    root = tmp_path / "line"
    (root / "lot1").mkdir(parents=True)
    for i in range(5):
        cv2.imwrite(str(root / "lot1" / f"p{i}.png"), np.full((4, 4), i, np.uint8))
    first = index_folder(db, root)
    written = []
    real = db.images.move
    monkeypatch.setattr(db.images, "move", lambda folder_id, moves: written.append(len(moves)) or real(folder_id, moves))
    monkeypatch.setattr(indexing, "CHUNK", 2)
    (root / "lot1").rename(root / "lot1-done")
    report = index_folder(db, root)
    assert sorted(report.moved) == sorted(first.added) and report.added == () and report.missing == 0
    assert written == [2, 2, 1]
    assert sorted(im.rel_path for im in db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))) \
        == [f"lot1-done/p{i}.png" for i in range(5)]

    # a vanished row that goes before its move is written (another station removed the folder's row): a new row
    (root / "lot1-done" / "p0.png").rename(root / "p0-again.png")
    monkeypatch.setattr(db.images, "move", lambda folder_id, moves: {})
    again = index_folder(db, root)
    assert again.moved == () and len(again.added) == 1
    assert db.images.get(again.added[0]).rel_path == "p0-again.png"


def test_a_name_or_folder_the_walk_cannot_read_is_said_and_stops_nothing(db, tmp_path: Path, monkeypatch) -> None:
    """Found by a session-43 probe: one file name with invalid UTF-8 bytes, or a sub-folder path too long for the
    system, stopped the whole index (the folder's other images included); a sub-folder that could not be read had its
    indexed images marked missing. Each is passed over, said, and its rows are kept."""
    import errno
    import os

    from app.services import file_scan
    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    assert first.skipped == () and len(first.added) == 4
    bad = os.fsencode(root) + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write((root / "gray.png").read_bytes())
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("/sub"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(path)
    monkeypatch.setattr(file_scan.os, "scandir", scandir)
    again = index_folder(db, root)
    assert again.missing == 0 and len(again.skipped) == 2
    assert any("caf" in s and "not valid UTF-8" in s for s in again.skipped)
    assert any(s.startswith("sub/: Permission denied") for s in again.skipped)
    rows = {im.rel_path: im.missing for im in db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))}
    assert rows == {"gray.png": False, "colour.jpg": False, "sub/deep.bmp": False, "sub/wide.tiff": False}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_a_folder_that_can_no_longer_be_read_is_refused_its_rows_kept(db, tmp_path: Path) -> None:
    """A session-51 audit: a folder whose permissions changed (or a share remounted) after it was indexed reopened as
    "parts: 0 images" with every row marked missing and no reason given, and ``prelabel`` said the folder held no
    images. It is refused, saying it cannot be read and why, and its rows stay as they were."""
    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    root.chmod(0o000)
    try:
        with pytest.raises(FolderIndexError, match=r"parts: cannot be read \(Permission denied\)"):
            index_folder(db, root)
    finally:
        root.chmod(0o755)
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert len(rows) == 4 and not any(im.missing for im in rows)


def test_a_folder_unreadable_once_its_walk_begins_is_refused_its_rows_kept(db, tmp_path: Path, monkeypatch) -> None:
    """A session-51 audit: the walk passed over a top folder it could not list as it passes over a sub-folder, so
    nothing was seen and every indexed image was marked missing. A folder that stops being readable between the
    check and the walk (the window's follower re-scans every few seconds) is refused too, no row touched; a new
    folder that cannot be read is not registered."""
    import errno

    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    real_scandir = os.scandir
    calls: list[str] = []

    def scandir(path):
        if os.fspath(path) == str(root):
            calls.append(os.fspath(path))
            if len(calls) > 1:  # the check passes, the walk's listing fails
                raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(path)
    monkeypatch.setattr(file_scan.os, "scandir", scandir)
    for changes_only in (False, True):
        calls.clear()
        with pytest.raises(FolderIndexError, match=r"parts: cannot be read \(Permission denied\)"):
            index_folder(db, root, changes_only=changes_only)
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert len(rows) == 4 and not any(im.missing for im in rows)
    other = _folder(tmp_path / "other")

    def refused(path):
        if os.fspath(path) == str(other):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(path)
    monkeypatch.setattr(file_scan.os, "scandir", refused)
    with pytest.raises(FolderIndexError, match="other: cannot be read"):
        index_folder(db, other)
    assert db.folders.by_path(str(other)) is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root enters a folder whatever its mode")
def test_a_folder_that_can_be_listed_but_not_entered_is_refused_its_rows_kept(db, tmp_path: Path) -> None:
    """A session-51 review: a top folder made ``chmod 644`` (readable, not searchable) passed the check, which only
    listed it, and each file's stat then failed alone: "files 0 missing 3", every row marked missing. It is refused
    as one that cannot be read; a sub-folder like it is said and its rows kept, as an unreadable one's are."""
    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    root.chmod(0o644)
    try:
        with pytest.raises(FolderIndexError, match=r"parts: cannot be read \(Permission denied\)"):
            index_folder(db, root)
    finally:
        root.chmod(0o755)
    (root / "sub").chmod(0o644)
    try:
        report = index_folder(db, root)
    finally:
        (root / "sub").chmod(0o755)
    assert report.missing == 0 and report.skipped == ("sub/: Permission denied",)
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert len(rows) == 4 and not any(im.missing for im in rows)


class _Unenterable:
    """A listed entry of a folder that cannot be entered: its name and type are known (the listing), its stat fails."""

    def __init__(self, entry: os.DirEntry) -> None:
        self._entry = entry
        self.name, self.path = entry.name, entry.path

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_dir(follow_symlinks=False)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_file(follow_symlinks=False)

    def is_symlink(self) -> bool:
        return self._entry.is_symlink()

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise PermissionError(13, "Permission denied", self.path)


def test_a_folder_listed_but_not_entered_is_refused_as_root_too(db, tmp_path: Path, monkeypatch) -> None:
    """A session-51 review (run as root, the mode simulated): a folder whose entries' stat fails for want of
    permission is one that cannot be read; at the top it is refused (by the check, and by the walk when the mode
    changed after it), no row touched and a new one not registered; below, the sub-folder is noted and not walked."""
    import contextlib

    root = _folder(tmp_path / "parts")
    first = index_folder(db, root)
    shut: set[str] = set()
    real_scandir, real_stat = os.scandir, os.stat

    class Listing(contextlib.closing):
        def __enter__(self):
            return self

        def __iter__(self):
            return (_Unenterable(e) for e in self.thing)

        def close(self) -> None:
            self.thing.close()

    def scandir(path):
        return Listing(real_scandir(path)) if os.fspath(path) in shut else real_scandir(path)

    def stat(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) in shut and os.path.basename(os.fspath(path)) == os.curdir:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(file_scan.os, "scandir", scandir)
    monkeypatch.setattr(file_scan.os, "stat", stat)
    shut.add(str(root))
    with pytest.raises(FolderIndexError, match=r"parts: cannot be read \(Permission denied\)"):
        index_folder(db, root)
    monkeypatch.setattr(file_scan.os, "stat", real_stat)   # the mode changed after the check: the walk refuses it
    for changes_only in (False, True):
        with pytest.raises(FolderIndexError, match=r"parts: cannot be read \(Permission denied\)"):
            index_folder(db, root, changes_only=changes_only)
    shut.clear()
    shut.add(str(root / "sub"))
    report = index_folder(db, root)
    assert report.missing == 0 and report.skipped == ("sub/: Permission denied",)
    rows = db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True))
    assert len(rows) == 4 and not any(im.missing for im in rows)
    other = _folder(tmp_path / "other")
    shut.add(str(other))
    monkeypatch.setattr(file_scan.os, "stat", stat)
    with pytest.raises(FolderIndexError, match="other: cannot be read"):
        index_folder(db, other)
    assert db.folders.by_path(str(other)) is None


def test_a_linked_folder_and_a_broken_link_are_said_not_passed_over_in_silence(db, tmp_path: Path) -> None:
    """Left as found in session 43: a linked sub-folder (say ``cam2 -> /mnt/cam2``) is not followed and a link to an
    image that has gone cannot be read; both were passed over without a word, so an inspector took the folder for
    complete. Each is said with what to do; a link to an image file is indexed as before."""
    import os
    root = _folder(tmp_path / "parts")
    elsewhere = _folder(tmp_path / "cam2")
    os.symlink(elsewhere, root / "cam2")
    os.symlink(root / "gone.png", root / "dangling.png")
    os.symlink(elsewhere / "gray.png", root / "linked.png")
    result = index_folder(db, root)
    assert sorted(db.images.get(i).rel_path for i in result.added) == [
        "colour.jpg", "gray.png", "linked.png", "sub/deep.bmp", "sub/wide.tiff"]
    assert len(result.skipped) == 2
    assert any(s.startswith("cam2/: a linked folder") and "open it as a folder of its own" in s for s in result.skipped)
    assert any(s.startswith("dangling.png: a link whose target") for s in result.skipped)


def test_a_link_round_a_loop_is_said_not_passed_over_in_silence(db, tmp_path: Path) -> None:
    """A session-52 audit: two links naming each other (``loop_a.png -> loop_b.png -> loop_a.png``) were left out of
    the index without a word (their stat fails with ELOOP, and the walk passed over any such failure). Each is said
    with the system's reason; the folder's images are indexed as before."""
    root = _folder(tmp_path / "parts")
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    result = index_folder(db, root)
    assert sorted(db.images.get(i).rel_path for i in result.added) == [
        "colour.jpg", "gray.png", "sub/deep.bmp", "sub/wide.tiff"]
    assert sorted(result.skipped) == [f"loop_{x}.png: {os.strerror(errno.ELOOP)}" for x in "ab"]


def test_a_file_unreadable_when_indexed_loses_its_error_once_it_is_read(db, tmp_path: Path, monkeypatch) -> None:
    """Found by a session-43 probe: a file that could not be read while indexing kept "file could not be read while
    indexing" and no hash for good once readable again (same size and time: taken for unchanged)."""
    from app.services import indexing
    root = _folder(tmp_path / "parts")
    real = indexing.hash_files

    def unreadable_gray(root_, entries, on_done=None):
        for entry, digest in real(root_, entries, on_done):
            yield entry, None if entry.rel_path == "gray.png" else digest
    monkeypatch.setattr(indexing, "hash_files", unreadable_gray)
    folder_id = index_folder(db, root).folder_id
    gray = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=folder_id))}["gray.png"]
    assert gray.error and gray.content_hash is None
    monkeypatch.setattr(indexing, "hash_files", real)
    index_folder(db, root)
    gray = db.images.get(gray.id)
    assert gray.error is None and gray.content_hash


def test_a_replaced_file_unreadable_at_one_scan_still_sets_its_label_aside_once_read(db, tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """Found by a session-45 probe: the line wrote the next part under the same name, the scan after could not read
    it (locked by the writer) and stored its new size and time with no hash; the scan after that took the new pixels
    for the old ones and the label given to the old part stayed on the new one, accepted."""
    from app.services import indexing
    from database.dto import LabelChange
    from database.states import ReviewState
    root = _folder(tmp_path / "parts")
    folder_id = index_folder(db, root).folder_id
    gray = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=folder_id))}["gray.png"]
    db.labels.append(gray.id, LabelChange(ReviewState.ACCEPTED, class_name="ok"), "ann")
    st = (root / "gray.png").stat()
    cv2.imwrite(str(root / "gray.png"), np.full((20, 30), 99, np.uint8))
    os.utime(root / "gray.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    real = indexing.hash_files

    def locked(root_, entries, on_done=None):
        for entry, digest in real(root_, entries, on_done):
            yield entry, None if entry.rel_path == "gray.png" else digest
    monkeypatch.setattr(indexing, "hash_files", locked)
    index_folder(db, root)
    assert db.labels.current(gray.id).class_name == "ok"  # not known to be other pixels yet: kept
    monkeypatch.setattr(indexing, "hash_files", real)
    report = index_folder(db, root)
    assert gray.id in report.set_aside
    image = db.images.get(gray.id)
    assert image.review_state is ReviewState.UNREVIEWED and image.content_hash == file_scan.hash_file(root / "gray.png")


def test_a_folder_inside_an_indexed_one_is_refused_and_one_holding_it_leaves_it_to_itself(db, tmp_path: Path) -> None:
    """Found by a session-44 probe: ``prelabel imgs/sub`` after ``imgs`` was indexed registered the sub-folder as a
    second folder, so each of its files had two rows; labelled in each, the export wrote one file twice with two
    classes ("exported 5 image(s)" for 4 files). A folder inside an indexed one is refused, naming it; a folder
    indexed after one inside it leaves that one's images to it and says so."""
    root = _folder(tmp_path / "parts")
    index_folder(db, root)
    with pytest.raises(FolderIndexError, match="lies inside the indexed folder"):
        index_folder(db, root / "sub")
    assert len(db.folders.list()) == 1

    outer = tmp_path / "line"
    inner = _folder(outer / "cam1")
    cv2.imwrite(str(outer / "top.png"), np.zeros((4, 4), np.uint8))
    first = index_folder(db, inner)
    report = index_folder(db, outer)
    assert [db.images.get(i).rel_path for i in report.added] == ["top.png"]
    assert any(s.startswith("cam1/: indexed as a folder of its own") for s in report.skipped)
    assert len(db.images.query(ImageQuery(folder_id=first.folder_id))) == 4


def test_a_folder_renamed_on_disk_follows_with_its_labels(db, tmp_path: Path) -> None:
    """A session-45 probe: ``mv line3 line3_done`` then opening line3_done registered a new, unreviewed folder
    (the labels stayed on a folder whose path had gone). Renamed in place, the folder follows: its rows, labels,
    name and a folder registered inside it; a copy elsewhere, or beside the old one still there, is a new folder."""
    import shutil

    from app.services.review import ReviewService, ReviewSettings
    from database.dto import LabelChange
    from database.states import ReviewState

    old = tmp_path / "lines" / "line3"
    (old / "lot1").mkdir(parents=True)
    for i in range(5):
        cv2.imwrite(str(old / f"p{i}.png"), np.full((6, 6), 10 * i, np.uint8))
    cv2.imwrite(str(old / "lot1" / "q.png"), np.full((6, 6), 99, np.uint8))
    inner = index_folder(db, old / "lot1")  # registered first, then the folder around it
    first = index_folder(db, old)
    ids = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=first.folder_id))}
    db.labels.append(ids["p1.png"], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    shutil.copytree(old, tmp_path / "elsewhere" / "line3")  # a copy in another parent: a new folder
    copy = index_folder(db, tmp_path / "elsewhere" / "line3")
    assert copy.folder_id != first.folder_id and copy.renamed_from is None

    old.rename(tmp_path / "lines" / "line3_done")
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    info = svc.open_folder(tmp_path / "lines" / "line3_done")
    assert info.id == first.folder_id and info.name == "line3" and info.image_count == 5
    assert "renamed on disk" in info.note and str(old) in info.note
    assert db.labels.current(ids["p1.png"]).class_name == "crack"
    assert not any(im.missing for im in db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True)))
    assert db.folders.get(first.folder_id).root_path == str(tmp_path / "lines" / "line3_done")
    assert db.folders.get(inner.folder_id).root_path == str(tmp_path / "lines" / "line3_done" / "lot1")
    assert not index_folder(db, tmp_path / "lines" / "line3_done" / "lot1").added

    # another folder of other files renamed beside it is not taken for it
    other = tmp_path / "lines" / "line4"
    other.mkdir()
    cv2.imwrite(str(other / "p1.png"), np.full((6, 6), 10, np.uint8))
    index_folder(db, other)
    other.rename(tmp_path / "lines" / "line4b")
    (tmp_path / "lines" / "line4b" / "p1.png").write_bytes(b"not the same bytes")
    assert index_folder(db, tmp_path / "lines" / "line4b").renamed_from is None


def test_another_days_folder_of_the_same_names_and_sizes_is_not_taken_for_a_renamed_one(db, tmp_path: Path) -> None:
    """The session-46 review: a camera writing fixed-size frames under the same names each day, beside reference
    images of the same bytes every day: yesterday's folder moved to an archive, today's was taken for it renamed
    (sizes compared, the first names hashed were the references), yesterday's labels set aside."""
    import shutil
    import time

    from database.dto import LabelChange
    from database.states import ReviewState

    def day(path: Path, seed: int) -> None:
        path.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(8):   # as many as the check hashes: the first names in order
            cv2.imwrite(str(path / f"000_ref_{i}.bmp"), np.full((8, 8), 20 * i, np.uint8))
        for i in range(6):
            cv2.imwrite(str(path / f"img_{i}.bmp"), rng.integers(0, 255, (8, 8), dtype=np.uint8))

    day(tmp_path / "lines" / "d1", 1)
    first = index_folder(db, tmp_path / "lines" / "d1")
    for im in db.images.query(ImageQuery(folder_id=first.folder_id)):
        db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name="ok"), "ann")
    (tmp_path / "archive").mkdir()
    shutil.move(str(tmp_path / "lines" / "d1"), tmp_path / "archive" / "d1")
    time.sleep(0.01)
    day(tmp_path / "lines" / "d2", 2)
    today = index_folder(db, tmp_path / "lines" / "d2")
    assert today.renamed_from is None and today.folder_id != first.folder_id
    assert all(db.labels.current(im.id).class_name == "ok"
               for im in db.images.query(ImageQuery(folder_id=first.folder_id, include_missing=True)))


def test_the_open_folder_renamed_and_a_new_one_at_its_name_each_keep_their_own_files(db, tmp_path: Path) -> None:
    """Session-46 probes: the window's re-scan of a folder renamed on disk said "cannot be followed: folder not
    found"; with the line writing on into a new folder of the old name, the labels were set aside onto the new
    line's files (a restore would put them on other parts) and the renamed folder opened unreviewed; a folder
    registered inside another, renamed in place, had its files taken by the outer one's re-scan, unreviewed."""
    import time

    from app.services.review import ReviewService, ReviewSettings
    from database.dto import LabelChange
    from database.states import ReviewState

    lines = tmp_path / "lines"

    def fill(path: Path, seed: int, n: int = 6) -> None:
        path.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(n):
            cv2.imwrite(str(path / f"img_{i}.png"), rng.integers(0, 255, (8, 8), dtype=np.uint8))

    fill(lines / "line3", 1)
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    first = svc.open_folder(lines / "line3")
    labelled = {im.id for im in db.images.query(ImageQuery(folder_id=first.id))}
    for image_id in labelled:
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="ok"), "ann")

    (lines / "line3").rename(lines / "line3_a")          # renamed while the window shows it
    change = svc.rescan_folder(first.id)
    assert change.renamed_to == str(lines / "line3_a") and "followed there, with its labels" in change.summary()
    assert db.folders.get(first.id).root_path == str(lines / "line3_a")

    (lines / "line3_a").rename(lines / "line3_b")        # renamed again, and the line writes on under the old name
    time.sleep(0.01)
    fill(lines / "line3_a", 2, n=2)
    change = svc.rescan_folder(first.id)
    assert change.renamed_to == str(lines / "line3_b") and not change.set_aside
    assert all(db.labels.current(i).class_name == "ok" for i in labelled)
    fresh = svc.open_folder(lines / "line3_a")             # the new files: a new folder
    assert fresh.id != first.id and fresh.image_count == 2

    outer = svc.open_folder(lines)                        # a folder around them, then the inner one renamed
    (lines / "line3_b").rename(lines / "line3_c")
    index_folder(db, lines, changes_only=True)
    assert db.folders.get(first.id).root_path == str(lines / "line3_c")
    assert not any(im.rel_path.startswith("line3_c/") for im in db.images.query(ImageQuery(folder_id=outer.id)))
    assert all(db.labels.current(i).class_name == "ok" for i in labelled)


def test_a_cleanup_is_not_a_rename_and_a_new_line_reusing_every_name_is(db, tmp_path: Path, monkeypatch) -> None:
    """The session-46 review: the share of files gone was counted after the plan had taken the files it saw out, so
    any 3 files deleted looked like "most", and a folder beside it holding a copy (cp -a) took the folder's row; and
    a new line reusing every name (nothing gone) never triggered the check, its labels set aside onto other parts.
    A second station's scan that a rename overtook writes nothing."""
    import shutil

    import app.services.indexing as indexing
    from app.services.indexing import FolderIndexError
    from database.dto import LabelChange
    from database.states import ReviewState

    lines = tmp_path / "lines"

    def fill(path: Path, seed: int, n: int) -> None:
        path.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(n):
            cv2.imwrite(str(path / f"img_{i:02d}.png"), rng.integers(0, 255, (8, 8), dtype=np.uint8))

    fill(lines / "line3", 1, 20)
    first = index_folder(db, lines / "line3")
    for image_id in first.added:
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="ok"), "ann")
    shutil.copytree(lines / "line3", lines / "line3_backup", copy_function=shutil.copy2)   # cp -a
    for i in range(3):
        (lines / "line3" / f"img_{i:02d}.png").unlink()
    cleaned = index_folder(db, lines / "line3", changes_only=True)
    assert cleaned.renamed_from is None and cleaned.missing == 3
    assert db.folders.get(first.folder_id).root_path == str(lines / "line3")
    for i in range(3, 12):   # most of them deleted, the rest still there unchanged: a clean-up too (the review)
        (lines / "line3" / f"img_{i:02d}.png").unlink()
    cleaned = index_folder(db, lines / "line3", changes_only=True)
    assert cleaned.renamed_from is None and cleaned.missing == 9
    assert db.folders.get(first.folder_id).root_path == str(lines / "line3")
    for i in range(12):      # (put back for the next part: a rename of the whole folder)
        shutil.copy2(lines / "line3_backup" / f"img_{i:02d}.png", lines / "line3" / f"img_{i:02d}.png")
    index_folder(db, lines / "line3", changes_only=True)

    shutil.rmtree(lines / "line3_backup")
    (lines / "line3").rename(lines / "line3_done")          # overnight: renamed, the counter restarts in a new line3
    fill(lines / "line3", 2, 17)
    ((lines / "line3") / "img_00.png").rename(lines / "line3" / "img_19.png")  # (names the old folder still had)
    opened = index_folder(db, lines / "line3")
    assert opened.renamed_away == str(lines / "line3_done") and opened.folder_id != first.folder_id
    assert not opened.set_aside and all(db.labels.current(i).class_name == "ok" for i in first.added)

    # a second station's scan that a rename overtook between its walk and its writes writes nothing
    fresh = index_folder(db, lines / "line3")
    real = indexing.plan_changes

    def overtaken(*args, **kwargs):
        plan = real(*args, **kwargs)
        db.folders.relocate(fresh.folder_id, str(tmp_path / "elsewhere"))   # another station followed it
        return plan
    monkeypatch.setattr(indexing, "plan_changes", overtaken)
    (lines / "line3" / "img_05.png").write_bytes((lines / "line3" / "img_06.png").read_bytes())
    with pytest.raises(FolderIndexError, match="followed to"):
        index_folder(db, lines / "line3")


def test_a_path_map_that_does_not_read_back_the_same_way_scans_as_before(db, tmp_path: Path, monkeypatch) -> None:
    """The session-46 review: with a share and its subfolder mapped separately, the stored path of a scanned folder
    read back through the map as another path, and every scan failed "followed … meanwhile"."""
    (tmp_path / "x" / "b" / "line3").mkdir(parents=True)
    (tmp_path / "y").mkdir()
    cv2.imwrite(str(tmp_path / "x" / "b" / "line3" / "a.png"), np.zeros((4, 4), np.uint8))
    monkeypatch.setenv("INSPECTION_PATH_MAP", f"/mnt/a={tmp_path / 'x'};/mnt/a/b={tmp_path / 'y'}")
    first = index_folder(db, tmp_path / "x" / "b" / "line3")
    cv2.imwrite(str(tmp_path / "x" / "b" / "line3" / "b.png"), np.ones((4, 4), np.uint8))
    again = index_folder(db, tmp_path / "x" / "b" / "line3")
    assert again.folder_id == first.folder_id and len(again.added) == 1


def test_a_rescan_line_words_its_counts_by_them() -> None:
    """A session-50 audit: the re-scan line read "1 gone image file(s) on disk" and "1 changed one(s) back to
    unreviewed" where the counts are known; the files are worded by all the counts together."""
    from app.services.review_types import FolderChange
    assert FolderChange(1, "parts", gone=1).summary() == "parts: 1 gone image file on disk"
    assert FolderChange(1, "parts", changed=2, set_aside=1).summary() == (
        "parts: 2 changed image files on disk (1 changed one back to unreviewed, its label kept in the history)")
    assert FolderChange(1, "parts", changed=2, set_aside=2).summary().endswith(
        "(2 changed ones back to unreviewed, their labels kept in the history)")
