"""Export -> import into a fresh database -> export gives the same files, for every format."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.services.export import ExportOptions, export_database
from app.services.export_split import SplitSpec
from app.services.importing import ImportOptions, import_labels, preview_import
from app.services.object_classes import ObjectClass, as_json, parse
from tests.services.import_fixtures import (
    DERIVED_COLUMNS,
    OBJECT_CLASSES,
    REVIEW_COLUMNS,
    assert_same_export,
    label_object_classes,
    label_station,
    make_folder,
    open_station,
)

FORMATS = ("imagefolder", "masks", "coco", "mvtec", "yolo", "csv")


@pytest.fixture
def exported(tmp_path: Path):
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "first", root)
    label_station(db)
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=FORMATS))
    db.close()
    return tmp_path, root, out


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_per_format(exported, fmt: str) -> None:
    tmp, root, out = exported
    fresh = open_station(tmp, f"fresh-{fmt}", root)
    result = import_labels(fresh, out, ImportOptions(format=fmt))
    assert result.preview.errors == () and result.preview.unmatched == ()
    assert result.written == result.preview.counts["matched"] > 0
    again = tmp / f"again-{fmt}"
    export_database(fresh, again, ExportOptions(formats=(fmt,)))
    fresh.close()
    # The CSV holds classes, verdicts and states; its mask counts come from masks it does not carry.
    assert_same_export(out, again, REVIEW_COLUMNS + (DERIVED_COLUMNS if fmt == "csv" else ()),
                       only="summary.csv" if fmt == "csv" else fmt)


def test_round_trip_of_a_whole_export_with_split(tmp_path: Path) -> None:
    """Masks, MVTec and the CSV together give back every label part, split included."""
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "first", root)
    label_station(db)
    split = SplitSpec.parse("0.5,0.5")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=FORMATS, split=split))
    fresh = open_station(tmp_path, "fresh", root)
    for fmt in ("masks", "mvtec", "csv"):
        import_labels(fresh, out, ImportOptions(format=fmt))
    again = tmp_path / "again"
    export_database(fresh, again, ExportOptions(formats=FORMATS, split=split))
    assert_same_export(out, again)
    for image_id in (i.id for i in fresh.images.query()):
        history = fresh.labels.history(image_id)
        assert all(r.note.startswith("imported from ") for r in history)
    db.close()
    fresh.close()


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_round_trip_keeps_per_object_classes(object_station, fmt: str) -> None:
    db, root, tmp = object_station
    ids = label_object_classes(db)
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=(fmt,)))
    fresh = open_station(tmp, f"fresh-{fmt}", root)
    fresh.classes.set("classifier", OBJECT_CLASSES)
    result = import_labels(fresh, out, ImportOptions(format=fmt))
    assert result.preview.errors == ()
    fresh_a = fresh.images.by_path(fresh.folders.list()[0].id, "a.png").id
    assert parse(fresh.labels.current(fresh_a).object_classes) == (ObjectClass(15, 20, "scratch"),)
    assert fresh.labels.current(fresh_a).class_name == "crack"
    again = tmp / f"again-{fmt}"
    export_database(fresh, again, ExportOptions(formats=(fmt,)))
    assert_same_export(out, again, only=fmt)
    # Importing the same export again changes nothing.
    assert import_labels(fresh, out, ImportOptions(format=fmt)).written == 0
    fresh.close()
    assert db.labels.current(ids["a"]).object_classes == as_json([ObjectClass(15, 20, "scratch")])


def test_yolo_gives_an_image_without_a_class_none_from_its_objects(object_station) -> None:
    """Found by a session-43 probe: an image with no class whose objects carry their own classes came back from the
    station's YOLO export with an object's class as its own (the export's "target" for its plain objects lost the
    vote to them), and its plain object took it too."""
    from database import LabelChange, ReviewState
    db, root, tmp = object_station
    ids = label_object_classes(db)
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name=None), "ann")
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("yolo",)))
    fresh = open_station(tmp, "fresh-yolo-none", root)
    fresh.classes.set("classifier", OBJECT_CLASSES)
    assert import_labels(fresh, out, ImportOptions(format="yolo")).preview.errors == ()
    got = fresh.labels.current(fresh.images.by_path(fresh.folders.list()[0].id, "a.png").id)
    assert got.class_name is None and parse(got.object_classes) == (ObjectClass(15, 20, "scratch"),)
    fresh.close()


def test_yolo_keeps_the_image_class_when_its_own_classed_regions_only_tie_with_its_plain_ones(object_station) -> None:
    """A session-52 audit: an image of class crack with one region of its own class first in reading order and one
    plain region came back from the station's own YOLO export as that region's class (the first line won the tie),
    though docs/import.md says it takes theirs only when they outnumber its plain ones. The export lists the plain
    regions first, and the import takes the first listed among equals."""
    from database import LabelChange, ReviewState
    db, root, tmp = object_station
    ids = label_object_classes(db)
    block = ObjectClass(2, 3, "scratch")  # the block (first in reading order) of its own class, the dot plain
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, object_classes=as_json([block])), "ann")
    out = tmp / "export"
    export_database(db, out, ExportOptions(formats=("yolo",)))
    result = import_labels(db, out, ImportOptions(format="yolo"))
    assert result.preview.errors == () and result.written == 0, result.preview.summary_lines()
    got = db.labels.current(ids["a"])
    assert got.class_name == "crack" and parse(got.object_classes) == (block,)


def test_a_quoted_yolo_class_name_keeps_a_hash_in_it() -> None:
    """`"defect #2"` in data.yaml was read as `defect` (the comment rule cut it; a session-43 probe)."""
    from app.services.import_yolo import scalar
    assert scalar('"defect #2"  # the second kind') == "defect #2"
    assert scalar("'it''s #3' # YAML's own escape") == "it's #3"
    assert scalar("crack # a comment") == "crack"


def test_a_class_name_beyond_the_basic_plane_is_written_as_itself_in_data_yaml(tmp_path: Path) -> None:
    """Found by a session-45 probe: `𝛼-crack` was written as "\\ud835\\udefc-crack" (JSON's surrogate pair), which
    YAML readers and this station's own import read as two lone surrogates: the import refused its own export."""
    from app.services.export_instances import YoloWriter
    from app.services.import_yolo import scalar
    writer = YoloWriter(tmp_path, ["𝛼-crack", "ok"], ("train",))
    writer.images = 1  # as after one image was written
    writer.finish()
    names = [line.split(":", 1)[1] for line in (tmp_path / "yolo" / "data.yaml").read_text("utf-8").splitlines()
             if line.startswith("  0:") or line.startswith("  1:")]
    assert [scalar(n) for n in names] == ["𝛼-crack", "ok"]


@pytest.mark.parametrize("fmt", ["imagefolder", "masks", "yolo"])
def test_images_whose_export_names_collided_come_back_each_to_its_own(tmp_path: Path, fmt: str) -> None:
    """Found by a session-43 probe: `sub/c.png` and `sub__c.png` (the same bytes) share the flat name `sub__c.png`,
    and the export names each with a hash of its path; the import knew no such names and left both unmatched."""
    import shutil

    import numpy as np

    from app.services.export_items import encode_mask
    from database import LabelChange, ReviewState
    from tests.services.export_fixtures import H, W, write_image
    root = tmp_path / "lot"
    write_image(root / "sub" / "c", 1)
    shutil.copy(root / "sub" / "c.png", root / "sub__c.png")
    db = open_station(tmp_path, "first", root)
    db.classes.set("classifier", ["crack", "good"])
    m = np.zeros((H, W), bool)
    m[2:5, 2:5] = True
    given = {}
    for image, cls in zip(sorted(db.images.query(), key=lambda i: i.rel_path), ("crack", "good")):
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=cls, mask_png=encode_mask(m)), "ann")
        given[image.rel_path] = cls
    export_database(db, tmp_path / "export", ExportOptions(formats=(fmt,)))
    fresh = open_station(tmp_path, f"fresh-{fmt}", root)
    fresh.classes.set("classifier", ["crack", "good"])
    result = import_labels(fresh, tmp_path / "export", ImportOptions(format=fmt))
    assert result.preview.unmatched == () and result.written == 2
    if fmt == "imagefolder":
        assert {i.rel_path: fresh.labels.current(i.id).class_name for i in fresh.images.query()} == given
    fresh.close()
    db.close()


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_a_class_named_target_survives_a_round_trip(tmp_path: Path, fmt: str) -> None:
    """Found by a session-45 probe (an infrared project whose classes are target, aircraft, glint): the class
    "target" shared its id with the export's "no class" placeholder, and the import read it as no class: an image
    of class target came back with none, an object of class target took the image's class."""
    import cv2
    import numpy as np

    from app.services.export_items import encode_mask
    from app.services.indexing import index_folder
    from database import LabelChange, ReviewState, open_database
    root = tmp_path / "ir"
    root.mkdir()
    for i, name in enumerate(("f1.png", "f2.png", "f3.png")):
        cv2.imwrite(str(root / name), np.random.default_rng(i).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    classes = ["target", "aircraft", "glint"]

    def station(name: str):
        db = open_database(f"sqlite:///{(tmp_path / f'{name}.sqlite').as_posix()}")
        index_folder(db, root)
        db.classes.set("classifier", classes)
        return db
    db = station("first")
    ids = {i.rel_path: i.id for i in db.images.query()}
    m = np.zeros((20, 30), bool)
    m[2:5, 2:5] = m[10:13, 10:13] = m[15:18, 20:23] = True
    labels = {"f1.png": ("target", [ObjectClass(10, 10, "aircraft"), ObjectClass(15, 20, "glint")]),
              "f2.png": ("aircraft", [ObjectClass(15, 20, "target")]), "f3.png": (None, [])}
    for name, (cls, objects) in labels.items():
        db.labels.append(ids[name], LabelChange(ReviewState.CORRECTED, class_name=cls, mask_png=encode_mask(m),
                                                object_classes=as_json(objects)), "ann")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=(fmt,)))
    fresh = station(f"fresh-{fmt}")
    assert import_labels(fresh, out, ImportOptions(format=fmt)).preview.errors == ()
    for image in fresh.images.query():
        got = fresh.labels.current(image.id)
        cls, objects = labels[image.rel_path]
        assert (got.class_name, parse(got.object_classes)) == (cls, tuple(objects)), image.rel_path
    db.close()
    fresh.close()


