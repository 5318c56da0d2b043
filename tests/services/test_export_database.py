"""Export from a real (SQLite) database: current revisions, review-state filter, CLI, labels untouched."""
from __future__ import annotations

import csv
import hashlib
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main as cli_main
from app.services.export import ExportError, ExportOptions, export_database
from app.services.export_items import encode_mask
from app.services.export_split import SplitSpec
from database import FileEntry, LabelChange, PredictionIn, ReviewState, open_database
from tests.services.export_fixtures import H, W, region, two_blobs, write_image

EVERY = ("imagefolder", "masks", "coco", "mvtec", "yolo", "csv")


@pytest.fixture
def station(tmp_path: Path):
    """A folder of six images with label histories, indexed in a fresh SQLite database."""
    root = tmp_path / "lot1"
    for i, name in enumerate(("a", "b", "c", "d", "r", "u")):
        write_image(root / name, i)
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_database(url)
    folder = db.folders.add(str(root))
    db.images.sync(folder.id, [FileEntry(f"{n}.png", (root / f"{n}.png").stat().st_size, 0, width=W, height=H)
                               for n in ("a", "b", "c", "d", "r", "u")])
    ids = {Path(i.rel_path).stem: i.id for i in db.images.query()}
    mv = db.model_versions.register("segmenter", "seg-v1", "/nowhere")
    db.predictions.upsert_many([PredictionIn(ids["d"], mv.id, predicted_class="crack",
                                             mask_png=encode_mask(two_blobs()))])
    pred_d = db.predictions.get(ids["d"], mv.id)
    # a: first labelled good, then corrected to crack with a mask and an anomalous region.
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="crack",
                                           mask_png=encode_mask(two_blobs()), anomaly_verdict="anomalous",
                                           anomaly_mask_png=encode_mask(region())), "bob")
    db.labels.append(ids["b"], LabelChange(ReviewState.ACCEPTED, class_name="good", anomaly_verdict="normal"), "ann")
    # c: was accepted, then rejected as unusable: the newest revision wins, so it is left out.
    db.labels.append(ids["c"], LabelChange(ReviewState.ACCEPTED, class_name="crack"), "ann")
    db.labels.append(ids["c"], LabelChange(ReviewState.REJECTED), "bob")
    # d: accepted by pointing at the prediction only: the prediction is the label.
    db.labels.append(ids["d"], LabelChange(ReviewState.ACCEPTED, from_prediction_id=pred_d.id), "cy")
    db.labels.append(ids["r"], LabelChange(ReviewState.REJECTED, class_name="crack"), "ann")
    yield db, url, root, ids
    db.close()


def label_fingerprint(db, ids) -> str:
    h = hashlib.sha256()
    for image_id in sorted(ids.values()):
        for r in db.labels.history(image_id):
            h.update(repr((r.revision, r.author, r.class_name, r.mask_png, r.anomaly_verdict, r.review_state)).encode())
        h.update(db.images.get(image_id).review_state.value.encode())
    return h.hexdigest()


