"""Per-object classes (issue 23 item 5): seeds stored with the revision, kept through history,
exported per instance (COCO, YOLO, the CSV) and read back by every instance format."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.export import ExportOptions, export_database
from app.services.importing import ImportOptions, import_labels
from app.services.object_classes import (
    ObjectClass,
    ObjectClassError,
    as_json,
    objects_of,
    parse,
    resolve,
    with_class,
)
from database import LabelChange, ReviewState
from tests.services.export_fixtures import H, W
from tests.services.import_fixtures import (
    block_and_dot,  # object 1 at (2, 3), object 2 at (15, 20)
    label_object_classes,
    label_station,
    open_station,
)

# -- the seeds ---------------------------------------------------------------------------------

def test_resolve_moves_each_seed_to_its_components_first_pixel_and_drops_erased_ones() -> None:
    mask = block_and_dot()
    seeds = (ObjectClass(5, 8, "scratch"), ObjectClass(20, 1, "crack"))  # the second lies on background
    assert resolve(mask, seeds) == (ObjectClass(2, 3, "scratch"),)
    mask[2:6, 3:9] = False  # the object is erased: its class goes with it
    assert resolve(mask, seeds) == ()
    assert resolve(None, seeds) == () and resolve(block_and_dot(), ()) == ()


def test_two_classified_objects_painted_into_one_keep_the_first_listed_class() -> None:
    mask = block_and_dot()
    seeds = (ObjectClass(15, 20, "scratch"), ObjectClass(2, 3, "crack"))
    mask[6, 8:20] = True  # a stroke joins them
    mask[6:15, 19] = True
    assert resolve(mask, seeds) == (ObjectClass(2, 3, "scratch"),)


def test_an_object_trimmed_at_its_first_pixel_or_cut_in_two_keeps_its_class_given_the_mask_before() -> None:
    """Found by a session-45 probe: erasing a few pixels at an object's top-left corner dropped the class the
    inspector gave it (the object kept nearly all its pixels), and of an object cut in two only the top-left piece
    kept it; the other half quietly took the image's class."""
    before = block_and_dot()  # object 1's first pixel at (2, 3), its box rows 2-5, columns 3-8
    seeds = (ObjectClass(2, 3, "scratch"),)
    trimmed = before.copy()
    trimmed[2, 3:5] = False
    assert resolve(trimmed, seeds) == ()  # without the mask before, as before: the anchor pixel is gone
    assert resolve(trimmed, seeds, before) == (ObjectClass(2, 5, "scratch"),)
    cut = before.copy()
    cut[:, 5] = False
    assert resolve(cut, seeds, before) == (ObjectClass(2, 3, "scratch"), ObjectClass(2, 6, "scratch"))
    merged = before.copy()  # the merge rule stands: the seed lying in the component wins
    merged[6, 8:20] = True
    merged[6:15, 19] = True
    assert resolve(merged, (ObjectClass(15, 20, "crack"), ObjectClass(2, 3, "scratch")), before) == (
        ObjectClass(2, 3, "crack"),)


def test_objects_of_lists_every_component_with_its_own_or_the_images_class() -> None:
    mask = block_and_dot()
    found = objects_of(mask, (ObjectClass(15, 20, "scratch"),), "crack")
    assert [(o.number, o.own_class, o.seed.class_name, o.pixels, o.box) for o in found] == [
        (1, None, "crack", 24, (3, 2, 6, 4)), (2, "scratch", "scratch", 1, (20, 15, 1, 1))]
    assert objects_of(np.zeros((H, W), bool), (), "crack") == []


def test_with_class_sets_and_clears_one_object() -> None:
    mask = block_and_dot()
    seeds = with_class(mask, (), 5, 3, "scratch")
    assert seeds == (ObjectClass(2, 3, "scratch"),)
    seeds = with_class(mask, seeds, 20, 15, "good")
    assert seeds == (ObjectClass(2, 3, "scratch"), ObjectClass(15, 20, "good"))
    assert with_class(mask, seeds, 4, 2, None) == (ObjectClass(15, 20, "good"),)
    with pytest.raises(ObjectClassError, match="no object"):
        with_class(mask, seeds, 0, 0, "crack")


