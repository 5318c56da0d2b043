"""Import behaviour: dry run counts, newer human labels kept, class mapping, bad input writes nothing."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.cli import main as cli_main
from app.services.export import ExportOptions, export_database
from app.services.export_items import encode_mask
from app.services.import_records import LabelImportError
from app.services.importing import ImportOptions, apply_import, import_labels, preview_import
from database import LabelChange, ReviewState
from tests.services.export_fixtures import H, W, region
from tests.services.import_fixtures import label_station, make_folder, open_station


def fingerprint(db) -> list:
    return [(r.image_id, r.revision, r.class_name, r.mask_png, r.anomaly_verdict, r.review_state)
            for i in db.images.query() for r in db.labels.history(i.id)]


@pytest.fixture
def station(tmp_path: Path):
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "station", root)
    yield db, root, tmp_path
    db.close()


def class_tree(base: Path, root: Path, labels: dict[str, str]) -> Path:
    for rel, cls in labels.items():
        dst = base / cls / Path(rel).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((root / rel).read_bytes())
    return base


def test_dry_run_counts_and_writes_nothing(station) -> None:
    db, root, tmp = station
    ids = {Path(i.rel_path).stem: i.id for i in db.images.query()}
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    src = class_tree(tmp / "tree", root, {"a.png": "crack", "b.png": "crack", "d.png": "good"})
    (src / "good" / "stranger.png").write_bytes(b"not one of ours")
    os.utime(src / "crack" / "a.png", (time.time() + 3600,) * 2)  # the dataset's label is newer
    before = fingerprint(db)
    result = import_labels(db, src, ImportOptions(format="imagefolder"), dry_run=True)
    assert fingerprint(db) == before and result.written == 0
    assert result.preview.counts == {"records": 4, "matched": 3, "unmatched": 1, "new": 2, "would_overwrite": 1,
                                     "skipped_newer": 0, "unchanged": 0}
    assert result.preview.per_class == {"crack": 2, "good": 1}
    assert result.preview.unmatched == ("stranger.png",)


def test_newer_human_label_is_kept_unless_asked(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    os.utime(src / "crack" / "a.png", (time.time() - 3600,) * 2)  # labelled an hour ago
    image_id = db.images.by_path(db.folders.list()[0].id, "a.png").id
    db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")  # now
    result = import_labels(db, src, ImportOptions(format="imagefolder"))
    assert result.preview.counts["skipped_newer"] == 1 and result.written == 0
    assert db.labels.current(image_id).class_name == "good"
    # the skipped row keeps the station's class: its "class after" and the per-class count said crack (a probe)
    assert [p.class_after for p in result.preview.planned] == ["good"] and result.preview.per_class == {"good": 1}
    result = import_labels(db, src, ImportOptions(format="imagefolder", overwrite_newer=True, author="imp"))
    assert result.written == 1
    history = db.labels.history(image_id)
    assert [r.class_name for r in history] == ["good", "crack"]  # the human label stays in the history
    assert history[-1].author == "imp" and history[-1].note == f"imported from {src / 'crack' / 'a.png'}"


def test_unknown_classes_refused_until_mapped(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "Scratch", "b.png": "ok"})
    before = fingerprint(db)
    preview = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert preview.errors and "unknown classes Scratch, ok" in preview.errors[0]
    with pytest.raises(LabelImportError, match="nothing imported"):
        apply_import(db, preview)
    assert fingerprint(db) == before
    mistyped = preview_import(db, src, ImportOptions(format="imagefolder", class_map={"Scratch": "crak"}))
    assert "unknown classes crak (mapped from Scratch), ok:" in mistyped.errors[0]  # it named Scratch (a probe)
    result = import_labels(db, src, ImportOptions(format="imagefolder", class_map={"Scratch": "crack", "ok": "good"}))
    assert result.written == 2 and result.preview.per_class == {"crack": 1, "good": 1}
    assert result.preview.class_map == {"Scratch": "crack", "ok": "good"}


def test_matches_renamed_copies_by_content(station) -> None:
    db, root, tmp = station
    src = tmp / "tree" / "crack"
    src.mkdir(parents=True)
    (src / "renamed-beyond-recognition.png").write_bytes((root / "e.png").read_bytes())
    result = import_labels(db, tmp / "tree", ImportOptions(format="imagefolder"))
    assert result.written == 1
    assert db.labels.current(db.images.by_path(db.folders.list()[0].id, "e.png").id).class_name == "crack"


def test_a_name_two_station_images_share_lands_on_the_one_whose_bytes_the_dataset_holds(tmp_path: Path) -> None:
    """Found by a session-43 probe: the station holds ``part_17.png`` and ``lot3/part_17.png`` (other pixels); a
    class tree names ``crack/part_17.png``, a copy of the second. Its path once the class folder is read,
    ``part_17.png``, was taken as whole and the class landed on the first image, the preview saying "1 matched".
    Another image holding the dataset's bytes now wins; a re-encoded copy (no image holds its bytes) keeps the path."""
    import shutil

    from tests.services.export_fixtures import write_image
    root = tmp_path / "station"
    write_image(root / "part_17", 1)
    write_image(root / "lot3" / "part_17", 2)
    db = open_station(tmp_path, "s", root)
    ids = {i.rel_path: i.id for i in db.images.query()}
    (tmp_path / "ds" / "crack").mkdir(parents=True)
    shutil.copy(root / "lot3" / "part_17.png", tmp_path / "ds" / "crack" / "part_17.png")
    assert import_labels(db, tmp_path / "ds", ImportOptions(format="imagefolder")).written == 1
    assert db.labels.current(ids["lot3/part_17.png"]).class_name == "crack"
    assert db.labels.current(ids["part_17.png"]) is None
    (tmp_path / "ds2" / "good").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ds2" / "good" / "part_17.png"), np.full((H, W), 9, np.uint8))  # no one's bytes
    assert import_labels(db, tmp_path / "ds2", ImportOptions(format="imagefolder")).written == 1
    assert db.labels.current(ids["part_17.png"]).class_name == "good"


def test_identical_files_in_a_deeper_station_copy_match_by_the_end_of_their_path(tmp_path: Path) -> None:
    """NEU holds byte-identical pairs (patches_101 / patches_105): a class tree of them matched neither the
    station's deeper copy's path ('steel/patches/...') nor, being two, its content; the end of the path does."""
    root = make_folder(tmp_path / "lines")
    same = (root / "a.png").read_bytes()
    for name in ("p_101.png", "p_105.png", "p_7.png"):
        (root / "steel" / "patches").mkdir(parents=True, exist_ok=True)
        (root / "steel" / "patches" / name).write_bytes(same)
    (root / "tiles").mkdir()
    (root / "tiles" / "p_7.png").write_bytes((root / "b.png").read_bytes())   # the same name elsewhere
    db = open_station(tmp_path, "lines", root)
    try:
        tree = tmp_path / "tree" / "crack"
        tree.mkdir(parents=True)
        for name in ("p_101.png", "p_105.png", "p_7.png"):
            (tree / name).write_bytes(same)
        result = import_labels(db, tmp_path / "tree", ImportOptions(format="imagefolder"))
        folder = db.folders.list()[0].id
        # p_7.png ends two indexed paths and its content is four images': left unmatched, as it should be
        assert result.written == 2 and result.preview.unmatched == ("p_7.png",)
        for name in ("p_101.png", "p_105.png"):
            assert db.labels.current(db.images.by_path(folder, f"steel/patches/{name}").id).class_name == "crack"
        assert db.labels.current(db.images.by_path(folder, "tiles/p_7.png").id) is None
    finally:
        db.close()