def test_exports_current_labels_of_reviewed_images_only(tmp_path: Path, station) -> None:
    db, _url, root, ids = station
    before = label_fingerprint(db, ids)
    db.classes.set("classifier", ["good", "crack"])
    out = tmp_path / "out"
    result = export_database(db, out, ExportOptions(formats=EVERY))
    assert result.exported == 3 and result.skipped == ()

    assert {str(p.relative_to(out / "imagefolder")) for p in (out / "imagefolder").rglob("*.png")} == {
        "crack/a.png", "good/b.png", "crack/d.png"}
    assert (out / "imagefolder/crack/a.png").read_bytes() == (root / "a.png").read_bytes()
    for stem in ("a", "d"):
        m = cv2.imread(str(out / f"masks/masks/{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(m > 0, two_blobs())
    assert not (out / "masks/masks/b.png").exists()
    gt = cv2.imread(str(out / "mvtec/lot1/ground_truth/crack/a_mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(gt > 0, region())

    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        rows = {r["rel_path"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"a.png", "b.png", "d.png"}
    assert (rows["a.png"]["class"], rows["a.png"]["reviewer"], rows["a.png"]["state"]) == ("crack", "bob", "corrected")
    assert (rows["d.png"]["class"], rows["d.png"]["reviewer"], rows["d.png"]["target_count"]) == ("crack", "cy", "2")
    assert rows["b.png"]["anomaly_verdict"] == "normal"
    assert label_fingerprint(db, ids) == before


def test_folder_filter_and_missing_files(tmp_path: Path, station) -> None:
    db, _url, root, ids = station
    with pytest.raises(ExportError, match="no indexed folder 'elsewhere'"):
        export_database(db, tmp_path / "x", folder="elsewhere")
    (root / "b.png").unlink()
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("csv",)), folder=str(root))
    assert result.exported == 2
    assert any("b.png: image file missing" in s for s in result.skipped)
    assert export_database(db, tmp_path / "out2", ExportOptions(formats=("csv",)), folder="lot1").exported == 2


def test_a_file_changed_since_it_was_indexed_is_not_exported_with_its_label(tmp_path: Path) -> None:
    """Found by a session-43 probe: a labelled 32 x 24 image replaced by a 64 x 48 frame and exported before the
    station re-indexed it went out as the new pixels with the old mask (and the old size in COCO), said nowhere.
    It is skipped with the reason; the same bytes under a new time (a copy put back) are exported."""
    import os

    from app.services.indexing import index_folder
    root = tmp_path / "lot1"
    write_image(root / "a", 1)
    write_image(root / "b", 2)
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_database(url)
    index_folder(db, root)
    for image in db.images.query():
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack",
                                               mask_png=encode_mask(two_blobs())), "ann")
    cv2.imwrite(str(root / "a.png"), np.zeros((2 * H, 2 * W), np.uint8))  # a new frame under the name
    kept = (root / "b.png").read_bytes()
    (root / "b.png").write_bytes(kept)
    os.utime(root / "b.png", ns=(1, 1))  # the same bytes, another time
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("masks", "coco")))
    assert result.exported == 1
    assert any(s.startswith("lot1/a.png: the file changed on disk since it was indexed") for s in result.skipped)
    assert sorted(p.name for p in (tmp_path / "out" / "masks" / "images").iterdir()) == ["b.png"]
    db.close()


def test_an_image_the_station_cannot_read_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """A session-52 audit: an empty file, a truncated PNG and a 431 KB PNG of 20000 x 20000, labelled in the window,
    were exported as good data (exported=9 skipped=(), imagefolder/free/zero.png of 0 bytes, rows in summary.csv): the
    export checked only that each file could be opened. Each is skipped with the reader's reason, and an image whose
    stored error was a model's failure, not the file's, is exported."""
    import struct
    import zlib

    from app.services.indexing import index_folder

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    root = tmp_path / "lot1"
    write_image(root / "a", 1)
    write_image(root / "oom", 2)
    (root / "zero.png").write_bytes(b"")
    (root / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                                    + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    good = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(good[:len(good) // 2])
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    index_folder(db, root)
    ids = {i.rel_path: i.id for i in db.images.query()}
    db.images.set_error(ids["oom.png"], "anomaly model failed: CUDA out of memory")  # the pre-labelling's, not the file's
    db.images.set_error(ids["truncated.png"], "not a decodable image (damaged PNG: truncated in chunk 'IDAT')")
    for image_id in ids.values():
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="free"), "ann")
    out = tmp_path / "out"
    result = export_database(db, out, ExportOptions(formats=("imagefolder", "csv")))
    assert result.exported == 2
    assert sorted(result.skipped) == [
        "lot1/huge.png: image too large (20000x20000 pixels, 400 megapixels; the station reads up to 200 megapixels)",
        "lot1/truncated.png: not a decodable image (damaged PNG: truncated in chunk 'IDAT')",
        "lot1/zero.png: empty file (0 bytes)"]
    assert sorted(p.name for p in (out / "imagefolder" / "free").iterdir()) == ["a.png", "oom.png"]
    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        assert sorted(row["rel_path"] for row in csv.DictReader(fh)) == ["a.png", "oom.png"]
    db.close()


def test_a_truncated_png_and_one_too_deep_to_decode_are_skipped_without_a_stored_error(tmp_path: Path) -> None:
    """A session-52 audit: a truncated PNG whose header was sane and that no pre-labelling had read (no stored error),
    and a 12000 x 12000 16-bit RGBA PNG (within the pixel bound, 1.15 GB decoded, which ``read_raw`` refuses from
    its header), passed the export's header check and were exported as good data. Both are skipped with the reader's
    reason."""
    import struct
    import zlib

    from app.services.indexing import index_folder

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    root = tmp_path / "lot1"
    write_image(root / "a", 1)
    (root / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 16, 6, 0,
                                                                                    0, 0))
                                    + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    good = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(good[:len(good) // 2])
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    index_folder(db, root)
    for image in db.images.query():
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="free"), "ann")
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("imagefolder",)))
    assert result.exported == 1
    assert sorted(result.skipped) == [
        "lot1/deep.png: image too large to decode (12000x12000 pixels of 16-bit samples, 1152 MB decoded; the station "
        "decodes up to 800 MB)",
        "lot1/truncated.png: not a decodable image (damaged PNG: truncated in chunk 'IDAT')"]
    db.close()