@pytest.mark.parametrize("bad", ["x", [1], [{"x": -1, "y": 0, "class": "a"}], [{"x": 1.5, "y": 0, "class": "a"}],
                                 [{"x": 1, "y": 0, "class": ""}], [{"x": True, "y": 0, "class": "a"}]])
def test_malformed_object_classes_are_refused(bad) -> None:
    with pytest.raises(ObjectClassError):
        parse(bad)


def test_parse_reads_what_as_json_writes() -> None:
    seeds = (ObjectClass(2, 3, "scratch"), ObjectClass(15, 20, "good"))
    assert parse(as_json(seeds)) == seeds and as_json(()) is None and parse(None) == ()


# -- storage and history ------------------------------------------------------------------------

def test_revisions_keep_object_classes_and_their_history(object_station) -> None:
    db, _, _ = object_station
    ids = label_station(db)  # image 'a': class crack, block and dot, saved without object classes
    old = db.labels.current(ids["a"])
    assert old.object_classes is None  # an old revision means: every object has the image's class
    seeds = as_json([ObjectClass(15, 20, "scratch")])
    rev = db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, object_classes=seeds), "ann")
    assert rev.changed == ("objects",) and rev.object_classes == seeds
    assert rev.mask_png == old.mask_png and rev.class_name == "crack"  # the rest carried over
    back = db.labels.revert(ids["a"], old.revision, "ann")
    assert back.object_classes is None and "objects" in back.changed
    again = db.labels.revert(ids["a"], rev.revision, "ann")
    assert again.object_classes == seeds
    assert [r.object_classes for r in db.labels.history(ids["a"])] == [None, seeds, None, seeds]
    with pytest.raises(ValueError, match="object classes"):
        db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, object_classes="scratch"), "ann")


# -- export and import --------------------------------------------------------------------------

def coco_categories(out: Path) -> list[str]:
    doc = json.loads((out / "coco" / "annotations" / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    image = next(i for i in doc["images"] if i["file_name"] == "a.png")
    anns = sorted((a for a in doc["annotations"] if a["image_id"] == image["id"]), key=lambda a: a["bbox"][1])
    return [names[a["category_id"]] for a in anns]


def test_export_gives_each_instance_its_own_class(object_station) -> None:
    db, _, tmp = object_station
    label_object_classes(db)
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("coco", "yolo", "csv")))
    assert coco_categories(out) == ["crack", "scratch"]  # not the image's class twice
    names = {}
    for line in (out / "yolo" / "data.yaml").read_text().splitlines():
        if line.startswith("  ") and ":" in line:
            k, v = line.strip().split(":", 1)
            names[int(k)] = json.loads(v)
    lines = (out / "yolo" / "labels" / "a.txt").read_text().splitlines()
    assert sorted(names[int(x.split()[0])] for x in lines) == ["crack", "scratch"]
    rows = {r["rel_path"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["a.png"]["target_classes"] == "crack:1;scratch:1" and rows["a.png"]["class"] == "crack"
    assert rows["sub/c.jpg"]["target_classes"] == ""


def test_labelme_shapes_keep_their_own_labels(object_station) -> None:
    db, root, tmp = object_station
    doc = {"version": "5.4.1", "flags": {}, "imagePath": "a.png", "imageWidth": W, "imageHeight": H, "imageData": None,
           "shapes": [{"label": "crack", "points": [[2, 2], [9, 2], [9, 6], [2, 6]], "shape_type": "polygon"},
                      {"label": "scratch", "points": [[20, 15], [22, 17]], "shape_type": "rectangle"}]}
    (root / "a.json").write_text(json.dumps(doc))
    assert import_labels(db, root, ImportOptions(format="labelme")).written == 1
    a = db.images.by_path(db.folders.list()[0].id, "a.png").id
    lab = db.labels.current(a)
    assert lab.class_name == "crack"  # the largest area
    assert parse(lab.object_classes) == (ObjectClass(15, 20, "scratch"),)
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("coco",)))
    assert coco_categories(out) == ["crack", "scratch"]