def test_the_stations_csv_comes_back_onto_two_folders_of_one_name(tmp_path) -> None:
    """A session-46 probe: with `parts` and `other/parts` indexed, the station's own summary.csv came back mostly
    unmatched ('folder/rel_path' named two images); its `path` column names each one."""
    import cv2
    import numpy as np

    from app.services.export import ExportOptions, export_database
    from app.services.importing import ImportOptions, import_labels
    from app.services.indexing import index_folder
    from database import LabelChange, ReviewState, open_database

    roots = [tmp_path / "parts", tmp_path / "other" / "parts"]
    for k, root in enumerate(roots):
        (root / "lot1").mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / "lot1" / f"p{i}.png"), np.full((8, 8), 10 * i + 100 * k, np.uint8))
    db = open_database(f"sqlite:///{(tmp_path / 'a.sqlite').as_posix()}")
    for root in roots:
        index_folder(db, root)
    for im in db.images.query():
        root = next(f.root_path for f in db.folders.list() if f.id == im.folder_id)
        db.labels.append(im.id, LabelChange(ReviewState.CORRECTED,
                                            class_name="near" if "other" not in root else "far"), "ann")
    export_database(db, tmp_path / "exp", ExportOptions(formats=("csv",)))
    db.close()
    fresh = open_database(f"sqlite:///{(tmp_path / 'b.sqlite').as_posix()}")
    fresh.classes.set("classifier", ("near", "far"))
    for root in roots:
        index_folder(fresh, root)
    result = import_labels(fresh, tmp_path / "exp", ImportOptions(format="csv"))
    assert result.preview.records == 6 and not result.preview.unmatched and result.written == 6
    for im in fresh.images.query():
        root = next(f.root_path for f in fresh.folders.list() if f.id == im.folder_id)
        assert fresh.labels.current(im.id).class_name == ("far" if "other" in root else "near")
    fresh.close()


