"""Every export format holds exactly the reviewed labels (no database: ExportItems built by hand)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.services.export import ALL_FORMATS, FORMAT_TITLES, FORMATS, ExportOptions, export_items, parse_formats
from app.services.export_split import SplitSpec
from tests.services.export_fixtures import H, W, make_items, one_line, region, two_blobs

EVERY = ("imagefolder", "masks", "coco", "mvtec", "yolo", "csv")


@pytest.fixture
def items(tmp_path: Path):
    return make_items(tmp_path / "src")


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)).replace("\\", "/") for p in root.rglob("*") if p.is_file()}


def test_all_formats_without_split(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    result = export_items(list(items.values()), out, ExportOptions(formats=EVERY))
    assert result.exported == 4 and result.skipped == ()
    assert result.split_counts is None

    # ImageFolder: class -> folder, byte-identical copies, no unreviewed/rejected image.
    imagefolder = files_under(out / "imagefolder")
    assert imagefolder == {"crack/a.png", "crack/sub__c.jpg", "good/b.png"}
    assert (out / "imagefolder/crack/a.png").read_bytes() == items["a"].source.read_bytes()
    assert (out / "imagefolder/crack/sub__c.jpg").read_bytes() == items["c"].source.read_bytes()

    # Masks: every image with a mask label (an empty mask too), 0/255 and pixel-equal.
    assert files_under(out / "masks") == {"images/a.png", "images/b.png", "images/f.png",
                                          "masks/a.png", "masks/b.png", "masks/f.png"}
    for stem, expected in (("a", two_blobs()), ("b", np.zeros((H, W), bool)), ("f", one_line())):
        m = read_png(out / "masks/masks" / f"{stem}.png")
        assert m.dtype == np.uint8 and m.shape == (H, W)
        assert set(np.unique(m)) <= {0, 255}
        np.testing.assert_array_equal(m > 0, expected)

    # MVTec: normal -> train/test good by the default hold-out, anomalous -> test/<defect class>.
    mv = files_under(out / "mvtec/lot1")
    assert "test/crack/a.png" in mv and "test/crack/sub__c.jpg" in mv
    assert ("train/good/b.png" in mv) != ("test/good/b.png" in mv)
    assert {p for p in mv if p.startswith("ground_truth")} == {"ground_truth/crack/a_mask.png"}
    np.testing.assert_array_equal(read_png(out / "mvtec/lot1/ground_truth/crack/a_mask.png") > 0, region())
    assert result.formats["mvtec"]["anomalous_without_region"] == 1

    # CSV: one row per exported image with its label.
    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        rows = {r["rel_path"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"a.png", "b.png", "sub/c.jpg", "f.png"}
    assert rows["a.png"]["class"] == "crack" and rows["a.png"]["target_count"] == "2"
    assert rows["a.png"]["anomaly_verdict"] == "anomalous" and rows["a.png"]["state"] == "corrected"
    assert rows["a.png"]["anomaly_region_pixels"] == str(int(region().sum()))
    assert rows["b.png"]["target_count"] == "0" and rows["b.png"]["state"] == "accepted"
    assert rows["sub/c.jpg"]["target_count"] == "" and rows["f.png"]["class"] == ""
    assert rows["f.png"]["reviewer"] == "ann" and rows["f.png"]["reviewed_at"].startswith("2026-11-20T09:30")

    manifest = json.loads((out / "export.json").read_text())
    assert manifest["exported"] == 4 and manifest["formats"] == list(EVERY)
    assert not list(tmp_path.glob(".out.*")), "temporary folder left behind"


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
def test_coco_rle_decodes_back_to_the_mask(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    export_items(list(items.values()), out, ExportOptions(formats=("coco",), class_order=("good", "crack")))
    doc = json.loads((out / "coco/annotations/instances.json").read_text())
    cats = {c["name"]: c["id"] for c in doc["categories"]}
    assert cats == {"good": 1, "crack": 2, "target": 3}
    images = {i["file_name"]: i for i in doc["images"]}
    assert set(images) == {"a.png", "b.png", "f.png"}
    for name, expected, category in (("a.png", two_blobs(), "crack"), ("b.png", np.zeros((H, W), bool), "good"),
                                     ("f.png", one_line(), "target")):
        img = images[name]
        assert (img["width"], img["height"]) == (W, H)
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        n_expected = cv2.connectedComponents(expected.astype(np.uint8), connectivity=8)[0] - 1
        assert len(anns) == n_expected
        union = np.zeros((H, W), bool)
        for a in anns:
            assert a["iscrowd"] == 0 and a["category_id"] == cats[category]
            rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            m = mask_utils.decode(rle).astype(bool)
            assert a["area"] == m.sum()
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert not (union & m).any()
            union |= m
        np.testing.assert_array_equal(union, expected)
        assert (out / "coco/images" / name).read_bytes() == items[name[0]].source.read_bytes()
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])


def test_yolo_polygons_cover_each_target(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    export_items(list(items.values()), out, ExportOptions(formats=("yolo",)))
    data = (out / "yolo/data.yaml").read_text()
    assert "names:" in data and '0: "crack"' in data and '2: "target"' in data
    lines = (out / "yolo/labels/a.txt").read_text().splitlines()
    assert len(lines) == 2 and all(line.split()[0] == "0" for line in lines)
    assert (out / "yolo/labels/b.txt").read_text() == ""  # reviewed as holding no target
    line = (out / "yolo/labels/f.txt").read_text().splitlines()
    assert len(line) == 1 and line[0].split()[0] == "2"
    for stem, expected in (("a", two_blobs()), ("f", one_line())):
        n, labels = cv2.connectedComponents(expected.astype(np.uint8), connectivity=8)
        covered = set()
        for text in (out / f"yolo/labels/{stem}.txt").read_text().splitlines():
            vals = np.array(text.split()[1:], dtype=np.float64).reshape(-1, 2)
            assert len(vals) >= 3 and ((vals >= 0) & (vals <= 1)).all()
            # Redrawn as YOLO loaders do (scale, truncate, fillPoly), each polygon is its target's
            # pixels exactly, the one-pixel line and the diagonal speck too.
            drawn = np.zeros((H, W), np.uint8)
            cv2.fillPoly(drawn, [(vals * (W, H)).astype(np.int32)], 1)
            hit = set(np.unique(labels[drawn > 0])) - {0}
            assert len(hit) == 1
            k = hit.pop()
            np.testing.assert_array_equal(drawn.astype(bool), labels == k)
            covered.add(k)
        assert covered == set(range(1, n))


def test_split_layouts_and_lists(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    spec = SplitSpec(0.5, 0.25, 0.25)
    result = export_items(list(items.values()), out, ExportOptions(formats=EVERY, split=spec))
    assert sum(result.split_counts.values()) == 4
    with (out / "summary.csv").open(encoding="utf-8", newline="") as fh:
        part = {r["file_name"]: r["split"] for r in csv.DictReader(fh)}
    for name, p in part.items():
        if name in ("a.png", "b.png", "sub__c.jpg"):
            cls = "good" if name == "b.png" else "crack"
            assert (out / "imagefolder" / p / cls / name).is_file()
    listed = {}
    for p in ("train", "val", "test"):
        for stem in (out / f"masks/{p}.txt").read_text().split():
            listed[stem] = p
    assert listed == {Path(n).stem: part[n] for n in ("a.png", "b.png", "f.png")}
    coco_files = {p.name for p in (out / "coco/annotations").iterdir()}
    assert coco_files == {f"instances_{part[n]}.json" for n in ("a.png", "b.png", "f.png")}
    assert (out / f"yolo/labels/{part['f.png']}/f.txt").is_file()
    mv_good = "train" if part["b.png"] == "train" else "test"
    assert (out / f"mvtec/lot1/{mv_good}/good/b.png").is_file()


def test_sub_folder_collisions_get_distinct_stems(tmp_path: Path, items) -> None:
    from dataclasses import replace

    from tests.services.export_fixtures import write_image

    twin_src = write_image(tmp_path / "src/lot2/a", 9)
    twin = replace(items["a"], source=twin_src, folder="lot2", rel_path="a.png")
    a_upper = replace(items["f"], source=write_image(tmp_path / "src/lot1/A", 10), rel_path="A.png")
    out = tmp_path / "out"
    export_items([items["a"], twin, items["f"], a_upper], out, ExportOptions(formats=("masks",)))
    stems = sorted(p.stem for p in (out / "masks/masks").iterdir())
    assert len(stems) == 4 and len({s.lower() for s in stems}) == 4
    assert "lot2__a" in stems and "lot1__f" in stems
    # Two indexed folders with the same name (different roots) still give two files.
    other_root = replace(items["a"], source=write_image(tmp_path / "elsewhere/lot1/a", 11))
    out2 = tmp_path / "out2"
    export_items([items["a"], other_root], out2, ExportOptions(formats=("masks",)))
    assert len(list((out2 / "masks/masks").iterdir())) == 2
    assert sorted(s[:7] for s in stems if s.lower().startswith("lot1__a-")) == ["lot1__A", "lot1__a"]


def test_parse_formats() -> None:
    assert parse_formats("all") == ALL_FORMATS
    assert set(FORMAT_TITLES) == set(FORMATS) == set(EVERY)
    assert parse_formats("csv, coco,csv") == ("coco", "csv")
    assert parse_formats("all,yolo") == EVERY
    with pytest.raises(Exception, match="unknown export format 'voc'"):
        parse_formats("coco,voc")


@pytest.mark.parametrize("seed", range(4))
def test_component_rle_matches_pycocotools_full_image_encoding(seed: int) -> None:
    from app.services.export_instances import component_rle
    from app.services.export_items import components

    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 40, size=2)
    mask = rng.random((h, w)) < 0.3
    mask[0, :] = mask[:, -1] = seed % 2 == 0  # components touching the image border
    comps = components(mask)
    assert len(comps) == cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    total = np.zeros((h, w), bool)
    for comp in comps:
        full = np.zeros((h, w), np.uint8)
        full[comp.y:comp.y + comp.crop.shape[0], comp.x:comp.x + comp.crop.shape[1]] = comp.crop
        reference = mask_utils.encode(np.asfortranarray(full))
        assert component_rle(comp, int(h), int(w))["counts"] == reference["counts"]
        total |= full.astype(bool)
    np.testing.assert_array_equal(total, mask)


def yaml_entries(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith((" ", "#"))]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines) if v.strip()}


@pytest.mark.parametrize("spec, names", [
    (None, "abcf"), (SplitSpec(0.5, 0.25, 0.25), "abcf"), (SplitSpec(0.9, 0.1, 0.0), "abcf"),
    (SplitSpec(0.4, 0.3, 0.3), "acf"),  # parts whose images have no mask: no yolo folder for them
])
def test_yolo_data_yaml_names_only_folders_the_export_made(tmp_path: Path, items, spec, names) -> None:
    """Ultralytics resolves a relative ``path`` against its own datasets folder (or the working
    directory), not the YAML's: so no ``path`` key, and every train/val/test folder must exist."""
    out = tmp_path / "out"
    export_items([items[n] for n in names], out, ExportOptions(formats=("yolo",), split=spec))
    entries = yaml_entries(out / "yolo/data.yaml")
    assert "path" not in entries
    assert {"train", "val"} <= set(entries)
    for key in ("train", "val", "test"):
        if key in entries:
            folder = out / "yolo" / entries[key]
            assert folder.is_dir() and any(folder.iterdir()), (key, entries[key])