def test_cli_export(tmp_path: Path, station, capsys) -> None:
    db, url, _root, ids = station
    before = label_fingerprint(db, ids)
    out = tmp_path / "cli_out"
    code = cli_main(["export", "--out", str(out), "--db", url, "--format", "all,yolo", "--split", "0.5,0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "exported 3 reviewed images" in captured.out and "split: train 2, val 1, test 0" in captured.out
    assert (out / "export.json").is_file() and (out / "yolo/data.yaml").is_file()
    assert SplitSpec.parse("0.5,0.5").used == ("train", "val")

    code = cli_main(["export", "--out", str(out), "--db", url])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("error: ") and "not empty" in captured.err
    assert cli_main(["export", "--out", str(out), "--db", url, "--overwrite", "--format", "csv"]) == 0
    assert cli_main(["export", "--out", str(tmp_path / "o3"), "--db", url, "--format", "voc"]) == 2
    assert "unknown export format 'voc'" in capsys.readouterr().err
    assert label_fingerprint(db, ids) == before


def test_an_erased_mask_exports_as_a_frame_without_targets(tmp_path: Path, station) -> None:
    """The review window stores an empty mask when the inspector erases every predicted target (session 36): the
    masks and COCO exports give that frame no target, where the prediction's targets would have been wrong."""
    import json

    db, _url, _root, ids = station
    empty = np.zeros_like(two_blobs())
    db.labels.append(ids["u"], LabelChange(ReviewState.ACCEPTED, class_name="good", mask_png=encode_mask(empty)), "ann")
    out = tmp_path / "out"
    export_database(db, out, ExportOptions(formats=("masks", "coco", "csv")))
    m = cv2.imread(str(out / "masks/masks/u.png"), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.shape == empty.shape and not m.any()
    coco = json.loads(next((out / "coco").rglob("*.json")).read_text())
    u = next(i for i in coco["images"] if i["file_name"].endswith("u.png"))
    assert not [a for a in coco["annotations"] if a["image_id"] == u["id"]]
    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        rows = {r["rel_path"]: r for r in csv.DictReader(fh)}
    assert rows["u.png"]["target_count"] == "0"


def test_an_accepted_out_of_domain_answer_is_not_exported_as_a_class(tmp_path: Path, station) -> None:
    """Seen in an export (session 36): infrared frames accepted while the panel said "Class: out of domain" were
    exported as the steel classifier's "crazing": the revision held no field, so the export took the confirmed
    prediction's class, which the panel had withheld."""
    from inference.domain import OUT_OF_DOMAIN_BELOW

    db, _url, _root, ids = station
    cls = db.model_versions.register("classifier", "steel", "/nowhere")
    db.predictions.upsert_many([PredictionIn(ids["u"], cls.id, predicted_class="crazing", confidence=0.99,
                                             in_domain=OUT_OF_DOMAIN_BELOW / 2)])
    pred = db.predictions.get(ids["u"], cls.id)
    db.labels.append(ids["u"], LabelChange(ReviewState.ACCEPTED, from_prediction_id=pred.id), "ann")
    out = tmp_path / "out"
    export_database(db, out, ExportOptions(formats=("imagefolder", "csv")))
    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        rows = {r["rel_path"]: r for r in csv.DictReader(fh)}
    assert rows["u.png"]["class"] == ""
    assert not list((out / "imagefolder").rglob("u.png"))
    # in domain, the same revision stands for the prediction's class (what test_exports_current_labels... pins for d)
    db.predictions.upsert_many([PredictionIn(ids["u"], cls.id, predicted_class="crazing", confidence=0.99,
                                             in_domain=1.0)])
    export_database(db, tmp_path / "out2", ExportOptions(formats=("csv",)))
    with (tmp_path / "out2" / "summary.csv").open(encoding="utf-8", newline="") as fh:
        assert {r["rel_path"]: r for r in csv.DictReader(fh)}["u.png"]["class"] == "crazing"


def test_the_summary_is_said_in_words(tmp_path: Path, station) -> None:
    """Seen in the export dialog (session 36): "imagefolder: images 0, classes {}"."""
    db, _url, _root, _ids = station
    lines = export_database(db, tmp_path / "out", ExportOptions(formats=("imagefolder", "mvtec"))).summary_lines()
    text = "\n".join(lines)
    assert "{" not in text and "_" not in text.split("\n", 1)[1]
    assert "imagefolder: images 3, classes (crack 2, good 1)" in text
    # a format holding fewer images than were exported says so in the headline (a session-48 probe: "exported 39
    # image(s)" of a YOLO export holding 14)
    only = export_database(db, tmp_path / "out2", ExportOptions(formats=("yolo",)))
    held = only.formats["yolo"]["images"]
    assert held < only.exported and only.summary_lines()[0].startswith(
        f"exported {only.exported} reviewed images to {tmp_path / 'out2'}; the files hold {held} in yolo")


def test_the_export_summary_words_its_counts_by_them(tmp_path: Path) -> None:
    """A session-50 audit: the Export dialog's last line read "Done: exported 1 image(s) to ..." and "skipped 1
    image(s):" where the counts are known; now "exported 1 image", "skipped 1 image", "exported 2 images"."""
    from app.services.export import ExportResult
    one = ExportResult(tmp_path, 1, ("a.png: its file is missing",), {"csv": {"images": 1}})
    lines = one.summary_lines()
    assert lines[0] == f"exported 1 image to {tmp_path}" and "skipped 1 image:" in lines, lines
    assert ExportResult(tmp_path, 2, ()).summary_lines()[0] == f"exported 2 images to {tmp_path}"


def test_an_export_says_which_jpegs_an_exif_tag_would_turn(tmp_path: Path) -> None:
    """Found by a session-43 probe: the station labels the pixels as stored and the export copies the bytes, so a
    reader honouring the EXIF orientation saw the image turned against its mask; nothing said so."""
    from app.services.indexing import index_folder
    from tests.inference.test_simple_answer_thumbnails import _jpeg_turned_by_exif
    root = tmp_path / "line"
    root.mkdir()
    _jpeg_turned_by_exif(root / "turned.jpg")
    _jpeg_turned_by_exif(root / "named.png")  # a session-45 probe: a JPEG under another name was left out
    write_image(root / "plain", 1)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    for image in db.images.query():
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("imagefolder",)))
    assert result.exported == 3 and len(result.notes) == 1
    assert result.notes[0].startswith("2 images carry an orientation tag") and "line/turned.jpg" in result.notes[0]
    assert "line/named.png" in result.notes[0]
    assert any(line.startswith("note: 2 images carry an orientation tag") for line in result.summary_lines())
    db.close()


def test_the_export_folder_gets_the_permissions_any_new_folder_gets(tmp_path: Path, station) -> None:
    """Found by a session-44 CLI probe: the export folder came out mode 0700 (the temporary folder it is written in
    was renamed onto it) while its files were 0644, so nobody but its owner could read the dataset."""
    import os
    db = station[0]
    old = os.umask(0o022)
    try:
        export_database(db, tmp_path / "ds", ExportOptions(formats=("csv",)))
    finally:
        os.umask(old)
    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o755


def test_sigterm_during_an_export_leaves_no_half_written_folder(tmp_path: Path, station, capsys, monkeypatch) -> None:
    """Found by a session-44 CLI probe: Ctrl+C cleaned up, but SIGTERM (a job runner's stop) during ``export`` left its
    hidden ``.partial`` folder of copied images beside the destination. It now takes Ctrl+C's way out, exit 143."""
    import os
    import signal

    from app.services import export as export_module
    url = station[1]
    real = export_module.load
    calls = []

    def load_then_terminated(path):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(path)
    monkeypatch.setattr(export_module, "load", load_then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert cli_main(["export", "--out", str(tmp_path / "out" / "ds"), "--db", url]) == 143
    assert "terminated" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_two_classes_that_would_share_a_class_folder_refuse_those_formats(tmp_path: Path) -> None:
    """Found by a session-45 probe: classes "pit/dent" and "pit_dent" were both written into imagefolder/pit_dent/
    (the summary still counted them apart): a reader saw one class, and a round trip relabelled an image."""
    from app.services.indexing import index_folder
    root = tmp_path / "line"
    root.mkdir()
    write_image(root / "a", 1)
    write_image(root / "b", 2)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    for image, cls in zip(db.images.query(), ("pit/dent", "pit_dent")):
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=cls), "ann")
    for fmt in ("imagefolder", "mvtec"):
        with pytest.raises(ExportError, match="would share the folder 'pit_dent'"):
            export_database(db, tmp_path / f"out-{fmt}", ExportOptions(formats=(fmt,)))
        assert not (tmp_path / f"out-{fmt}").exists()
    assert export_database(db, tmp_path / "out", ExportOptions(formats=("csv",))).exported == 2
    # a session-46 probe: a class renamed by case ("patches" -> "Patches") left both, two folders on Linux and one
    # on Windows and macOS
    for image, cls in zip(db.images.query(), ("patches", "Patches")):
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=cls), "ann")
    with pytest.raises(ExportError, match="one folder on Windows and macOS"):
        export_database(db, tmp_path / "out-case", ExportOptions(formats=("imagefolder",)))
    db.close()