@pytest.mark.parametrize("fmt", ["imagefolder", "mvtec"])
def test_a_class_whose_name_is_no_folder_name_comes_back(tmp_path: Path, fmt: str) -> None:
    """A session-48 probe: "pit/dent" is written as the folder "pit_dent" (documented), and importing the export into a
    project whose class list holds "pit/dent" refused it ("unknown class(es) pit_dent"); without a list the class came
    back renamed. The export's manifest names the folder's class, and the import reads it."""
    import cv2
    import numpy as np

    from app.services.indexing import index_folder
    from database import AnomalyVerdict, LabelChange, ReviewState, open_database
    root = tmp_path / "parts"
    root.mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        cv2.imwrite(str(root / name), np.random.default_rng(i).integers(0, 256, (20, 30), dtype=np.uint8))

    def station(name: str):
        db = open_database(f"sqlite:///{(tmp_path / f'{name}.sqlite').as_posix()}")
        index_folder(db, root)
        db.classes.set("classifier", ["pit/dent", "ok"])
        return db
    db = station("first")
    for im in db.images.query():
        db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name="pit/dent",
                                            anomaly_verdict=AnomalyVerdict.ANOMALOUS), "ann")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=(fmt,)))
    db.close()
    fresh = station(f"fresh-{fmt}")
    result = import_labels(fresh, out / fmt, ImportOptions(format=fmt))
    assert result.preview.errors == () and result.written == 2
    assert {fresh.labels.current(i.id).class_name for i in fresh.images.query()} == {"pit/dent"}
    fresh.close()
    if fmt == "imagefolder":   # a split part's folder finds the manifest too; a hostile one is passed over
        import json
        db = station("first-again")
        for im in db.images.query():
            db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name="pit/dent"), "ann")
        export_database(db, tmp_path / "split", ExportOptions(formats=("imagefolder",), split=SplitSpec(0.5, 0.5, 0)))
        db.close()
        part = station("part")
        assert import_labels(part, tmp_path / "split" / "imagefolder" / "train", ImportOptions(format=fmt)).written == 1
        assert {lab.class_name for i in part.images.query() if (lab := part.labels.current(i.id))} == {"pit/dent"}
        part.close()
        manifest = tmp_path / "split" / "export.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "per_format": ["not", "an", "object"]}))
        from app.services.import_records import exported_class_folders
        assert exported_class_folders(tmp_path / "split" / "imagefolder" / "train", fmt) == {}