def test_one_mask_encoder_for_labels_exports_imports_and_the_worker() -> None:
    """The station writes mask PNGs in one place (``display.encode_mask_png``): a label the window saved, its
    export and a re-import are the same bytes, so the re-import reads "unchanged" (session 36: three encoders)."""
    from app.services.display import decode_mask_png, encode_mask_png
    from app.services.export_items import encode_mask
    from app.services.import_records import Mask
    from app.worker import mask_png

    mask = np.zeros((40, 50), bool)
    mask[5:9, 7:20] = True
    assert encode_mask(mask) == encode_mask_png(mask) == Mask.of(mask).png
    assert encode_mask_png(mask.astype(np.uint8)) == encode_mask_png(mask)   # 0/1 the same as bool
    assert np.array_equal(decode_mask_png(mask_png(mask)), mask) and len(mask_png(mask)) <= len(encode_mask(mask))


def test_yolo_polygons_keep_a_region_s_holes() -> None:
    """A session-48 probe: a ring was written as its outline alone, which every YOLO reader fills, so a round trip
    made the disc (and an import into the project rewrote the inspector's exact mask). Holes are joined by a slit."""
    from app.services.export_instances import yolo_polygons
    yy, xx = np.mgrid[:40, :48]
    d = np.hypot(yy - 20, xx - 22)
    ring = (d <= 9) & (d > 4)
    ring |= (np.hypot(yy - 20, xx - 40) <= 5) & (np.hypot(yy - 20, xx - 40) > 1.5)   # a second ring, touching
    two_holes = np.zeros((40, 48), bool)
    two_holes[2:14, 2:30] = True
    two_holes[5:9, 5:9] = False
    two_holes[6:10, 15:25] = False
    for mask in (ring, two_holes):
        drawn = np.zeros(mask.shape, np.uint8)
        for poly in yolo_polygons(mask):
            cv2.fillPoly(drawn, [(poly * (mask.shape[1], mask.shape[0])).astype(np.int32)], 1)
        np.testing.assert_array_equal(drawn.astype(bool), mask)


