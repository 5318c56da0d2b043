"""The review-to-retrain loop on real data: an inspector labels N parts per class, the station trains.

    PYTHONPATH=. python benchmarks/retraining_loop.py --train ../shared/datasets/magnetic_tile/train \
        --val ../shared/datasets/magnetic_tile/val --per-class 40 [--seed S] [--epochs N] [--threads 1] [--json FILE]

A fresh station database indexes the ``--train`` class-folder tree as one folder; the first
``--per-class`` images of each class (a seeded random sample) get a *corrected* label with their true class,
as an inspector's review would leave them. Then ``python main.py retrain classifier`` runs as the
GUI runs it (its own process, JSON progress) and the new version is scored with ``python main.py
evaluate classifier`` on the independent ``--val`` tree, which the station never saw. Printed: the
retraining's wall time, its own held-out comparison, and the independent accuracy / macro F1, beside
the simple answers (majority, kNN and logistic regression on 12×12 thumbnails) fitted on the same
labelled images and scored on the same independent tree. A version the command refuses (it lost
to a simple answer) is still scored when ``--retrain-args --keep-if-worse`` is given.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.indexing import index_folder  # noqa: E402
from database import LabelChange, ReviewState, open_database  # noqa: E402


def label_sample_per_class(db, per_class: int, seed: int, first: bool = False) -> dict[str, int]:
    """Corrected labels with the true class (the parent folder's name) for N random images of each class.

    Random by default, not the first N by name: names often encode the capture session (magnetic
    tile's ``exp1_…``), and an inspector reviews a stream of parts from every session. ``first``
    reproduces the by-name selection of the first runs recorded in RESULTS.md.
    """
    rng = random.Random(seed)
    by_class: dict[str, list] = {}
    for image in sorted(db.images.query(), key=lambda i: i.rel_path):
        parts = Path(image.rel_path).parts
        if len(parts) == 2:
            by_class.setdefault(parts[0], []).append(image)
    counts = {}
    for name, images in sorted(by_class.items()):
        for image in images[:per_class] if first else rng.sample(images, min(per_class, len(images))):
            db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name=name), "benchmark")
        counts[name] = min(per_class, len(images))
    return counts


def labelled_paths(url: str, root: Path) -> list[Path]:
    """The files that got a label in the benchmark's station, as paths below ``root``."""
    db = open_database(url)
    try:
        return [root / image.rel_path for image in db.images.query() if db.labels.current(image.id) is not None]
    finally:
        db.close()


def simple_answers_on(train_root: Path, val_root: Path, labelled: list[Path]) -> dict[str, dict[str, float]]:
    """Majority, kNN and logistic regression on thumbnails of the labelled images, scored on ``val_root``."""
    from inference.training.classifier_head import split_items
    from inference.training.simple_answers import SIMPLE_MODELS, fit_predict, score, thumbnails

    classes = sorted({p.parent.name for p in labelled})
    y = np.array([classes.index(p.parent.name) for p in labelled])
    val_paths, y_val, _ = split_items(val_root.parent, val_root.name, classes)
    x, xv = thumbnails(labelled), thumbnails(val_paths)
    return {f"thumbnail_{name}": score(y_val, fit_predict(make, x, y, xv), classes).as_dict()
            for name, make in SIMPLE_MODELS.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, type=Path, help="class-folder tree the inspector reviews")
    ap.add_argument("--val", required=True, type=Path, help="independent class-folder tree for the final score")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="which images of each class the inspector labels")
    ap.add_argument("--first-by-name", action="store_true", help="label the first N of each class by file name instead")
    ap.add_argument("--epochs", type=int, default=None, help="default: the retrain command's plan")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retrain-args", default="", help="more options for the retrain command, quoted as one string")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "NUMBA_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory(prefix="retrain-loop-") as tmp:
        url = f"sqlite:///{Path(tmp, 'station.sqlite').as_posix()}"
        db = open_database(url)
        report = index_folder(db, args.train)
        labelled = label_sample_per_class(db, args.per_class, args.seed, args.first_by_name)
        db.close()
        print(f"indexed {len(report.added)} images; labelled {sum(labelled.values())}: {labelled}")

        cmd = [sys.executable, str(ROOT / "main.py"), "--db", url, "retrain", "classifier", "--progress-json",
               "--threads", str(args.threads), "--name", "loop"]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        cmd += shlex.split(args.retrain_args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        seconds = time.monotonic() - t0
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not events or events[-1]["event"] != "done":
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        done = events[-1]
        plan = next(e for e in events if e["event"] == "stage" and e["stage"] == "train")
        scored = Path(tmp, "val.json")
        subprocess.run([sys.executable, str(ROOT / "main.py"), "evaluate", "classifier", "--data", str(args.val),
                        "--model", done["path"], "--json", str(scored), "--threads", str(args.threads)],
                       check=True, capture_output=True, env=env, cwd=ROOT)
        independent = json.loads(scored.read_text(encoding="utf-8"))
        card = json.loads(Path(done["path"], "card.json").read_text(encoding="utf-8"))
        simple = simple_answers_on(args.train, args.val, labelled_paths(url, args.train))

    result = {
        "train_tree": str(args.train), "val_tree": str(args.val), "per_class": args.per_class, "seed": None if args.first_by_name else args.seed, "labelled": labelled,
        "retrain_command": " ".join(cmd[2:]).replace(url, "URL"),
        "plan": {k: plan[k] for k in ("start", "data", "notes", "command")}, "retrain_seconds": round(seconds, 1),
        "held_out_comparison": done["comparison"],
        "independent_val": {k: independent[k] for k in ("accuracy", "f1", "count", "per_class", "confusion_matrix")},
        "simple_answers_independent_val": simple,
        "verdict": next((e["message"] for e in events if e["event"] == "verdict"), None),
        "card_training": card.get("training"), "card_data": card.get("data"),  # how the registered version was fitted
    }
    print(f"simple answers on the same labels, independent val: {simple}")
    print(f"retrain: {seconds:.0f} s wall ({plan['start']})")
    print(f"held out inside the station: {done['comparison']}")
    print(f"independent val ({independent['count']} images): accuracy {independent['accuracy']:.3f}, "
          f"macro F1 {independent['f1']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
