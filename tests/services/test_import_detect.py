"""Telling an import's format from the dataset's layout (session 36: the dialog's first format, ImageFolder, read an
export's coco/ and masks/ folders as classes)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.import_detect import detect_formats, export_formats
from app.services.import_records import LabelImportError
from app.services.importing import read_records


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
    return path


def coco_doc() -> dict:
    return {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "annotations": [],
            "categories": [{"id": 1, "name": "crack"}]}


def test_each_layout_is_told_apart(tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances.json").write_text(json.dumps(coco_doc()))
    assert detect_formats(coco) == ["coco"]
    assert detect_formats(coco / "annotations" / "instances.json") == ["coco"]

    yolo = tmp_path / "yolo"
    image(yolo / "images" / "a.png")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("")
    assert detect_formats(yolo) == ["yolo"]

    masks = tmp_path / "sirst"
    image(masks / "images" / "a.png")
    image(masks / "masks" / "a.png")
    assert detect_formats(masks) == ["masks"]

    mvtec = tmp_path / "mvtec"
    image(mvtec / "bottle" / "train" / "good" / "000.png")
    image(mvtec / "bottle" / "test" / "broken" / "000.png")
    image(mvtec / "bottle" / "ground_truth" / "broken" / "000_mask.png")
    assert detect_formats(mvtec) == ["mvtec"] and detect_formats(mvtec / "bottle") == ["mvtec"]

    labelme = tmp_path / "labelme"
    labelme.mkdir()
    (labelme / "a.json").write_text(json.dumps({"imagePath": "a.png", "shapes": []}))
    assert detect_formats(labelme) == ["labelme"]

    tree = tmp_path / "tree"
    image(tree / "train" / "crack" / "a.png")
    image(tree / "val" / "good" / "b.png")
    assert detect_formats(tree) == ["imagefolder"]

    lots = tmp_path / "lots"  # <class>/<lot>/<image>: the reader walks it; auto said "no known layout" (session 47)
    image(lots / "crack" / "lot1" / "a.png")
    image(lots / "good" / "lot2" / "b.png")
    assert detect_formats(lots) == ["imagefolder"]

    table = tmp_path / "labels.csv"
    table.write_text("file_name,class\na.png,crack\n")
    assert detect_formats(table) == ["csv"]

    plain = tmp_path / "plain"
    image(plain / "a.png")
    assert detect_formats(plain) == [] and detect_formats(tmp_path / "missing") == []
    (tmp_path / "other.json").write_text("[1, 2]")
    assert detect_formats(tmp_path / "other.json") == []


def test_an_export_says_what_it_holds_and_refuses_another_format(tmp_path: Path) -> None:
    out = tmp_path / "export"
    image(out / "coco" / "images" / "a.png")
    (out / "coco" / "annotations").mkdir(parents=True)
    (out / "coco" / "annotations" / "instances.json").write_text(json.dumps(coco_doc()))
    image(out / "masks" / "masks" / "a.png")
    (out / "summary.csv").write_text("rel_path,class\na.png,crack\n")
    (out / "export.json").write_text(json.dumps({"formats": ["masks", "coco", "csv", "mvtec"],
                                                 "per_format": {"mvtec": {"images": 0, "folders": {}}}}))
    assert export_formats(out) == ["masks", "coco", "csv"]   # nothing was written as mvtec
    assert detect_formats(out) == ["coco", "masks", "csv"]   # the most telling first
    with pytest.raises(LabelImportError, match="an export holding masks, coco, csv, not imagefolder"):
        read_records(out, "imagefolder")
    assert len(read_records(out, "coco")) == 1   # its COCO part is read (an image without instances: a negative)


def test_an_export_without_its_manifest_is_told_by_its_format_folders(tmp_path: Path) -> None:
    out = tmp_path / "export"
    (out / "coco" / "annotations").mkdir(parents=True)
    (out / "coco" / "annotations" / "instances.json").write_text(json.dumps(coco_doc()))
    image(out / "masks" / "masks" / "a.png")
    assert detect_formats(out) == ["coco", "masks"]


def test_pascal_voc_and_cvat_yolo_1_1_are_named_not_taken_for_class_folders(tmp_path: Path, capsys) -> None:
    """Found by a session-45 probe: a Pascal VOC set (JPEGImages/, Annotations/*.xml) was detected as an ImageFolder
    tree and every image imported with the class "JPEGImages"; CVAT's YOLO 1.1 layout likewise as "obj_train_data"."""
    from app.cli import main
    from app.services.import_detect import no_layout_message
    voc = tmp_path / "VOC2012"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text("<annotation/>")
    (voc / "JPEGImages").mkdir()
    cv2.imwrite(str(voc / "JPEGImages" / "a.jpg"), np.zeros((8, 8), np.uint8))
    cvat = tmp_path / "cvat"
    (cvat / "obj_train_data").mkdir(parents=True)
    cv2.imwrite(str(cvat / "obj_train_data" / "a.png"), np.zeros((8, 8), np.uint8))
    (cvat / "obj.names").write_text("crack\n")
    for folder, name in ((voc, "Pascal VOC"), (cvat, "YOLO 1.1")):
        assert detect_formats(folder) == []
        assert name in no_layout_message(folder)
        assert main(["--db", f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}", "import", str(folder),
                     "--dry-run"]) == 2
        assert name in capsys.readouterr().err