def test_yolo_writes_a_one_pixel_line_as_the_line_not_its_box(tmp_path: Path) -> None:
    """A session-49 audit: a one-pixel line (a thin scratch) has an outline of no area and was written as its bounding
    box, so every YOLO reader (scale, truncate, fillPoly) filled an 8-pixel diagonal to 64 pixels, and the station's
    own import of the export put the square on the image. Its pixel centres, out and back, redraw exactly the line;
    only a single dot is written as its box."""
    from app.services.display import decode_mask_png
    from app.services.export_items import ExportItem, encode_mask
    from app.services.import_yolo import class_names, parse_label
    from tests.services.export_fixtures import WHEN, write_image
    shapes = {"diagonal": np.zeros((H, W), bool), "L": np.zeros((H, W), bool), "horizontal": np.zeros((H, W), bool),
              "vertical": np.zeros((H, W), bool), "dot": np.zeros((H, W), bool)}
    for i in range(8):
        shapes["diagonal"][2 + i, 2 + i] = True
    shapes["L"][2, 14:22] = True
    shapes["L"][2:12, 21] = True
    shapes["horizontal"][20, 2:12] = True
    shapes["vertical"][14:22, 27] = True
    shapes["dot"][16, 16] = True
    mask = np.logical_or.reduce(list(shapes.values()))
    src = write_image(tmp_path / "src" / "s", 7)
    item = ExportItem(source=src, rel_path="s.png", folder="lot1", review_state="corrected", reviewer="ann",
                      reviewed_at=WHEN, width=W, height=H, mask_png=encode_mask(mask))
    out = tmp_path / "out"
    export_items([item], out, ExportOptions(formats=("yolo",)))
    lines = (out / "yolo/labels/s.txt").read_text().splitlines()
    assert len(lines) == len(shapes)
    for line in lines:  # each line alone, read as Ultralytics does, is one shape's pixels
        vals = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2)
        assert len(vals) >= 3
        drawn = np.zeros((H, W), np.uint8)
        cv2.fillPoly(drawn, [(vals * (W, H)).astype(np.int32)], 1)
        assert any(np.array_equal(drawn.astype(bool), shape) for shape in shapes.values()), line
    _, polygons = parse_label(out / "yolo/labels/s.txt", class_names(out / "yolo/data.yaml"))
    assert polygons is not None
    back = polygons.rasterise(W, H)
    np.testing.assert_array_equal(decode_mask_png(back.png), mask)