def test_classes_sharing_a_folder_are_refused_with_a_way_that_moves_their_labels(tmp_path: Path) -> None:
    """A session-49 audit: after a rename by case ("crazing" labels, "Crazing" on key 1) the export said "rename one
    (Project ▸ Classes…) or leave imagefolder out". Saving the list changes no label, so the refusal came back every
    time, and ``retrain classifier`` was told to leave imagefolder out, which it cannot. Now it says how to give the
    labels one name: filter by the class, select its labels, press the key of the class on the list."""
    from app.services.indexing import index_folder
    from app.services.retraining import RetrainError, export_training_data
    root = tmp_path / "line"
    root.mkdir()
    for i in range(3):
        write_image(root / f"i{i}", i)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    db.classes.set("classifier", ("Crazing", "inclusion"))
    for image, cls in zip(db.images.query(), ("crazing", "crazing", "Crazing")):
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=cls), "ann")
    with pytest.raises(ExportError) as refused:
        export_database(db, tmp_path / "out", ExportOptions(formats=("imagefolder",)))
    assert str(refused.value) == (
        "the classes 'Crazing' (1 image) and 'crazing' (2 images) would share one folder on Windows and macOS "
        "('Crazing' and 'crazing' differ only by case or accent spelling) in imagefolder: give their labels one name: "
        "in the review window filter each folder's queue by class 'crazing' (the filter also shows images only "
        "predicted so), select the images labelled so and press the class key of 'Crazing'; or leave imagefolder "
        "out; nothing was written")
    with pytest.raises(RetrainError) as not_trained:
        export_training_data(db, "classifier", tmp_path / "work")
    assert "press the class key of 'Crazing'" in str(not_trained.value)
    assert "leave" not in str(not_trained.value) and "Project ▸ Classes" not in str(not_trained.value)
    db.classes.set("classifier", ())  # no list: the most used spelling is kept, and said how to put it on a key
    with pytest.raises(ExportError, match="filter each folder's queue by class 'Crazing' .* press the class key of "
                                          r"'crazing' \(add it on Project ▸ Classes… if no key offers it\)"):
        export_database(db, tmp_path / "out", ExportOptions(formats=("mvtec",)))
    db.close()