def test_routed_tile_labels_come_back_once_the_project_keeps_a_list(tmp_path: Path) -> None:
    """A session-50 audit: the routing sent tiles/* to the tile classifier, whose classes (blowhole … uneven) the
    panel offered on keys 1–6 there, and an inspector labelled tiles with them. Once the project kept its own list
    (``classes add dent``), importing the station's own export of those labels back was refused: "unknown classes
    crack, free: the station's classes are crazing, dent, …; … or add them to the project's classes", though they
    were the labels already stored ("unchanged 2"), and the advice, followed, put the tile classes on every steel
    image's keys. A class is known where the station offers it on the image its record matched; the refusal says
    what each line is offered, and advises adding to the list only a class no routed classifier has."""
    from app.services import project_classes as pc
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.review import ReviewService
    from app.services.routing import Routing, RoutingRule
    from database import open_database
    from database.dto import LabelChange, PredictionIn
    from database.states import ReviewState
    from tests.services.test_import_labels import class_tree
    from tests.worker.helpers import good_images

    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": ["crazing", "patches"]},
                               activate=True)
    tile = db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "free"]})
    root = tmp_path / "lot"
    for sub, seed in (("steel", 0), ("tiles", 1)):
        good_images(root / sub, 2, seed=seed)
    index_folder(db, root)
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
    ids = {i.rel_path: i.id for i in db.images.query()}
    db.predictions.upsert_many([PredictionIn(ids["tiles/img_001.png"], tile.id, class_scores={"blowhole": 0.2,
                                                                                              "free": 0.8},
                                             predicted_class="free", confidence=0.8)])   # one tile answered
    pc.add(db, ["dent"])                                                  # the project's own list
    svc = ReviewService(db)
    for rel, name in (("tiles/img_000.png", "blowhole"), ("tiles/img_001.png", "free"),
                      ("steel/img_000.png", "patches")):
        assert name in svc.detail(ids[rel]).classes                       # the keys the inspector labelled with
        db.labels.append(ids[rel], LabelChange(ReviewState.CORRECTED, class_name=name), "insp")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=("imagefolder",)))

    back = import_labels(db, out, ImportOptions(format="imagefolder"), dry_run=True).preview
    assert back.errors == () and back.unknown_classes == ()
    assert back.counts["matched"] == back.counts["unchanged"] == 3

    # a tile class on a steel image, and a class no classifier has on a tile: refused, each line's offer named
    src = class_tree(tmp_path / "tree", root, {"steel/img_001.png": "blowhole", "tiles/img_000.png": "pit"})
    refused = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert refused.errors[0].startswith(
        "unknown classes blowhole, pit: the station offers crazing, patches, dent on lot/steel/ (where the active "
        "classifier runs); blowhole, free, dent on lot/tiles/ (where tile-v1 runs); map them onto those")
    assert "or add pit to the project's classes" in refused.errors[0]
    assert "blowhole is tile-v1's class, offered only on the images the model routing sends there" in refused.errors[0]
    assert refused.unknown_classes == ("pit",)   # what "Add N classes to the project" adds: never a tile class
    db.close()


