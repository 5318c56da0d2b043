"""The anomaly retraining loop on real tiles: an inspector reviews a stream of magnetic tiles (normal or
anomalous, the defect's region drawn), the station retrains, the new version is scored on tiles it never saw.

    PYTHONPATH=. python benchmarks/retrain_anomaly_loop.py --data ../shared/datasets/magnetic_tile \\
        --split /tmp/mt_split --reviewed 200 --seed 0 --modes refit scratch --json FILE

``--split`` is the MVTec tree of ``python -m inference.training.convert_magnetic_tile DATA SPLIT
--defects-by-split``: its ``test/`` is magnetic tile's independent ``val/`` (the frozen split), read
here only to score the retrained versions, never to choose anything. ``--reviewed`` random tiles of
``DATA/train`` (seeded; about 70 % free, as the stream is) are indexed in a fresh station: free ones get
the verdict *normal*, the others *anomalous* with the dataset's mask as the drawn region. Then
``python main.py retrain anomaly`` runs as the GUI runs it, once per mode:

- ``refit``: the command's default: the active version (the bundled ``anomaly-magnetic_tile``, a
  ``tile_defect`` model) is refitted like itself on the reviewed tiles;
- ``scratch``: ``--from-scratch``, what the command did before: a ``pattern_anomaly`` network trained
  anew on the normal tiles.

Printed per mode: the plan, the command's wall time, its own held-out comparison with the bundled
version, and image / pixel AUROC on the independent split; the bundled version on the same split beside.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.export_items import encode_mask  # noqa: E402
from app.services.indexing import index_folder  # noqa: E402
from benchmarks.retraining_loop import run_retrain  # noqa: E402
from database import LabelChange, ReviewState, open_database  # noqa: E402

NORMAL = "free"


def review_stream(data: Path, folder: Path, reviewed: int, seed: int) -> dict[str, int]:
    """Copy ``reviewed`` random train tiles into ``folder`` (names keep their capture session) and
    return how many of each class; labels are written by ``label_reviewed`` after indexing."""
    tiles = sorted((data / "train").glob("*/*.png"))
    picked = random.Random(seed).sample(tiles, min(reviewed, len(tiles)))
    counts: dict[str, int] = {}
    folder.mkdir(parents=True)
    for p in picked:
        shutil.copy2(p, folder / f"{p.parent.name}__{p.name}")  # class kept in the name for the labels only
        counts[p.parent.name] = counts.get(p.parent.name, 0) + 1
    return counts


def label_reviewed(db, data: Path) -> None:
    """Verdicts (and drawn regions from the dataset's masks) for every indexed tile."""
    for image in db.images.query():
        cls, name = image.rel_path.split("__", 1)
        if cls == NORMAL:
            change = LabelChange(ReviewState.CORRECTED, anomaly_verdict="normal")
        else:
            mask = cv2.imread(str(data / "masks" / "train" / cls / name), cv2.IMREAD_GRAYSCALE)
            region = encode_mask(mask >= 128) if mask is not None and (mask >= 128).any() else None
            change = LabelChange(ReviewState.CORRECTED, anomaly_verdict="anomalous", class_name=cls,
                                 anomaly_mask_png=region)
        db.labels.append(image.id, change, "benchmark")


def evaluate(model: str, split: Path, env: dict[str, str], out: Path) -> dict[str, float]:
    subprocess.run([sys.executable, str(ROOT / "main.py"), "evaluate", "anomaly", "--data", str(split), "--model", model,
                    "--json", str(out), "--threads", "1"], check=True, capture_output=True, env=env, cwd=ROOT)
    r = json.loads(out.read_text(encoding="utf-8"))
    return {k: r[k] for k in ("image_auroc", "pixel_auroc") if k in r}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="magnetic_tile (train/<class>, masks/train/<class>)")
    ap.add_argument("--split", required=True, type=Path, help="the converted MVTec tree whose test/ is the independent val")
    ap.add_argument("--reviewed", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=["refit", "scratch"], choices=("refit", "scratch"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    result: dict = {"reviewed": args.reviewed, "seed": args.seed, "split": str(args.split), "modes": {}}
    with tempfile.TemporaryDirectory(prefix="retrain-anomaly-") as tmp:
        result["bundled_val"] = evaluate(str(ROOT / "resources" / "models" / "anomaly-magnetic_tile"), args.split,
                                         env, Path(tmp, "bundled.json"))
        print(f"bundled anomaly-magnetic_tile on the independent split: {result['bundled_val']}", flush=True)
        for mode in args.modes:
            work = Path(tmp, mode)
            counts = review_stream(args.data, work / "tiles", args.reviewed, args.seed)
            url = f"sqlite:///{(work / 'station.sqlite').as_posix()}"
            db = open_database(url)
            index_folder(db, work / "tiles")
            label_reviewed(db, args.data)
            db.close()
            cmd = [sys.executable, str(ROOT / "main.py"), "--db", url, "retrain", "anomaly", "--progress-json",
                   "--threads", "1", "--name", f"loop-{mode}"] + (["--from-scratch"] if mode == "scratch" else [])
            ran = run_retrain(cmd, env)
            if ran is None:
                return 1
            _events, done, plan, seconds = ran
            val = evaluate(done["path"], args.split, env, work / "val.json")
            result["modes"][mode] = {"reviewed_per_class": counts, "start": plan["start"], "data": plan["data"],
                                     "notes": plan.get("notes"), "command": plan["command"].replace(url, "URL"),
                                     "retrain_seconds": round(seconds, 1), "held_out_comparison": done["comparison"],
                                     "independent_val": val}
            print(f"{mode}: {plan['start']}; {seconds:.0f} s; held out in the station: {done['comparison']}; "
                  f"independent val {val}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=lambda v: None), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