def test_a_split_imagefolder_export_gives_every_part_one_class_numbering(tmp_path: Path) -> None:
    """A session-49 audit: torchvision's ImageFolder numbers the sorted class folders of the part it is given, so a
    part without a class (val had no 'dent/pit') gave the later classes other label numbers than train did, and
    nothing said so. export.json now holds the export's numbering (class_to_idx, by folder) and each part's missing
    classes, a note names them, and relabelling a part by class_to_idx gives train's numbers; no empty folder is
    written (ImageFolder refuses one)."""
    import os

    from app.services.export_items import ExportItem
    from tests.services.export_fixtures import WHEN, write_image

    def item(name: str, cls: str, seed: int) -> ExportItem:
        src = write_image(tmp_path / "src" / name, seed)
        return ExportItem(source=src, rel_path=src.name, folder="lot1", review_state="corrected", reviewer="ann",
                          reviewed_at=WHEN, width=W, height=H, class_name=cls)

    batch = [item(f"{c[0]}{i}", c, 20 + 10 * k + i) for k, c in enumerate(("crack", "good")) for i in range(4)]
    batch.append(item("d0", "dent/pit", 40))  # one image: the split keeps it in train
    out = tmp_path / "out"
    result = export_items(batch, out, ExportOptions(formats=("imagefolder",), split=SplitSpec(0.5, 0.5, 0.0)))

    def find_classes(d: Path) -> dict[str, int]:  # torchvision's DatasetFolder.find_classes
        return {c: i for i, c in enumerate(sorted(e.name for e in os.scandir(d) if e.is_dir()))}

    info = json.loads((out / "export.json").read_text())["per_format"]["imagefolder"]
    assert info["class_to_idx"] == find_classes(out / "imagefolder/train") == {"crack": 0, "dent_pit": 1, "good": 2}
    assert info["missing_classes"] == {"val": ["dent/pit"]}
    val = find_classes(out / "imagefolder/val")
    assert val == {"crack": 0, "good": 1} and not (out / "imagefolder/val/dent_pit").exists()
    # the relabelling docs/export.md shows (target_transform): the part's own index -> its folder -> the export's
    val_classes = sorted(val, key=val.__getitem__)
    assert [info["class_to_idx"][val_classes[i]] for i in range(len(val))] == [0, 2]
    assert any("the val part has no image of dent/pit" in n for n in result.notes)
    assert any("missing classes (val [dent/pit])" in line for line in result.summary_lines())


