"""Every export format loaded by the program that consumes it (run by hand; not in CI).

    PYTHONPATH=. python benchmarks/export_readers.py [--export DIR] [--json FILE]

Without ``--export`` a small labelled set (the export tests' images: classes, masks with several
targets, empty masks, verdicts and regions) is exported twice, without and with a train/val/test
split, every format including YOLO, and each copy is checked. Each reader is imported only when it
is installed; a missing one is reported as "not installed", never installed by this script (the
heavy ones do not belong in the station's environment):

- coco: pycocotools ``COCO`` loads every ``annotations/*.json``; each annotation decodes
  (``annToMask``) to its stated area, and every listed image file exists.
- imagefolder: torchvision ``datasets.ImageFolder`` on each part; the images open.
- masks: the station's own segmenter data loader (``SegTree``, ``load_frames``) on each part.
- yolo: Ultralytics ``check_det_dataset`` on ``data.yaml`` and ``YOLODataset`` label caching.
- mvtec: anomalib's ``MVTec`` data module (``MVTecAD`` in anomalib 2), ``setup()`` per category.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Callable

NOT_INSTALLED = "not installed"


class ReaderMissing(Exception):
    """The consumer's reader is not installed, or installed but not loadable here."""


def load(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ReaderMissing(NOT_INSTALLED) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a CUDA torchvision whose ops do not register on a CPU torch
        raise ReaderMissing(f"reader not usable here: {type(exc).__name__}: {exc}") from None


def check_coco(root: Path) -> str:
    COCO = load("pycocotools.coco").COCO
    files = sorted((root / "annotations").glob("*.json"))
    if not files:
        return "failed: no annotations/*.json"
    anns = imgs = 0
    for f in files:
        coco = COCO(str(f))
        part = f.stem.removeprefix("instances").lstrip("_")
        for img in coco.loadImgs(coco.getImgIds()):
            path = root / "images" / part / img["file_name"]
            if not path.is_file():
                return f"failed: {f.name} lists {img['file_name']} but {path} does not exist"
            imgs += 1
        for ann in coco.loadAnns(coco.getAnnIds()):
            if int(coco.annToMask(ann).sum()) != ann["area"]:
                return f"failed: annotation {ann['id']} in {f.name} decodes to another area"
            anns += 1
    return f"passed ({len(files)} file(s), {imgs} images, {anns} annotations)"


def parts_of(root: Path) -> list[Path]:
    named = [root / p for p in ("train", "val", "test") if (root / p).is_dir()]
    return named or [root]


def check_imagefolder(root: Path) -> str:
    ImageFolder = load("torchvision.datasets").ImageFolder
    sizes = []
    for part in parts_of(root):
        ds = ImageFolder(str(part))
        for i in range(len(ds)):
            ds[i]  # decodes with the default loader (PIL)
        sizes.append(f"{part.name}: {len(ds)} images, classes {ds.classes}")
    return "passed (" + "; ".join(sizes) + ")"


def check_masks(root: Path) -> str:
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(root)
    splits = [s for s in ("train", "val", "test") if (root / f"{s}.txt").is_file()] or ["all"]
    counts = []
    for split in splits:
        frames, problems = load_frames(tree, tree.stems(split), in_chans=1)
        if problems:
            return f"failed: {problems[0]}"
        counts.append(f"{split} {len(frames)}")
    return "passed (station segmenter loader: " + ", ".join(counts) + ")"


def check_yolo(root: Path) -> str:
    check_det_dataset = load("ultralytics.data.utils").check_det_dataset
    here = os.getcwd()
    os.chdir(tempfile.gettempdir())  # a user's working directory is not the dataset's
    try:
        data = check_det_dataset(str(root / "data.yaml"), autodownload=False)
    finally:
        os.chdir(here)
    found = []
    for key in ("train", "val", "test"):
        if data.get(key):
            path = Path(data[key])
            if not path.is_dir():
                return f"failed: {key} folder {path} does not exist"
            found.append(f"{key} {sum(1 for _ in path.iterdir())}")
    try:
        YOLODataset = load("ultralytics.data.dataset").YOLODataset
        ds = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False)
        found.append(f"{len(ds.labels)} train labels cached")
    except Exception as exc:  # noqa: BLE001 - report any reader failure as the verdict
        return f"failed: YOLODataset: {exc}"
    return f"passed (names {list(data['names'].values())}, " + ", ".join(found) + ")"


def check_mvtec(root: Path) -> str:
    ad = load("anomalib.data")
    module = getattr(ad, "MVTecAD", None) or ad.MVTec
    done = []
    for category in sorted(p.name for p in root.iterdir() if p.is_dir()):
        dm = module(root=str(root), category=category)
        dm.setup()
        done.append(f"{category}: train {len(dm.train_data)}, test {len(dm.test_data)}")
    return "passed (" + "; ".join(done) + ")"


CHECKS: dict[str, Callable[[Path], str]] = {
    "coco": check_coco, "imagefolder": check_imagefolder, "masks": check_masks,
    "yolo": check_yolo, "mvtec": check_mvtec,
}


def demo_exports(base: Path) -> dict[str, Path]:
    from dataclasses import replace

    from app.services.export import FORMATS, ExportOptions, export_items
    from app.services.export_items import encode_mask
    from app.services.export_split import SplitSpec
    from tests.services.export_fixtures import make_items, two_blobs, write_image

    made = make_items(base / "src")
    items = list(made.values())
    for i in range(12):  # enough masked images of one class that every split part gets some
        src = write_image(base / "src" / "lot1" / f"extra_{i:02d}", 100 + i)
        items.append(replace(made["a"], source=src, rel_path=src.name, mask_png=encode_mask(two_blobs())))
    out = {}
    for name, split in (("no split", None), ("split 0.5,0.25,0.25", SplitSpec(0.5, 0.25, 0.25))):
        dst = base / name.replace(" ", "_").replace(",", "-")
        export_items(items, dst, ExportOptions(formats=FORMATS, split=split))
        out[name] = dst
    return out


def run(exports: dict[str, Path]) -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for name, root in exports.items():
        for fmt, check in CHECKS.items():
            folder = root / fmt
            if not folder.is_dir():
                verdict = "not in this export"
            else:
                try:
                    verdict = check(folder)
                except ReaderMissing as exc:
                    verdict = str(exc)
                except Exception as exc:  # noqa: BLE001 - a reader's refusal is the finding
                    verdict = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            results.setdefault(name, {})[fmt] = verdict
            print(f"{name:>22}  {fmt:<12} {verdict}")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="an existing export folder (default: make two demo exports)")
    ap.add_argument("--json", type=Path, help="also write the verdicts here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exports = {str(args.export): args.export} if args.export else demo_exports(Path(tmp))
        results = run(exports)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 1 if any(v.startswith("failed") for r in results.values() for v in r.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