def test_label_saved_after_the_preview_stops_the_import(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack", "b.png": "good"})
    preview = preview_import(db, src, ImportOptions(format="imagefolder"))
    b = db.images.by_path(db.folders.list()[0].id, "b.png").id
    db.labels.append(b, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    before = fingerprint(db)
    with pytest.raises(LabelImportError, match="changed since the preview"):
        apply_import(db, preview)
    assert fingerprint(db) == before


def write_json(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def labelme_doc(image: str, shapes, width=W, height=H) -> dict:
    return {"version": "5.4.1", "flags": {}, "imagePath": image, "imageWidth": width, "imageHeight": height,
            "shapes": shapes, "imageData": None}


def test_labelme_json_saved_apart_from_its_images_is_matched_by_path_and_nothing_outside_is_read(station,
                                                                                             monkeypatch) -> None:
    """Seen in session 42: labelme writes ``"imagePath": "../ir/x.png"`` when its JSON is saved in a folder of its own,
    and the whole import was refused ("outside the import folder"). The path's end now names the indexed image; the
    file outside the import folder is never opened, and a path naming nothing indexed is only unmatched."""
    import app.services.import_match as match

    db, root, tmp = station
    ann = tmp / "annotations"
    write_json(ann / "a.json", labelme_doc(f"../{root.name}/a.png", [
        {"label": "crack", "points": [[2, 2], [9, 2], [9, 6], [2, 6]], "shape_type": "polygon"}]))
    write_json(ann / "x.json", labelme_doc("/etc/passwd", []))
    opened: list[object] = []
    monkeypatch.setattr(match, "hash_file", lambda path: opened.append(path) or "")
    result = import_labels(db, ann, ImportOptions(format="labelme"))
    assert result.written == 1 and opened == []
    assert result.preview.unmatched == ("etc/passwd",)
    lab = db.labels.current(db.images.by_path(db.folders.list()[0].id, "a.png").id)
    assert lab.class_name == "crack"


def test_labelme_polygons_and_rectangles(station) -> None:
    db, root, _ = station
    write_json(root / "a.json", labelme_doc("a.png", [
        {"label": "crack", "points": [[2, 2], [9, 2], [9, 6], [2, 6]], "shape_type": "polygon"},
        {"label": "crack", "points": [[20, 15], [22, 17]], "shape_type": "rectangle"}]))
    result = import_labels(db, root, ImportOptions(format="labelme"))
    assert result.written == 1
    lab = db.labels.current(db.images.by_path(db.folders.list()[0].id, "a.png").id)
    mask = cv2.imdecode(np.frombuffer(lab.mask_png, np.uint8), cv2.IMREAD_UNCHANGED) > 0
    assert lab.class_name == "crack" and mask[2:7, 2:10].all() and mask[15:18, 20:23].all()
    assert mask.sum() == 8 * 5 + 9


def coco_doc(file_name: str, segmentation, width=W, height=H) -> dict:
    return {"images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "crack"}]}


def test_coco_polygons_and_uncompressed_rle(station) -> None:
    db, root, tmp = station
    m = region()
    counts, flat, value, run = [], m.T.reshape(-1), False, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    doc = coco_doc("b.png", [[3, 3, 8, 3, 8, 7, 3, 7]])
    doc["images"].append({"id": 2, "file_name": "d.png", "width": W, "height": H})
    doc["annotations"].append({"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 1,
                               "segmentation": {"size": [H, W], "counts": counts}})
    write_json(tmp / "coco.json", doc)
    result = import_labels(db, tmp / "coco.json", ImportOptions(format="coco"))
    assert result.written == 2
    d = db.labels.current(db.images.by_path(db.folders.list()[0].id, "d.png").id)
    assert d.class_name == "crack"
    assert (cv2.imdecode(np.frombuffer(d.mask_png, np.uint8), cv2.IMREAD_UNCHANGED) > 0).tolist() == m.tolist()


def test_a_box_beside_outlines_on_one_image_is_drawn_as_its_box(station) -> None:
    """Found by a session-45 probe: a polygon "crack" and a box-only "scratch" (as CVAT and datumaro write
    rectangles) on one image: the class came from the box, the mask held only the polygon. YOLO likewise dropped a
    box line beside a polygon line. Both are drawn; an image of boxes alone stays a detection label."""
    db, root, tmp = station
    folder = db.folders.list()[0].id
    doc = coco_doc("b.png", [[3, 3, 8, 3, 8, 7, 3, 7]])
    doc["categories"].append({"id": 2, "name": "scratch"})
    doc["annotations"].append({"id": 2, "image_id": 1, "category_id": 2, "segmentation": [], "bbox": [20, 10, 6, 4],
                               "area": 24, "iscrowd": 0})
    write_json(tmp / "coco" / "coco.json", doc)
    db.classes.set("classifier", ["crack", "scratch"])
    assert import_labels(db, tmp / "coco" / "coco.json", ImportOptions(format="coco")).written == 1
    got = db.labels.current(db.images.by_path(folder, "b.png").id)
    mask = cv2.imdecode(np.frombuffer(got.mask_png, np.uint8), cv2.IMREAD_UNCHANGED) > 0
    assert mask[5, 5] and mask[10:14, 20:26].all() and not mask[15, 27] and mask.sum() > 24
    write_json(tmp / "yolo" / "labels" / "b.txt", f"0 {3 / W} {3 / H} {8 / W} {3 / H} {8 / W} {7 / H} {3 / W} {7 / H}\n"
                                                   f"1 {23 / W} {12 / H} {6 / W} {4 / H}\n")
    write_json(tmp / "yolo" / "data.yaml", "names:\n  0: crack\n  1: scratch\n")
    import_labels(db, tmp / "yolo", ImportOptions(format="yolo", overwrite_newer=True))
    got = db.labels.current(db.images.by_path(folder, "b.png").id)
    mask = cv2.imdecode(np.frombuffer(got.mask_png, np.uint8), cv2.IMREAD_UNCHANGED) > 0
    assert mask[5, 5] and mask[11, 22]


def test_a_coco_detection_set_gives_each_image_the_class_of_its_largest_box(station) -> None:
    """Boxes without polygons (a detection set): every area was 0 and the class fell to the alphabetically last
    category among the image's (a session-43 probe). The largest box (or stated area) decides."""
    db, root, tmp = station
    doc = coco_doc("b.png", [])
    doc["categories"].append({"id": 2, "name": "good"})
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 8], "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [12, 0, 2, 2], "iscrowd": 0}]
    write_json(tmp / "boxes.json", doc)
    assert import_labels(db, tmp / "boxes.json", ImportOptions(format="coco")).written == 1
    assert db.labels.current(db.images.by_path(db.folders.list()[0].id, "b.png").id).class_name == "crack"


def _one_mask_two_images(t) -> None:
    """masks/b.png beside images/b.png and images/b.jpg (a probe: the mask went to the first by name, unsaid)."""
    (t / "masks").mkdir()
    (t / "images").mkdir()
    (t / "masks" / "b.png").write_bytes(encode_mask(region()))
    for suffix in (".png", ".jpg"):
        cv2.imwrite(str(t / "images" / f"b{suffix}"), np.zeros((H, W), np.uint8))


def _two_images_one_id() -> dict:
    """A COCO file whose two images share an id (found by a session-43 probe: the annotation went to both)."""
    doc = coco_doc("b.png", [[3, 3, 8, 3, 8, 7, 3, 7]])
    doc["images"].append({**doc["images"][0], "file_name": "d.png"})
    return doc


def _orphan_annotation() -> dict:
    doc = coco_doc("b.png", [[3, 3, 8, 3, 8, 7, 3, 7]])
    doc["annotations"].append({**doc["annotations"][0], "id": 99, "image_id": 2})
    return doc


def _coco_with(image=None, annotation=None, category=None) -> dict:
    """``coco_doc`` with fields of its one image, annotation or category replaced."""
    doc = coco_doc("b.png", [[3, 3, 8, 3, 8, 7, 3, 7]])
    for part, given in (("images", image), ("annotations", annotation), ("categories", category)):
        doc[part][0].update(given or {})
    return doc


def _yolo_names(t: Path, names_line: str) -> None:
    write_json(t / "data.yaml", names_line)
    write_json(t / "labels" / "b.txt", "0 0.1 0.1 0.5 0.1 0.5 0.5\n")


@pytest.mark.parametrize("fmt, setup, message", [
    ("coco", lambda r, t: write_json(t / "bad.json", '{"images": [1, 2'), "not valid JSON (line 1"),
    ("coco", lambda r, t: write_json(t / "bad.json", "[]"), "expected a JSON object"),
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("../../etc/passwd", [])), "outside the import folder"),
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("b.png", [[1, 1, 5, 1, 5, 5]], 100000, 100000)),
     "pixel limit"),
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("b.png", {"size": [H, W], "counts": [5, 5]})),
     "do not cover"),
    ("coco", lambda r, t: write_json(t / "bad.json", _two_images_one_id()), "the id is given to two images"),
    # session-45 probes: a short compressed RLE gave a mask of memory never written; NaN or a far point crashed the
    # process in pycocotools; an annotation for an image the file does not list was lost without a word; a
    # document nested too deeply raised RecursionError; labelme's "mask" shapes were dropped, and far points drew
    # elsewhere or raised OpenCV's error
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("b.png", {"size": [H, W], "counts": "04"})),
     "do not cover"),
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("b.png", [[0, 0, float("nan"), 0, 10, 10]])),
     "not a number within reach"),
    ("coco", lambda r, t: write_json(t / "bad.json", coco_doc("b.png", [[0, 0, 4e8, 0, 4e8, 4e8]])),
     "not a number within reach"),
    ("coco", lambda r, t: write_json(t / "bad.json", _orphan_annotation()), "annotations for image id"),
    ("coco", lambda r, t: write_json(t / "bad.json", "[" * 200_000 + "]" * 200_000), "nested too deeply"),
    ("labelme", lambda r, t: write_json(t / "x.json", labelme_doc("b.png", [
        {"label": "crack", "shape_type": "mask", "points": [[1, 1], [5, 5]], "mask": "iVBORw0KGgo="}])),
     "is a 'mask' shape"),
    ("labelme", lambda r, t: write_json(t / "x.json", labelme_doc("b.png", [
        {"label": "crack", "shape_type": "rectangle", "points": [[1, 1], [1e12, 5]]}])), "far outside"),
    ("labelme", lambda r, t: write_json(t / "x.json", labelme_doc("b.png", [
        {"label": "crack", "points": [[1, 1], [4294967306, 5], [3, 9]]}])), "far outside"),
    ("masks", lambda r, t: _one_mask_two_images(t), "2 images share its name"),
    ("labelme", lambda r, t: write_json(t / "x.json", labelme_doc("b.png", [{"points": []}])), "has no label"),
    ("csv", lambda r, t: write_json(t / "t.csv", "rel_path,class\n../x.png,crack\n"), "outside the import folder"),
    ("csv", lambda r, t: write_json(t / "t.csv", "name,colour\nb.png,red\n"), "needs an image column"),
    ("csv", lambda r, t: write_json(t / "t.csv", "rel_path,class,state\nb.png,crack,maybe\n"), "state must be"),
    # a quote left open swallowed every later row into one class name (a session-46 probe), a huge cell raised
    ("csv", lambda r, t: write_json(t / "t.csv", 'rel_path,class\nb.png,"scratch\nc.png,dent\n'), "never closed"),
    ("csv", lambda r, t: write_json(t / "t.csv", 'rel_path,class\nb.png,"scr\natch"\n'), "line break"),
    ("csv", lambda r, t: write_json(t / "t.csv", "rel_path,class\nb.png," + "x" * 200_000 + "\n"), "field limit"),
    ("yolo", lambda r, t: write_json(t / "labels" / "b.txt", "0 0.1 0.1 0.5 0.1 1.7 0.9\n"), "in [0, 1]"),
    # session-49 audit: each of these was a traceback from the command and a bare TypeError in the window
    ("yolo", lambda r, t: _yolo_names(t, "names:\n  " + "9" * 5000 + ": crack\n"), "class index 99999"),
    ("yolo", lambda r, t: _yolo_names(t, "names: {0: 'crack', None: 'x'}\n"), "cannot read the names mapping"),
    ("yolo", lambda r, t: _yolo_names(t, "names: [" + "-" * 200_000 + "1]\n"), "cannot read the names list"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(image={"width": True, "height": True})),
     "image size must be positive whole numbers (got True x True"),
    ("labelme", lambda r, t: write_json(t / "x.json", {**labelme_doc("b.png", []), "imageWidth": True}),
     "image size must be positive whole numbers"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(image={"id": [1]})),
     "image id [1] is not a number or a name"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(annotation={"image_id": [1]})),
     "annotation 1: image_id [1] is not a number or a name"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(category={"id": [1]})),
     "category id [1] is not a number or a name"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(annotation={"bbox": [1, 1, 1e308, 1e308]})),
     "annotation 1: bbox [1, 1, 1e"),
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(annotation={
        "segmentation": [], "bbox": [1, 1, 1e308, 1e308], "area": float("nan")})), "is not four finite numbers"),
    ("labelme", lambda r, t: write_json(t / "x.json", labelme_doc("b\0.png", [])), "holds a NUL character"),
    ("csv", lambda r, t: write_json(t / "t.csv", "rel_path,class,reviewed_at\nb.png,crack,0001-01-01T00:00:00\n"),
     "reviewed_at '0001-01-01T00:00:00' is out of range"),
    # session-49 audit: a category without a name came in as the class "None", and a names line of data.yaml that
    # could not be read left the class indexes as the names, without a word
    ("coco", lambda r, t: write_json(t / "bad.json", _coco_with(category={"name": None})), "category 1 has no name"),
    ("yolo", lambda r, t: _yolo_names(t, "names: !!python/object/apply:os.system ['true']\n"),
     'cannot read the names line "!!python/object'),
])
def test_malformed_input_gives_a_clear_message_and_writes_nothing(station, fmt, setup, message) -> None:
    db, root, tmp = station
    label_station(db)
    src = tmp / "bad"
    src.mkdir()
    setup(root, src)
    before = fingerprint(db)
    with pytest.raises(LabelImportError, match=message.replace("[", r"\[").replace("(", r"\(")):
        import_labels(db, src, ImportOptions(format=fmt))
    assert fingerprint(db) == before