def test_a_class_and_a_file_name_starting_like_a_formula_come_back_unchanged(tmp_path: Path) -> None:
    """A session-51 audit: summary.csv wrote a class "=1+2" or a file "=x.png" as it was, a live formula in a
    spreadsheet; the cells now start with a quote, and the station's import takes exactly that quote off again."""
    import csv

    import cv2
    import numpy as np

    from app.services.indexing import index_folder
    from database import LabelChange, ReviewState, open_database
    root = tmp_path / "parts"
    root.mkdir()
    given = {"=x.png": "=1+2", "plain.png": "'=quoted", "-y.png": "'plain"}
    for i, name in enumerate(given):
        cv2.imwrite(str(root / name), np.full((8, 8), 40 * i, np.uint8))

    def station(name: str):
        db = open_database(f"sqlite:///{(tmp_path / f'{name}.sqlite').as_posix()}")
        index_folder(db, root)
        return db
    db = station("first")
    for image in db.images.query():
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=given[image.rel_path]), "ann")
    export_database(db, tmp_path / "exp", ExportOptions(formats=("csv",)))
    db.close()
    with (tmp_path / "exp" / "summary.csv").open(encoding="utf-8", newline="") as fh:
        written = {r["rel_path"]: (r["file_name"], r["class"]) for r in csv.DictReader(fh)}
    assert written["'=x.png"] == ("'=x.png", "'=1+2")
    assert written["plain.png"] == ("plain.png", "''=quoted")  # one more quote: it reads back as it was
    assert written["'-y.png"] == ("'-y.png", "'plain")  # no formula after the quote: written as it is
    fresh = station("fresh")
    result = import_labels(fresh, tmp_path / "exp", ImportOptions(format="csv"))
    assert result.preview.errors == () and result.preview.unmatched == () and result.written == 3
    assert {i.rel_path: fresh.labels.current(i.id).class_name for i in fresh.images.query()} == given
    fresh.close()


def test_another_tools_table_keeps_its_quotes(tmp_path: Path) -> None:
    """The quote is taken off only in the station's own summary.csv (a session-51 audit): in a table of another tool
    a class "'=x" is that tool's text and is read as it is."""
    from app.services.import_csv import read
    table = tmp_path / "labels.csv"
    table.write_text("file_name,class\na.png,'=x\n", encoding="utf-8")
    [record] = read(table)
    assert (record.image_ref, record.class_name) == ("a.png", "'=x")