def test_a_class_too_long_for_a_folder_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A session-49 audit: a class of 200 "ä" (400 bytes in UTF-8) failed every ImageFolder export and classifier
    retraining half-way with "File name too long"."""
    from app.services.indexing import index_folder
    from app.services.retraining import RetrainError, export_training_data
    root = tmp_path / "line"
    write_image(root / "a", 1)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    db.labels.append(db.images.query()[0].id, LabelChange(ReviewState.CORRECTED, class_name="ä" * 200), "ann")
    for fmt in ("imagefolder", "mvtec"):
        with pytest.raises(ExportError, match=f"the class '{'ä' * 40}'… is 400 bytes long in UTF-8, more than the 255 "
                                              f"a folder name holds.* give its labels a shorter name: .*; or leave "
                                              f"{fmt} out; nothing was written"):
            export_database(db, tmp_path / f"out-{fmt}", ExportOptions(formats=(fmt,)))
        assert not (tmp_path / f"out-{fmt}").exists()
    with pytest.raises(RetrainError, match="400 bytes long") as refused:
        export_training_data(db, "classifier", tmp_path / "work")
    assert "leave" not in str(refused.value)
    assert export_database(db, tmp_path / "out", ExportOptions(formats=("csv",))).exported == 1
    db.close()


def test_a_class_starting_with_a_dot_is_refused_by_the_class_folder_formats(tmp_path: Path) -> None:
    """A session-52 audit: ".5mm pit" (brought in by an import into a project without a class list) was exported to
    the hidden folder ``imagefolder/.5mm pit/``, which the station's own import and training pass over: the label was
    lost on the way back. Refused like a class too long for a folder name, before anything is written."""
    from app.services.indexing import index_folder
    root = tmp_path / "line"
    write_image(root / "a", 1)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    db.labels.append(db.images.query()[0].id, LabelChange(ReviewState.CORRECTED, class_name=".5mm pit"), "ann")
    for fmt in ("imagefolder", "mvtec"):
        with pytest.raises(ExportError, match=f"the class '.5mm pit' starts with a dot, and {fmt} name a folder by each "
                                              "class: its folder would be hidden.* give its labels another name: .*a "
                                              f"class whose name starts with no dot .*; or leave {fmt} out"):
            export_database(db, tmp_path / f"out-{fmt}", ExportOptions(formats=(fmt,)))
        assert not (tmp_path / f"out-{fmt}").exists()
    assert export_database(db, tmp_path / "out", ExportOptions(formats=("csv",))).exported == 1
    db.close()


def test_names_differing_only_by_unicode_spelling_are_two_files_everywhere() -> None:
    """A session-46 probe: "défaut.png" precomposed and decomposed were exported as two files here, one on a Mac
    (which reads both spellings as one name), the summary counting two."""
    from app.services.export_items import ExportItem, unique_file_names

    items = [ExportItem(Path("/x") / n, n, "line", "corrected") for n in ("d\u00e9faut.png", "de\u0301faut.png")]
    a, b = unique_file_names(items)
    assert unicodedata.normalize("NFC", a).lower() != unicodedata.normalize("NFC", b).lower()