def _pipe_at(t: Path, fmt: str, rel: str, root: Path) -> None:
    """A dataset of ``fmt`` whose file ``rel`` is a named pipe (the rest well formed)."""
    if fmt == "yolo":
        write_json(t / "data.yaml", "names:\n  0: crack\n")
        write_json(t / "labels" / "b.txt", "0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    elif fmt == "mvtec":
        (t / "test" / "crack").mkdir(parents=True)
        (t / "ground_truth" / "crack").mkdir(parents=True)
        (t / "test" / "crack" / "b.png").write_bytes((root / "b.png").read_bytes())
    (t / rel).parent.mkdir(parents=True, exist_ok=True)
    (t / rel).unlink(missing_ok=True)
    os.mkfifo(t / rel)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("fmt, rel", [
    ("yolo", "labels/b.txt"), ("yolo", "data.yaml"), ("labelme", "b.json"), ("csv", "t.csv"),
    ("coco", "instances.json"), ("imagefolder", "crack/b.png"), ("masks", "masks/b.png"),
    ("mvtec", "ground_truth/crack/b_mask.png")])
def test_a_named_pipe_in_the_dataset_is_refused_by_name_and_never_opened(station, fmt, rel) -> None:
    """A session-49 audit: a named pipe among a dataset's files hung ``main.py import`` (and the window's preview) for
    good, opened or hashed as a file; one named data.yaml was passed over (the class indexes became the names), a
    mask read "empty file (0 bytes)" and an MVTec ground truth "no region". Each is refused now, named, unopened."""
    import signal

    db, root, tmp = station
    src = tmp / "piped"
    _pipe_at(src, fmt, rel, root)

    def hung(*_: object) -> None:
        raise TimeoutError(f"the import of a {fmt} dataset with a pipe at {rel} waited on it")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(LabelImportError, match=rel.replace(".", r"\.") + ".*not a regular file"):
            import_labels(db, src, ImportOptions(format=fmt))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    assert all(db.labels.current(i.id) is None for i in db.images.query())


def test_a_value_no_reader_foresaw_is_said_as_the_dataset_unreadable(station, monkeypatch) -> None:
    """A session-49 audit: a value of a type a reader did not expect ended the command with a traceback and showed a
    bare TypeError in the window; any such slip is now a refusal naming the dataset, with nothing written."""
    import app.services.import_csv as reader

    db, root, tmp = station
    write_json(tmp / "t" / "t.csv", "rel_path,class\nb.png,crack\n")

    def slip(_: Path) -> list:
        raise TypeError("an integer is required")

    monkeypatch.setattr(reader, "read", slip)
    before = fingerprint(db)
    with pytest.raises(LabelImportError, match=r"t: unreadable \(TypeError: an integer is required\); nothing"):
        import_labels(db, tmp / "t", ImportOptions(format="csv"))
    assert fingerprint(db) == before


def test_a_label_file_deleted_during_the_import_is_said(station, monkeypatch) -> None:
    """A session-49 audit: a YOLO label file removed while a later one was still being read ended ``main.py import``
    with a FileNotFoundError traceback (its time was looked up again when the plan was made). Now it is a refusal
    naming the file, with nothing written."""
    import app.services.importing as importing

    db, root, tmp = station
    ids = {Path(i.rel_path).stem: i.id for i in db.images.query()}
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    real = importing.read_records

    def then_deleted(source, fmt):
        records = real(source, fmt)
        (src / "crack" / "a.png").unlink()
        return records

    monkeypatch.setattr(importing, "read_records", then_deleted)
    before = fingerprint(db)
    with pytest.raises(LabelImportError, match=r"crack/a.png: gone during the import \(No such file"):
        import_labels(db, src, ImportOptions(format="imagefolder"))
    assert fingerprint(db) == before


def test_mask_of_the_wrong_size_refuses_the_whole_import(station) -> None:
    db, root, tmp = station
    (tmp / "ds" / "masks").mkdir(parents=True)
    (tmp / "ds" / "masks" / "b.png").write_bytes(encode_mask(region()))
    (tmp / "ds" / "masks" / "d.png").write_bytes(encode_mask(np.ones((H + 1, W), bool)))
    before = fingerprint(db)
    with pytest.raises(LabelImportError, match=r"d.png: mask is 32x25 but lot1/d.png is 32x24"):
        import_labels(db, tmp / "ds", ImportOptions(format="masks"))
    assert fingerprint(db) == before  # b's good mask was not written either


def test_huge_label_file_is_refused_before_reading(station, monkeypatch) -> None:
    import app.services.import_records as records

    db, _, tmp = station
    write_json(tmp / "big" / "coco.json", coco_doc("b.png", []))
    monkeypatch.setattr(records, "MAX_LABEL_FILE_BYTES", 16)
    with pytest.raises(LabelImportError, match="too large to import"):
        import_labels(db, tmp / "big", ImportOptions(format="coco"))
    monkeypatch.undo()
    # 200 MiB (sparse: nothing is written) was read into ~25 times that (a session-46 probe: 512 MiB was the limit)
    with (tmp / "big" / "coco.json").open("r+b") as fh:
        fh.truncate(200 << 20)
    with pytest.raises(LabelImportError, match="200 MiB; the limit is 128 MiB"):
        import_labels(db, tmp / "big", ImportOptions(format="coco"))


def test_command_dry_run_then_import(station, capsys) -> None:
    db, root, tmp = station
    label_station(db)
    export_database(db, tmp / "out", ExportOptions(formats=("imagefolder",)))
    fresh = open_station(tmp, "fresh", root)
    url = fresh.url
    fresh.close()
    assert cli_main(["import", str(tmp / "out"), "--format", "imagefolder", "--db", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 matched" in out and "new 3" in out and "dry run: nothing written" in out
    assert cli_main(["import", str(tmp / "out"), "--format", "imagefolder", "--db", url,
                     "--map", "crack=good"]) == 0
    assert "imported 3 labels" in capsys.readouterr().out
    assert cli_main(["import", str(tmp / "out"), "--format", "nonsense", "--db", url]) == 2
    assert "unknown import format 'nonsense'" in capsys.readouterr().err
    # no --format: the layout's most telling format (here the export's one), said before the summary
    assert cli_main(["import", str(tmp / "out"), "--db", url, "--dry-run", "--map", "crack=good"]) == 0
    assert "format: imagefolder (found here: imagefolder" in capsys.readouterr().out
    assert cli_main(["import", str(tmp / "nowhere"), "--db", url]) == 2
    assert f"{tmp / 'nowhere'}: not found" in capsys.readouterr().err   # a path that is not there, said so
    (tmp / "empty").mkdir()
    assert cli_main(["import", str(tmp / "empty"), "--db", url]) == 2
    assert "no known dataset layout found; give --format" in capsys.readouterr().err


def test_masks_without_images_match_by_export_stem(station) -> None:
    db, root, tmp = station
    (root / "sub" / "x.png").write_bytes((root / "a.png").read_bytes())  # sub__x is the export's name
    from app.services.indexing import index_folder

    index_folder(db, root)
    (tmp / "ds" / "masks").mkdir(parents=True)
    for stem in ("b", "sub__x"):
        (tmp / "ds" / "masks" / f"{stem}.png").write_bytes(encode_mask(region()))
    result = import_labels(db, tmp / "ds", ImportOptions(format="masks"))
    assert result.preview.unmatched == () and result.written == 2


def test_masks_alone_match_images_in_a_subfolder_by_their_stem(station) -> None:
    """docs/import.md: a folder of PNG masks alone matches by stem and by path end; a mask 'x.png' never matched the
    station's 'sub/x.png' (a session-47 audit)."""
    db, root, tmp = station
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "only_here.png").write_bytes((root / "a.png").read_bytes())
    from app.services.indexing import index_folder

    index_folder(db, root)
    (tmp / "ds" / "masks").mkdir(parents=True)
    (root / "sub" / "frame.001.png").write_bytes((root / "b.png").read_bytes())  # a dot in the stem (the review)
    index_folder(db, root)
    for stem in ("only_here", "c", "frame.001"):
        (tmp / "ds" / "masks" / f"{stem}.png").write_bytes(encode_mask(region()))
    result = import_labels(db, tmp / "ds", ImportOptions(format="masks"))
    assert result.preview.unmatched == () and result.written == 3
    image_id = db.images.by_path(db.folders.list()[0].id, "sub/only_here.png").id
    assert db.labels.current(image_id).mask_png is not None


def test_a_name_in_decomposed_unicode_matches_the_indexed_image(station) -> None:
    """macOS tools write names decomposed (NFD): a mask named so matched nothing although the station holds an
    image whose name looks the same (a session-47 audit)."""
    import unicodedata

    db, root, tmp = station
    name = unicodedata.normalize("NFC", "prüfung")
    (root / f"{name}.png").write_bytes((root / "a.png").read_bytes())
    from app.services.indexing import index_folder

    index_folder(db, root)
    (tmp / "ds" / "masks").mkdir(parents=True)
    decomposed = unicodedata.normalize("NFD", name)
    assert decomposed != name
    (tmp / "ds" / "masks" / f"{decomposed}.png").write_bytes(encode_mask(region()))
    result = import_labels(db, tmp / "ds", ImportOptions(format="masks"))
    assert result.preview.unmatched == () and result.written == 1
    image_id = db.images.by_path(db.folders.list()[0].id, f"{name}.png").id
    assert db.labels.current(image_id).mask_png is not None


def test_importing_twice_writes_nothing_new(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack", "b.png": "good"})
    assert import_labels(db, src, ImportOptions(format="imagefolder")).written == 2
    before = fingerprint(db)
    again = import_labels(db, src, ImportOptions(format="imagefolder"))
    assert again.written == 0 and again.preview.counts["unchanged"] == 2
    assert fingerprint(db) == before


def test_an_accepted_label_read_back_from_a_class_tree_is_unchanged(station) -> None:
    """A class tree says nothing of accepted vs corrected: the station's own export of an accepted label,
    imported again, read "would overwrite" and turned it "corrected" (a session-47 audit)."""
    db, root, tmp = station
    image_id = db.images.by_path(db.folders.list()[0].id, "a.png").id
    db.labels.append(image_id, LabelChange(ReviewState.ACCEPTED, class_name="crack"), "ann")
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    before = fingerprint(db)
    again = import_labels(db, src, ImportOptions(format="imagefolder"))
    assert again.written == 0 and again.preview.counts["unchanged"] == 1
    assert fingerprint(db) == before


def test_an_image_labelled_twice_is_refused(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    class_tree(src, root, {"a.png": "good"})
    preview = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert any("labelled twice" in e for e in preview.errors)
    with pytest.raises(LabelImportError):
        apply_import(db, preview)


def test_mvtec_category_folder_in_place(tmp_path: Path) -> None:
    """A real MVTec category opened as the station's folder: names repeat across defects (000.png)."""
    from tests.services.export_fixtures import write_image

    cat = tmp_path / "bottle"
    for seed, rel in enumerate(("train/good/000", "test/good/000", "test/crack/000", "test/crack/001")):
        write_image(cat / rel, seed)
    (cat / "ground_truth/crack").mkdir(parents=True)
    (cat / "ground_truth/crack/000_mask.png").write_bytes(encode_mask(region()))
    db = open_station(tmp_path, "mv", cat)
    try:
        result = import_labels(db, cat, ImportOptions(format="mvtec"))
        assert result.preview.unmatched == () and result.written == 4
        fid = db.folders.list()[0].id
        lab = {rel: db.labels.current(db.images.by_path(fid, rel).id)
               for rel in ("train/good/000.png", "test/good/000.png", "test/crack/000.png", "test/crack/001.png")}
        assert {r: (v.anomaly_verdict.value, v.class_name) for r, v in lab.items()} == {
            "train/good/000.png": ("normal", None), "test/good/000.png": ("normal", None),
            "test/crack/000.png": ("anomalous", "crack"), "test/crack/001.png": ("anomalous", "crack")}
        region_png = lab["test/crack/000.png"].anomaly_mask_png
        assert (cv2.imdecode(np.frombuffer(region_png, np.uint8), 0) > 0).tolist() == region().tolist()
        assert lab["test/crack/001.png"].anomaly_mask_png is None
    finally:
        db.close()


def test_an_mvtec_copy_lands_on_the_images_the_station_holds_of_it_not_on_others_of_the_same_name(
        tmp_path: Path) -> None:
    """Seen importing MVTec bottle into a station holding 30 of its training images (good/000.png ...) and renamed
    copies of test images: test/good/001.png and ground_truth/crack_small/010_mask.png landed on the station's
    good/001.png and good/010.png (shorter path, path end), and the whole import was refused as "labelled twice"."""
    from tests.services.export_fixtures import write_image

    cat = tmp_path / "mvtec" / "bottle"
    for seed, rel in enumerate(("train/good/000", "train/good/001", "test/good/001", "test/crack/000",
                                "test/crack/001")):
        write_image(cat / rel, seed)
    (cat / "ground_truth/crack").mkdir(parents=True)
    for stem in ("000", "001"):
        (cat / f"ground_truth/crack/{stem}_mask.png").write_bytes(encode_mask(region()))
    line = tmp_path / "line"
    (line / "good").mkdir(parents=True)
    for name in ("000", "001"):  # the training images, as a station keeps them
        (line / "good" / f"{name}.png").write_bytes((cat / f"train/good/{name}.png").read_bytes())
    (line / "new").mkdir()
    (line / "new" / "crack_001.png").write_bytes((cat / "test/crack/001.png").read_bytes())  # a renamed copy
    db = open_station(tmp_path, "mv", line)
    try:
        result = import_labels(db, tmp_path / "mvtec", ImportOptions(format="mvtec"))
        fid = db.folders.list()[0].id
        lab = {rel: db.labels.current(db.images.by_path(fid, rel).id)
               for rel in ("good/000.png", "good/001.png", "new/crack_001.png")}
        assert {r: (v.anomaly_verdict.value, v.class_name) for r, v in lab.items()} == {
            "good/000.png": ("normal", None), "good/001.png": ("normal", None),
            "new/crack_001.png": ("anomalous", "crack")}
        assert sorted(result.preview.unmatched) == ["bottle/test/crack/000.png", "bottle/test/good/001.png"]
        assert result.written == 3
    finally:
        db.close()


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_link_leading_outside_the_dataset_is_refused(station) -> None:
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    (src / "crack" / "b.png").symlink_to(root / "b.png")
    with pytest.raises(LabelImportError, match="leads outside the import folder"):
        import_labels(db, src, ImportOptions(format="imagefolder"))


def test_a_class_folder_linked_out_of_the_dataset_is_refused(station) -> None:
    """A session-48 probe: each class folder was its own bound, so ``patches -> /elsewhere`` was read and its file
    outside labelled, and ``loop -> ..`` walked the whole parent tree."""
    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack"})
    (src / "patches").symlink_to(root)   # the indexed folder itself: outside the import folder
    with pytest.raises(LabelImportError, match=r"leads outside the import folder .*tree"):
        import_labels(db, src, ImportOptions(format="imagefolder"))
    (src / "patches").unlink()
    (src / "loop").symlink_to("..")
    with pytest.raises(LabelImportError, match="leads outside the import folder"):
        import_labels(db, src, ImportOptions(format="imagefolder"))
    assert all(db.labels.current(i.id) is None for i in db.images.query())


def test_a_class_folder_that_cannot_be_read_refuses_the_import(station, monkeypatch) -> None:
    """A session-48 probe: a class folder made unreadable (chmod 000) was passed over by ``os.walk`` without a word,
    its class's labels lost from an import that said it went well."""
    import os as os_mod

    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack", "b.png": "scratch"})
    real = os_mod.scandir

    def scandir(path="."):
        if str(path).endswith("scratch"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os_mod, "scandir", scandir)
    with pytest.raises(LabelImportError, match=r"scratch: cannot be read \(Permission denied\); nothing was imported"):
        import_labels(db, src, ImportOptions(format="imagefolder"))
    assert all(db.labels.current(i.id) is None for i in db.images.query())


def test_a_class_starting_with_a_dot_is_refused_unless_the_project_has_it(station) -> None:
    """A session-52 audit: into a project without a class list, a CSV row ``a.png,.5mm pit`` was imported as it was,
    a class the list refuses; the station then exported it to a hidden folder that its own import passed over. The
    import refuses such a class, saying how to map it, unless the project's labels already use it (as the list keeps
    one it has)."""
    db, root, tmp = station
    db.classes.set("classifier", ())  # no list: every other class is taken as it is
    table = tmp / "labels.csv"
    table.write_text("rel_path,class\na.png,.5mm pit\nb.png,crack\n", encoding="utf-8")
    preview = preview_import(db, table, ImportOptions(format="csv"))
    assert any(e.startswith("class '.5mm pit': a class name cannot start with a dot") and "--map OLD=NEW" in e
               for e in preview.errors), preview.errors
    with pytest.raises(LabelImportError, match="cannot start with a dot"):
        apply_import(db, preview)
    mapped = import_labels(db, table, ImportOptions(format="csv", class_map={".5mm pit": "pit 5mm"}))
    assert mapped.preview.errors == () and mapped.written == 2
    ids = {Path(i.rel_path).stem: i.id for i in db.images.query()}
    db.labels.append(ids["d"], LabelChange(ReviewState.CORRECTED, class_name=".5mm pit"), "ann")  # labelled before
    assert preview_import(db, table, ImportOptions(format="csv")).errors == ()


@pytest.mark.parametrize("fmt", ["imagefolder", "mvtec"])
def test_images_in_a_hidden_class_folder_are_listed_unmatched_and_said(station, fmt: str) -> None:
    """A session-52 audit: a class folder starting with a dot (``.5mm pit``, the station's own export of such a class)
    was passed over by the ImageFolder and MVTec imports without a word, its labels lost. It is still no class, but
    its images are listed unmatched and a note says why."""
    db, root, tmp = station
    base = tmp / "tree" if fmt == "imagefolder" else tmp / "tree" / "test"
    src = class_tree(base, root, {"a.png": ".5mm pit", "b.png": "crack"})
    preview = preview_import(db, tmp / "tree", ImportOptions(format=fmt))
    hidden = ".5mm pit" if fmt == "imagefolder" else "test/.5mm pit"
    assert preview.errors == () and preview.unmatched == (f"{hidden}/a.png",) and preview.counts["matched"] == 1
    assert any(n.startswith(f"1 image in a hidden folder ({hidden}) passed over") for n in preview.notes), preview.notes
    assert src.exists()


def test_an_accepted_prediction_keeps_its_class_when_a_mask_is_imported(station) -> None:
    from database import PredictionIn

    db, root, tmp = station
    image_id = db.images.by_path(db.folders.list()[0].id, "b.png").id
    mv = db.model_versions.register("classifier", "clf-v1", "/nowhere")
    db.predictions.upsert_many([PredictionIn(image_id, mv.id, predicted_class="crack")])
    pred = db.predictions.get(image_id, mv.id)
    db.labels.append(image_id, LabelChange(ReviewState.ACCEPTED, from_prediction_id=pred.id), "ann")
    (tmp / "ds" / "masks").mkdir(parents=True)
    (tmp / "ds" / "masks" / "b.png").write_bytes(encode_mask(region()))
    os.utime(tmp / "ds" / "masks" / "b.png", (time.time() + 60,) * 2)
    assert import_labels(db, tmp / "ds", ImportOptions(format="masks")).written == 1
    lab = db.labels.current(image_id)
    assert lab.class_name == "crack" and lab.mask_png == encode_mask(region())
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("imagefolder",)))
    assert (out / "imagefolder" / "crack" / "b.png").is_file()


def test_masks_imported_onto_images_an_exif_tag_turns_are_said_and_a_turned_size_explained(tmp_path: Path) -> None:
    """Found by a session-45 probe: YOLO labels drawn in a tool that turns JPEGs by their EXIF orientation (as
    Ultralytics and CVAT show them) were imported onto the stored pixels without a word (fractions fit either way);
    a mask of the turned size was refused as only "mask is 48x64 but … is 64x48"."""
    import shutil

    from app.services.indexing import index_folder
    from database import open_database
    from tests.inference.test_simple_answer_thumbnails import _jpeg_turned_by_exif
    root = tmp_path / "line"
    root.mkdir()
    _jpeg_turned_by_exif(root / "turned.jpg")
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    index_folder(db, root)
    ds = tmp_path / "yolo"
    (ds / "images").mkdir(parents=True)
    shutil.copy(root / "turned.jpg", ds / "images" / "turned.jpg")
    write_json(ds / "labels" / "turned.txt", "0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    write_json(ds / "data.yaml", "names:\n  0: crack\n")
    from app.services.importing import preview_import
    preview = preview_import(db, ds, ImportOptions(format="yolo"))
    assert any("orientation tag" in n and "turned.jpg" in n for n in preview.notes)
    assert any(line.startswith("  note: 1 image given a mask carries") for line in preview.summary_lines())
    masks = tmp_path / "masks"
    (masks / "masks").mkdir(parents=True)
    (masks / "masks" / "turned.png").write_bytes(encode_mask(np.ones((64, 48), bool)))  # the turned size
    refused = preview_import(db, masks, ImportOptions(format="masks"))
    assert any("turned by its orientation tag" in e for e in refused.errors)
    # counted apart, not "unchanged" (a session-47 audit)
    assert refused.counts["unchanged"] == 0 and any("1 record not counted above: refused" in n
                                                    for n in refused.notes)
    db.close()


def test_a_yolo_set_naming_its_classes_in_classes_txt_imports_the_names(station) -> None:
    """Found by a session-45 probe: Label Studio's YOLO export names its classes in classes.txt, not data.yaml; the
    import gave the image the class "1" instead of "scratch"."""
    db, root, tmp = station
    db.classes.set("classifier", ["crack", "scratch"])
    write_json(tmp / "ls" / "labels" / "b.txt", f"1 {3 / W} {3 / H} {8 / W} {3 / H} {8 / W} {7 / H}\n")
    write_json(tmp / "ls" / "classes.txt", "crack\nscratch\n")
    (tmp / "ls" / "images").mkdir()
    result = import_labels(db, tmp / "ls", ImportOptions(format="yolo"))
    assert result.preview.errors == () and result.written == 1
    assert db.labels.current(db.images.by_path(db.folders.list()[0].id, "b.png").id).class_name == "scratch"


def test_a_yolo_set_naming_its_classes_inside_labels_imports_the_names(station) -> None:
    """labelImg writes classes.txt into the labels folder: it was read as a label file and refused the whole import
    ("expected '<class> x1 y1 …' numbers"; a session-47 audit)."""
    db, root, tmp = station
    db.classes.set("classifier", ["crack", "scratch"])
    write_json(tmp / "li" / "labels" / "b.txt", f"1 {3 / W} {3 / H} {8 / W} {3 / H} {8 / W} {7 / H}\n")
    write_json(tmp / "li" / "labels" / "classes.txt", "crack\nscratch\n")
    (tmp / "li" / "images").mkdir()
    result = import_labels(db, tmp / "li", ImportOptions(format="yolo"))
    assert result.preview.errors == () and result.preview.records == 1 and result.written == 1
    assert db.labels.current(db.images.by_path(db.folders.list()[0].id, "b.png").id).class_name == "scratch"


def test_a_compressed_rle_run_past_any_image_is_no_rle() -> None:
    from app.services.import_coco import rle_string_runs
    assert rle_string_runs("_" * 10 + "0") is None  # ten 5-bit groups: a run of 2**50 pixels
    assert rle_string_runs("04") is not None


def test_a_small_outline_on_a_large_image_is_decoded_within_its_box() -> None:
    """A session-49 audit: every COCO annotation was decoded, painted, counted and searched as a mask of the whole
    image, so 1,000 outlines of 12x9 pixels on 2048x2048 images took 52.7 s to read (50 ms each, whatever their
    size). An annotation is now decoded into its bounding box alone, with the same pixels."""
    from app.services.import_coco import decode_segmentation
    from benchmarks.import_coco_frames import full_frame_decode
    outline = [[100.0, 200.0, 112.0, 200.0, 112.0, 209.0, 100.0, 209.0]]
    (top, left), m = decode_segmentation(outline, 2048, 2048, "t")
    whole = full_frame_decode(outline, 2048, 2048, "t")[1]
    ys, xs = np.nonzero(whole)
    assert (top, left) == (ys.min(), xs.min()) and m.shape == (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert (m == whole[top:top + m.shape[0], left:left + m.shape[1]]).all()


def column_runs(mask: np.ndarray) -> list[int]:
    """A mask's uncompressed COCO counts: run lengths down each column in turn, the first one background."""
    flat = np.concatenate([[False], mask.T.reshape(-1), [not mask.T.reshape(-1)[-1]]])
    return np.diff(np.flatnonzero(flat[1:] != flat[:-1]), prepend=0).tolist()


def random_annotation(rng: np.random.Generator, width: int, height: int) -> dict:
    """An outline (often over the border), an RLE (iscrowd, uncompressed or compressed; empty, whole or at the
    image's edges) or a box alone."""
    kind = rng.integers(5)
    if kind == 0:
        def near(side: int, n: int) -> np.ndarray:  # up to 3 pixels past either edge (the reader's reach allowing)
            return rng.uniform(-min(3, side), min(side + 3, 2 * side), n)
        polys = [[float(v) for xy in zip(near(width, n), near(height, n)) for v in xy]
                 for n in rng.integers(3, 7, size=rng.integers(1, 3))]
        return {"segmentation": polys, "iscrowd": 0}
    if kind == 3:
        return {"segmentation": [], "iscrowd": 0, "bbox": [float(v) for v in rng.uniform(-4, max(width, height), 4)]}
    mask = rng.random((height, width)) < rng.choice([0.0, 0.05, 0.5, 1.0])
    if rng.random() < 0.5:  # a block, often against an edge of the image
        y, x = rng.integers(-2, height), rng.integers(-2, width)
        mask[max(0, y):y + rng.integers(1, 9), max(0, x):x + rng.integers(1, 9)] = True
        mask[:, -1] |= rng.random() < 0.2
    if kind == 1:
        return {"segmentation": {"size": [height, width], "counts": column_runs(mask)}, "iscrowd": 1}
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"segmentation": {"size": [height, width], "counts": rle["counts"].decode()}, "iscrowd": 1}


def test_coco_annotations_read_in_their_boxes_give_what_whole_image_masks_gave(tmp_path: Path, monkeypatch) -> None:
    """The session-49 speed-up (annotations decoded into their boxes, not the whole image) changes no byte: random
    outlines, RLEs and boxes on images of 1 to 40 pixels a side read to the same records (masks, overlaps, each
    image's class by area, each instance's first pixel for its own class) as with whole-image masks."""
    from app.services import import_coco
    from benchmarks.import_coco_frames import full_frame_decode
    rng = np.random.default_rng(49)
    images, anns = [], []
    for i in range(120):
        width, height = (int(v) for v in rng.integers(1, 41, 2))
        images.append({"id": i, "file_name": f"p{i}.png", "width": width, "height": height})
        if rng.random() < 0.2:
            images[-1]["class"] = "pit"
        for _ in range(rng.integers(0, 7)):
            ann = random_annotation(rng, width, height)
            anns.append({**ann, "id": len(anns), "image_id": i, "category_id": int(rng.integers(1, 4))})
            if ann["segmentation"]:
                got, whole = (f(ann["segmentation"], height, width, "t") for f in (
                    import_coco.decode_segmentation, full_frame_decode))
                (top, left), m = got
                painted = np.zeros((height, width), bool)
                painted[top:top + m.shape[0], left:left + m.shape[1]] = m
                assert (painted == whole[1]).all() and m.sum() == whole[1].sum()
    doc = tmp_path / "instances.json"
    write_json(doc, {"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "crack"}, {"id": 2, "name": "pit"}, {"id": 3, "name": "target"}]})
    now = import_coco.read(doc)
    monkeypatch.setattr(import_coco, "decode_segmentation", full_frame_decode)
    assert now == import_coco.read(doc)
    assert sum(r.mask.objects != () for r in now if r.mask) > 5  # instances with classes of their own were compared


def test_a_line_break_in_a_column_the_import_does_not_read_is_left_alone(station) -> None:
    """The session-46 review: a properly quoted line break in a notes column refused the whole file."""
    db, root, tmp = station
    src = tmp / "notes"
    src.mkdir()
    write_json(src / "t.csv", 'rel_path,class,notes\nb.png,crack,"seen twice\nby ann"\n')
    assert import_labels(db, src, ImportOptions(format="csv"), dry_run=True).preview.records == 1


def test_a_name_match_onto_other_bytes_and_a_record_labelled_twice_are_said(station) -> None:
    """Session-46 probes: labels of a dataset whose images share the station's names but not their bytes (another
    lot's parts, a camera's counter restarted) were imported by name without a word; and a record whose image is
    labelled twice was in no count ("43 records, 42 matched, 0 unmatched")."""
    import cv2
    import numpy as np

    db, root, tmp = station
    src = class_tree(tmp / "tree", root, {"a.png": "crack", "b.png": "good"})
    cv2.imwrite(str(src / "crack" / "a.png"), np.full((24, 32), 77, np.uint8))   # another part under the same name
    preview = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert any("matched by name although the dataset's image holds other bytes" in n and "a.png" in n
               for n in preview.notes), preview.notes
    (src / "good" / "b_again.png").write_bytes((src / "good" / "b.png").read_bytes())
    (src / "crack" / "b.png").write_bytes((src / "good" / "b.png").read_bytes())
    twice = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert any("2 records not counted above: refused" in n for n in twice.notes), twice.notes


def test_a_reviewed_at_without_an_offset_is_this_computers_local_time(station, monkeypatch) -> None:
    """A session-47 audit (TZ=Asia/Kolkata): a table's "06:46" written an hour before a label here was read as UTC,
    five and a half hours later, and replaced the newer label without --overwrite-newer."""
    import time as time_module
    from datetime import datetime, timedelta
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time_module.tzset()
    try:
        db, root, tmp = station
        image_id = db.images.by_path(db.folders.list()[0].id, "a.png").id
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="good"), "bob")  # now
        an_hour_ago = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")  # local, no offset
        (tmp / "t").mkdir()
        write_json(tmp / "t" / "t.csv", f"rel_path,class,reviewed_at\na.png,crack,{an_hour_ago}\n")
        result = import_labels(db, tmp / "t", ImportOptions(format="csv"))
        assert result.preview.counts["skipped_newer"] == 1 and result.written == 0
        assert db.labels.current(image_id).class_name == "good"
    finally:
        monkeypatch.undo()  # TZ as it was, and the process's local time with it
        time_module.tzset()


def test_a_small_labelme_shape_on_a_large_image_is_painted_within_its_box() -> None:
    """A session-49 audit: every labelme shape was painted on the whole image, which was summed twice per shape (and
    painted again on an image of its own for a class of its own), so 4,000 small triangles on a 4000x3000 image
    took 45 s to read. A shape is now painted into its bounding box alone."""
    from app.services.import_labelme import paint
    (top, left), m = paint({"label": "crack", "points": [[100, 200], [103, 200], [103, 203]]}, 4000, 3000, "t")
    assert (top, left) == (200, 100) and m.shape == (4, 4) and m[0].all() and m[:, -1].all() and not m[-1, 0]


def random_shape(rng: np.random.Generator, width: int, height: int) -> dict:
    """A polygon, rectangle (corners either way round) or circle, often over the border, degenerate or tiny."""
    kind = ("polygon", "rectangle", "circle")[rng.integers(3)]
    n = int(rng.integers(3, 8)) if kind == "polygon" else 2
    xs, ys = rng.uniform(-width, 2 * width, n), rng.uniform(-height, 2 * height, n)
    if rng.random() < 0.6:  # most near one point: small shapes, some a single pixel
        xs, ys = xs[0] + rng.uniform(-3, 3, n), ys[0] + rng.uniform(-3, 3, n)
    xs, ys = np.clip(xs, -width, 2 * width), np.clip(ys, -height, 2 * height)  # within the reader's reach
    if kind == "circle" and rng.random() < 0.3:
        xs[1], ys[1] = xs[0], ys[0]  # radius 0
    label = ("crack", "pit", "scratch")[rng.integers(3)]
    return {"label": label, "shape_type": kind, "points": [[float(x), float(y)] for x, y in zip(xs, ys)]}


def test_labelme_shapes_read_in_their_boxes_give_what_whole_image_painting_gave(tmp_path: Path) -> None:
    """The session-49 speed-up (each labelme shape painted and measured inside its box, not the whole image: 4,000
    small shapes on a 4000x3000 image took 45 s) changes no byte: random polygons, rectangles and circles, over the
    border and overlapping, on images of 1 to 40 pixels a side give the class (by area), mask and own-class first
    pixels that painting on the whole image gave."""
    from app.services import import_labelme
    from benchmarks.import_labelme_shapes import whole_canvas_read
    rng = np.random.default_rng(49)
    own = 0
    for i in range(300):
        width, height = (int(v) for v in rng.integers(1, 41, 2))
        doc = labelme_doc(f"p{i}.png", [random_shape(rng, width, height) for _ in range(rng.integers(1, 9))],
                          width, height)
        record = import_labelme.read_file(write_json(tmp_path / f"p{i}.json", doc), tmp_path)
        assert (record.class_name, record.mask) == whole_canvas_read(doc), doc
        own += len(record.mask.objects)
    assert own > 100  # shapes with classes of their own were compared


@pytest.mark.parametrize("annotations", [
    [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [2000, 3000], "counts": [0, 6_000_000]}}],
    []])
def test_a_large_coco_image_is_read_in_a_few_bytes_a_pixel(tmp_path: Path, annotations: list) -> None:
    """A session-49 audit: a 251-byte COCO file declaring one 14000x14000 image covered by one RLE peaked at 3.2 GB
    (its run ends counted in int64, 16 bytes a pixel, and every pixel's index listed for the first one), and the same
    image without annotations at 1.7 GB (the mask made 8 bytes a pixel on its way to PNG). Now a few bytes a pixel."""
    import tracemalloc

    from app.services import import_coco
    doc = write_json(tmp_path / "instances.json", {
        "images": [{"id": 1, "file_name": "a.png", "width": 3000, "height": 2000}],
        "annotations": annotations, "categories": [{"id": 1, "name": "crack"}]})
    tracemalloc.start()
    try:
        (record,) = import_coco.read(doc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert record.mask.width == 3000 and (record.class_name == "crack") == bool(annotations)
    assert peak < 6 * 6_000_000, f"{peak / 6e6:.1f} bytes a pixel"


def test_a_yolo_names_mapping_with_quoted_indexes_is_read(tmp_path: Path) -> None:
    """The review of a session-49 fix: refusing keys that are not class indexes refused {'0': 'crack'} too, as a
    JSON-style dump writes a names mapping; it was read before and is read again."""
    from app.services.import_yolo import class_names
    (tmp_path / "data.yaml").write_text("names: {'0': 'crack', '1': 'scratch'}\n", encoding="utf-8")
    assert class_names(tmp_path / "data.yaml") == {0: "crack", 1: "scratch"}


def test_a_listed_class_not_offered_on_the_lines_images_is_not_advised_for_adding(tmp_path: Path) -> None:
    """A session-50 review: "crazing" (on the project's list) given to a bottle where no classifier runs was refused,
    advised "add them to the project's classes" and offered by the dialog's button, which added nothing and came
    back. It says the class is on the list already and why it is not offered there; nothing is offered for adding."""
    from app.services import project_classes as pc
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database import open_database
    from tests.worker.helpers import good_images
    db = open_database(f"sqlite:///{tmp_path / 'st.sqlite'}")
    try:
        db.model_versions.register("classifier", "steel-v1", "/nowhere",
                                   card={"classes": ["crazing", "patches", "dent"]}, activate=True)
        root = tmp_path / "lot"
        for sub, seed in (("steel", 0), ("bottles", 1)):
            good_images(root / sub, 2, seed=seed)
        index_folder(db, root)
        save_routing(db, Routing((RoutingRule("bottles/*", ("anomaly",), ()),)))   # no classifier on bottles
        pc.add(db, ["scratch"])
        src = class_tree(tmp_path / "tree", root, {"bottles/img_000.png": "crazing", "steel/img_000.png": "dent"})
        preview = preview_import(db, src, ImportOptions(format="imagefolder"))
        assert preview.unknown_classes == ()
        said = preview.errors[0]
        assert "crazing is on the project's list already" in said and "add them to the project's classes" not in said
    finally:
        db.close()


def test_a_listed_class_in_another_spelling_or_also_routed_is_said_as_listed(tmp_path: Path) -> None:
    """A session-50 review: "Crazing" beside a listed "crazing" was offered for adding (the list then refused it as
    on the list twice), and a listed class that a routed classifier also has, given to a bottle where no classifier
    runs, was said to be "offered on every line" if added. Both are said as listed; nothing is offered for adding."""
    from app.services import project_classes as pc
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database import open_database
    from tests.worker.helpers import good_images
    db = open_database(f"sqlite:///{tmp_path / 'st.sqlite'}")
    try:
        db.model_versions.register("classifier", "steel-v1", "/nowhere",
                                   card={"classes": ["crazing", "crack", "dent"]}, activate=True)
        db.model_versions.register("classifier", "tile-v1", "/nowhere2", card={"classes": ["crack", "free"]})
        root = tmp_path / "lot"
        for sub, seed in (("steel", 0), ("bottles", 1), ("tiles", 2)):
            good_images(root / sub, 2, seed=seed)
        index_folder(db, root)
        save_routing(db, Routing((RoutingRule("bottles/*", ("anomaly",), ()),
                                  RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)))))
        pc.add(db, ["scratch"])
        src = class_tree(tmp_path / "tree", root, {"bottles/img_000.png": "crack", "steel/img_000.png": "Crazing"})
        preview = preview_import(db, src, ImportOptions(format="imagefolder"))
        said = preview.errors[0]
        assert preview.unknown_classes == ()
        assert "Crazing (listed as crazing), crack are on the project's list already" in said, said
        assert "offered on every line" not in said and "add them to the project's classes" not in said
    finally:
        db.close()


def test_another_spelling_of_a_routed_class_is_not_offered_for_adding(tmp_path: Path) -> None:
    """A session-50 review: "Crack" on a steel image, beside a routed tile classifier's "crack", was offered for adding
    and the class list refused it ("would share a class folder"). It is said as another spelling, to be mapped."""
    from app.services import project_classes as pc
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database import open_database
    from tests.worker.helpers import good_images
    db = open_database(f"sqlite:///{tmp_path / 'st.sqlite'}")
    try:
        db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": ["crazing", "dent"]},
                                   activate=True)
        db.model_versions.register("classifier", "tile-v1", "/nowhere2", card={"classes": ["crack", "free"]})
        root = tmp_path / "lot"
        for sub, seed in (("steel", 0), ("tiles", 1)):
            good_images(root / sub, 2, seed=seed)
        index_folder(db, root)
        save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
        pc.add(db, ["scratch"])
        src = class_tree(tmp_path / "tree", root, {"steel/img_000.png": "Crack"})
        preview = preview_import(db, src, ImportOptions(format="imagefolder"))
        assert preview.unknown_classes == ()
        assert "Crack is another spelling of crack" in preview.errors[0], preview.errors[0]
    finally:
        db.close()