def test_one_lines_summary_csv_lands_only_on_its_own_folder(tmp_path: Path) -> None:
    """A session-52 audit: line B's summary.csv (``export --folder lineB``), imported into a station holding only
    line A with a file of the same name, replaced line A's class with line B's without a word, though its folder
    column said lineB (with both lines in the table the import was refused: "lineA/x.png is labelled twice"). A row
    naming a folder no indexed folder is named now matches only the image whose bytes its ``sha256`` states (a copy of
    line A under another folder name still gets its labels back), else it is unmatched and the preview says why; the
    person may choose the folder (``--folder``)."""
    import csv
    import shutil

    import cv2
    import numpy as np

    from app.services.indexing import index_folder
    from database import LabelChange, ReviewState, open_database
    site = tmp_path / "site"
    for k, line in enumerate(("lineA", "lineB")):
        (site / line).mkdir(parents=True)
        cv2.imwrite(str(site / line / "x.png"), np.full((8, 8), 60 + 100 * k, np.uint8))

    def station(name: str, *roots: Path):
        db = open_database(f"sqlite:///{(tmp_path / f'{name}.sqlite').as_posix()}")
        for root in roots:
            index_folder(db, root)
        return db
    db = station("first", site / "lineA", site / "lineB")
    for image in db.images.query():
        line = next(f.name for f in db.folders.list() if f.id == image.folder_id)
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack" if line == "lineA" else "good"),
                         "ann")
    export_database(db, tmp_path / "all", ExportOptions(formats=("csv",)))
    export_database(db, tmp_path / "lineB", ExportOptions(formats=("csv",)), folder="lineB")
    db.close()
    with (tmp_path / "lineB" / "summary.csv").open(encoding="utf-8", newline="") as fh:
        [row] = csv.DictReader(fh)
    assert (row["folder"], row["rel_path"], row["class"]) == ("lineB", "x.png", "good") and len(row["sha256"]) == 64

    only_a = station("only-a", site / "lineA")
    [image] = only_a.images.query()
    only_a.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    for out in ("lineB", "all"):
        preview = preview_import(only_a, tmp_path / out, ImportOptions(format="csv"))
        assert preview.errors == () and preview.unmatched == ("x.png",), out
        assert any("names a folder no indexed folder is named (lineB)" in n for n in preview.notes), preview.notes
    # the person says where line B's labels go: there they land, with the bytes that differ said
    chosen = preview_import(only_a, tmp_path / "lineB", ImportOptions(format="csv", folder="lineA"))
    assert [p.image for p in chosen.planned] == ["lineA/x.png"] and any("other bytes" in n for n in chosen.notes)
    only_a.close()

    shutil.copytree(site / "lineA", tmp_path / "moved" / "lineA copy")  # a copy under another path and folder name
    moved = station("moved", tmp_path / "moved" / "lineA copy")
    result = import_labels(moved, tmp_path / "all", ImportOptions(format="csv"))
    assert result.preview.errors == () and result.written == 1 and result.preview.unmatched == ("x.png",)
    assert [moved.labels.current(i.id).class_name for i in moved.images.query()] == ["crack"]
    moved.close()


def test_an_older_summary_csv_without_hashes_says_to_choose_its_folder(tmp_path: Path) -> None:
    """A session-52 audit: a summary.csv written by an earlier version (no ``sha256`` column), imported into a station
    holding its folder under another name, left every row unmatched, and the preview said they "matched no image here
    with their bytes" — untrue: the table states no bytes, so those rows could never match there. Now the preview says
    the table states no hashes and to choose the folder they belong to; chosen, they land."""
    import csv
    import shutil

    import cv2
    import numpy as np

    from app.services.indexing import index_folder
    from database import LabelChange, ReviewState, open_database
    (tmp_path / "site" / "lineA").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "site" / "lineA" / f"x{i}.png"), np.full((8, 8), 60 + 40 * i, np.uint8))
    first = open_database(f"sqlite:///{(tmp_path / 'first.sqlite').as_posix()}")
    index_folder(first, tmp_path / "site" / "lineA")
    for image in first.images.query():
        first.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    export_database(first, tmp_path / "out", ExportOptions(formats=("csv",)))
    first.close()
    table = tmp_path / "out" / "summary.csv"
    with table.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with table.open("w", encoding="utf-8", newline="") as fh:   # as an earlier version wrote it
        writer = csv.DictWriter(fh, [c for c in rows[0] if c != "sha256"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copytree(tmp_path / "site" / "lineA", tmp_path / "mnt" / "lineA_2026")
    db = open_database(f"sqlite:///{(tmp_path / 'second.sqlite').as_posix()}")
    try:
        folder = index_folder(db, tmp_path / "mnt" / "lineA_2026").folder_id
        preview = preview_import(db, tmp_path / "out", ImportOptions(format="csv"))
        assert preview.errors == () and preview.planned == () and len(preview.unmatched) == 3
        [note] = [n for n in preview.notes if "no indexed folder is named (lineA)" in n]
        assert note.startswith("3 records name a folder") and "with their bytes" not in note, note
        assert "neither states a hash of their images nor holds a copy" in note and "earlier version" in note, note
        assert "choose the folder they belong to (--folder" in note, note
        chosen = preview_import(db, tmp_path / "out", ImportOptions(format="csv", folder=str(folder)))
        assert [p.image for p in chosen.planned] == [f"lineA_2026/x{i}.png" for i in range(3)], chosen
    finally:
        db.close()