def test_the_imagefolder_numbering_note_is_for_readers_outside_the_station(tmp_path: Path) -> None:
    """The note on a part that lacks classes is advice for torchvision's ImageFolder: the export says it with the
    others, and a retraining (which maps every part's folders by name) leaves it out by its kind, not by its text."""
    from app.services.export import ExportResult
    from app.services.export_formats import ImageFolderWriter

    writer = ImageFolderWriter(tmp_path)
    writer.per_class, writer.part_folders = {"crack": 2, "good": 1}, {"train": {"crack", "good"}, "val": {"crack"}}
    writer.finish()
    assert writer.notes == [] and [n[:29] for n in writer.reader_notes] == ["imagefolder class numbering: "]
    result = ExportResult(tmp_path, 3, (), notes=("a", *writer.reader_notes, "b"), reader_notes=tuple(writer.reader_notes))
    assert result.station_notes == ("a", "b")
    assert ExportResult(tmp_path, 1, (), notes=("a",)).station_notes == ("a",)


def test_an_mvtec_category_with_one_normal_image_says_why_it_has_no_test_good(tmp_path: Path, items) -> None:
    """A session-50 audit: an MVTec export of a category with one normal ("good") image made train/good alone, no
    test/good, and its summary said only "folders (test/crack 2, train/good 1)"; it now says why test/good is missing.
    A category with two normal images holds one out and needs no such note."""
    from dataclasses import replace
    result = export_items(list(items.values()), tmp_path / "out", ExportOptions(formats=("mvtec",)))
    assert not (tmp_path / "out" / "mvtec" / "lot1" / "test" / "good").exists()
    said = [line for line in result.summary_lines() if "test/good" in line and line.startswith("note:")]
    assert said == ["note: mvtec/lot1 has no test/good: its only normal image is in train/good (one image cannot be "
                    "both trained on and held out)"], result.summary_lines()
    second = replace(items["b"], source=items["f"].source, rel_path="b2.png")   # a second normal image
    two = export_items([*items.values(), second], tmp_path / "out2", ExportOptions(formats=("mvtec",)))
    assert (tmp_path / "out2" / "mvtec" / "lot1" / "test" / "good").is_dir()
    assert not any("has no test/good" in n for n in two.notes), two.notes
