"""Rebuild ``resources/samples`` (the demo project and test images) from ../shared/datasets.

Deterministic: picks the validation images whose names rank first under a fixed hash, so the
bundled models were not trained on them. Run: ``python scripts/make_samples.py [DATASETS_DIR]``.
Attribution for every data set is written to ``resources/samples/ATTRIBUTION.md``.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "samples"


def ranked(paths: list[Path], k: int) -> list[Path]:
    return sorted(paths, key=lambda p: hashlib.sha256(f"sample:{p.name}".encode()).hexdigest())[:k]


def main(src: Path) -> None:
    if OUT.exists():
        shutil.rmtree(OUT / "demo", ignore_errors=True)
        shutil.rmtree(OUT / "ground_truth", ignore_errors=True)
    demo, gt = OUT / "demo", OUT / "ground_truth"
    for cls_dir in sorted((src / "neu_cls" / "val").iterdir()):
        for p in ranked(list(cls_dir.glob("*.png")), 3):
            dst = demo / "steel" / p.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
    for cls_dir in sorted((src / "magnetic_tile" / "val").iterdir()):
        k = 4 if cls_dir.name == "free" else 2
        for p in ranked(list(cls_dir.glob("*.png")), k):
            name = f"{cls_dir.name}_{p.name}"
            (demo / "tiles").mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, demo / "tiles" / name)
            mask = src / "magnetic_tile" / "masks" / "val" / cls_dir.name / p.name
            (gt / "tiles").mkdir(parents=True, exist_ok=True)
            shutil.copy2(mask, gt / "tiles" / name)
    stems = (src / "sirst" / "val.txt").read_text().split()
    for stem in ranked([Path(s + ".png") for s in stems], 8):
        (demo / "infrared").mkdir(parents=True, exist_ok=True)
        (gt / "infrared").mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "sirst" / "images" / stem.name, demo / "infrared" / stem.name)
        shutil.copy2(src / "sirst" / "masks" / stem.name, gt / "infrared" / stem.name)
    (OUT / "ATTRIBUTION.md").write_text(ATTRIBUTION, encoding="utf-8")


ATTRIBUTION = """# Sample images: sources and citations

A few dozen validation images copied unchanged from the developer copies of public data sets,
for the demo project and the tests (`scripts/make_samples.py` picks them deterministically).
None of these data sets states a licence; they are published for research. Please cite:

- `demo/steel/` — NEU surface defect database (hot-rolled steel strip), Northeastern University.
  K. Song, Y. Yan, "A noise robust method based on completed local binary patterns for hot-rolled
  steel strip surface defects", Applied Surface Science 285 (2013) 858-864. Class = file-name prefix.
- `demo/tiles/`, `ground_truth/tiles/` — Magnetic-tile surface defects. Y. Huang, C. Qiu, K. Yuan,
  "Surface defect saliency of magnetic tile", The Visual Computer 36 (2020) 85-96.
  Class = file-name prefix (`free` = defect-free); masks are 0/255 PNG.
- `demo/infrared/`, `ground_truth/infrared/` — SIRST. Y. Dai, Y. Wu, F. Zhou, K. Barnard,
  "Asymmetric Contextual Modulation for Infrared Small Target Detection", IEEE WACV 2021.

No MVTec AD image is shipped (its licence is CC BY-NC-SA 4.0).
"""

if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets")