def test_an_unknown_object_class_refuses_the_import_and_a_mapping_fixes_it(object_station) -> None:
    db, root, tmp = object_station
    label_object_classes(db)
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("coco",)))
    fresh = open_station(tmp, "fresh", root)  # knows good and crack only
    preview = import_labels(fresh, out, ImportOptions(format="coco"), dry_run=True).preview
    assert any("unknown class scratch" in e for e in preview.errors)
    result = import_labels(fresh, out, ImportOptions(format="coco", class_map={"scratch": "good"}))
    a = fresh.images.by_path(fresh.folders.list()[0].id, "a.png").id
    assert result.written > 0 and parse(fresh.labels.current(a).object_classes) == (ObjectClass(15, 20, "good"),)
    fresh.close()


def test_a_mask_import_replaces_the_objects_with_its_own(object_station) -> None:
    """A masks folder holds no classes: the new mask's objects take the image's class."""
    db, root, tmp = object_station
    ids = label_object_classes(db)
    masks = tmp / "masks"
    masks.mkdir()
    m = block_and_dot()
    cv2.imwrite(str(masks / "a.png"), np.where(m, 255, 0).astype(np.uint8))
    # The mask file must be newer than the label it replaces; written right after the label, its
    # modification time (the file system's clock, coarser than Python's) could read a few ms older.
    os.utime(masks / "a.png", (time.time() + 60,) * 2)
    assert import_labels(db, masks, ImportOptions(format="masks")).written == 1
    assert db.labels.current(ids["a"]).object_classes is None


def test_a_garbled_object_list_is_refused_on_export_with_a_reason(object_station) -> None:
    db, _, tmp = object_station
    ids = label_station(db)
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, object_classes=[{"x": "2", "y": 3}]), "tamper")
    result = export_database(db, tmp / "export", ExportOptions(formats=("coco",)))
    assert any("a.png: refused, its stored object classes are unusable" in r for r in result.skipped)


def test_an_import_with_more_classified_regions_than_kept_is_refused(object_station, monkeypatch) -> None:
    import app.services.importing as importing

    db, root, _ = object_station
    doc = {"version": "5.4.1", "flags": {}, "imagePath": "a.png", "imageWidth": W, "imageHeight": H, "imageData": None,
           "shapes": [{"label": "crack", "points": [[2, 2], [9, 2], [9, 6], [2, 6]], "shape_type": "polygon"},
                      {"label": "scratch", "points": [[20, 15], [22, 17]], "shape_type": "rectangle"},
                      {"label": "good", "points": [[25, 20], [26, 21]], "shape_type": "rectangle"}]}
    (root / "a.json").write_text(json.dumps(doc))
    monkeypatch.setattr(importing, "MAX_OBJECTS", 1)
    preview = import_labels(db, root, ImportOptions(format="labelme"), dry_run=True).preview
    assert any("2 regions with a class of their own" in e for e in preview.errors)


def test_an_objects_class_in_words_marks_the_images_class_as_such() -> None:
    mask = np.zeros((8, 8), bool)
    mask[1, 1] = mask[5, 5] = True
    first, second = objects_of(mask, (ObjectClass(5, 5, "scratch"),), None)
    assert (first.shown_class, second.shown_class) == ("no class (image's)", "scratch")
    first, second = objects_of(mask, (ObjectClass(5, 5, "scratch"),), "crack")
    assert (first.shown_class, second.shown_class) == ("crack (image's)", "scratch")
