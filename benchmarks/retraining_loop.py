"""The review-to-retrain loop on real data: an inspector labels N parts per class, the station trains.

    PYTHONPATH=. python benchmarks/retraining_loop.py --train ../shared/datasets/magnetic_tile/train \
        --val ../shared/datasets/magnetic_tile/val --per-class 40 [--order per-class|label-next] [--seed S] \
        [--epochs N] [--threads 1] [--json FILE]

A fresh station database indexes the ``--train`` class-folder tree as one folder; the first
``--per-class`` images of each class (a seeded random sample) get a *corrected* label with their true class,
as an inspector's review would leave them. With ``--order label-next`` the inspector instead labels
``--per-class`` × (number of classes) images in the station's "label next" order (batches of
``--batch`` from a cold start, each chosen with the labels given before; ``benchmarks/label_next.py``'s
``pool_order``, so the same images as that benchmark), whatever classes they fall on. Then ``python main.py retrain classifier`` runs as the
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
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.indexing import index_folder  # noqa: E402
from app.services.label_next import BATCH  # noqa: E402
from benchmarks.label_next import CHOOSERS, pool_order, tree  # noqa: E402
from database import LabelChange, LabelSource, ReviewState, open_database  # noqa: E402
from inference.training.classifier_head import texture_matrix  # noqa: E402


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


def station_space(paths: list[Path]) -> np.ndarray:
    """The vectors the station's "label next" chooses a classifier's batch on (``CHOICE_SPACE``, ADR 0073)."""
    from app.services.label_next_folder import CHOICE_SPACE

    return texture_matrix(paths, CHOICE_SPACE)


def label_next_picks(train_root: Path, per_class: int, seed: int, batch: int = BATCH,
                     embed: Callable[[list[Path]], np.ndarray] = station_space) -> list[str]:
    """Paths below ``train_root`` (posix, relative: the station's ``rel_path``) that an inspector pressing
    "label next" labels first, in that order: ``per_class`` × the number of classes of the tree, so the
    budget equals the per-class order's. The pool is embedded here by ``embed`` (as the station does, ADR 0073;
    lnhead.md compares ``texture_embeddings``, the space before it)."""
    paths, names = tree(train_root)
    budget = per_class * len(set(names))
    order = pool_order(CHOOSERS["label_next"], embed(paths), names, budget, batch, seed)
    return [paths[i].relative_to(train_root).as_posix() for i in order]


def random_order_picks(train_root: Path, per_class: int, seed: int) -> list[str]:
    """Paths below ``train_root`` an inspector labels first when walking the folder in a seeded random order (the
    issue's "random order": the folder's own class mix, not a per-class draw): ``per_class`` × the number of classes,
    the same budget as the other orders."""
    paths, names = tree(train_root)
    order = np.random.default_rng(seed).permutation(len(paths))[:per_class * len(set(names))]
    return [paths[int(i)].relative_to(train_root).as_posix() for i in order]


def label_listed(db, rel_paths: list[str], source: LabelSource | None = None) -> dict[str, int]:
    """Corrected labels with the true class (the parent folder's name) for the listed images; counts per class.
    ``source``: stored with each label, as the station stores a "label next" proposal's (ADR 0049)."""
    by_path = {image.rel_path: image for image in db.images.query()}
    missing = [r for r in rel_paths if r not in by_path]
    if missing:
        raise SystemExit(f"{len(missing)} picked image(s) not indexed by the station, e.g. {missing[0]}")
    counts: dict[str, int] = {}
    for rel in rel_paths:
        name = Path(rel).parent.name
        db.labels.append(by_path[rel].id, LabelChange(ReviewState.CORRECTED, class_name=name, source=source),
                         "benchmark")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


EMBED: Callable[[list[Path]], np.ndarray] = station_space  # the space "label next" chooses in


def run_retrain(cmd: list[str], env: dict[str, str]) -> tuple[list[dict], dict, dict, float] | None:
    """Run a ``retrain … --progress-json`` command: (events, its done event, its train stage, wall
    seconds), or None (stderr's end printed) when it did not finish with a new version."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.monotonic() - t0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not events or events[-1]["event"] != "done":
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    plan = next(e for e in events if e["event"] == "stage" and e["stage"] == "train")
    return events, events[-1], plan, seconds


def labelled_paths(url: str, root: Path) -> list[Path]:
    """The files that got a label in the benchmark's station, as paths below ``root``."""
    db = open_database(url)
    try:
        return [root / image.rel_path for image in db.images.query() if db.labels.current(image.id) is not None]
    finally:
        db.close()


def evaluate_cli(model_dir: Path, data: Path, out: Path, env: dict[str, str], threads: int) -> dict:
    """``python main.py evaluate classifier`` on a class-folder tree; its JSON report."""
    subprocess.run([sys.executable, str(ROOT / "main.py"), "evaluate", "classifier", "--data", str(data),
                    "--model", str(model_dir), "--json", str(out), "--threads", str(threads)],
                   check=True, capture_output=True, env=env, cwd=ROOT)
    return json.loads(out.read_text(encoding="utf-8"))


def independent_scores(model_dir: Path, val_root: Path, scratch: Path, env: dict[str, str], threads: int) -> dict:
    """The new version scored on every image of ``val_root``, also when it lacks some of val's classes.

    The command leaves out a class with fewer than ``MIN_PER_CLASS`` reviewed images (label next can
    give fray only 2-4 labels); ``evaluate`` then refuses the val tree (a folder the model does not
    know). Such tiles still count, as errors: ``evaluate`` runs on the known classes' folders, and
    once more with each left-out class's folder named as a known class, which gives the row of
    predictions for those tiles; accuracy and macro F1 come from the joined confusion matrix (a
    left-out class has recall 0, and the tiles it draws lower the precision of the class they fall in).
    """
    from inference.training.classifier_metrics import classification_report

    known = [str(c) for c in json.loads(Path(model_dir, "card.json").read_text(encoding="utf-8"))["classes"]]
    val_classes = sorted(d.name for d in val_root.iterdir() if d.is_dir() and not d.name.startswith("."))
    missing = [c for c in val_classes if c not in known]
    if not missing:
        return {**evaluate_cli(model_dir, val_root, scratch / "val.json", env, threads), "classes_left_out": []}
    if len(missing) > len(known):
        raise SystemExit(f"the new version knows {known}; too many val classes left out to score: {missing}")
    trees = {"known": {k: val_root / k for k in val_classes if k in known},
             "left_out": {known[j]: val_root / m for j, m in enumerate(missing)}}
    reports = {}
    for name, folders in trees.items():
        root = scratch / f"val_{name}"
        root.mkdir()
        for label, target in folders.items():
            (root / label).symlink_to(target.resolve(), target_is_directory=True)
        reports[name] = evaluate_cli(model_dir, root, scratch / f"val_{name}.json", env, threads)
    classes, cm = joined_confusion(reports["known"], reports["left_out"], known, missing)
    return {**classification_report(cm, classes), "data": str(val_root), "classes_left_out": missing}


def joined_confusion(on_known: dict, on_left_out: dict, known: list[str], missing: list[str]) -> tuple[list[str], np.ndarray]:
    """One confusion matrix over ``known + missing`` from two ``evaluate`` reports: ``on_known`` (the
    known classes' tiles) and ``on_left_out`` (the tiles of ``missing[j]`` filed under ``known[j]``).
    The model never predicts a left-out class, so those columns stay 0."""
    classes = known + missing
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    cols = [classes.index(c) for c in on_known["classes"]]
    for i, c in enumerate(on_known["classes"]):
        cm[classes.index(c), cols] = on_known["confusion_matrix"][i]
    cols = [classes.index(c) for c in on_left_out["classes"]]
    for j, m in enumerate(missing):
        cm[classes.index(m), cols] = on_left_out["confusion_matrix"][on_left_out["classes"].index(known[j])]
    return classes, cm


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
    ap.add_argument("--per-class", type=int, default=40,
                    help="labels per class; with --order label-next, this times the number of classes in all")
    ap.add_argument("--order", choices=("per-class", "label-next", "random"), default="per-class",
                    help="per-class: N random images of each class; label-next: the station's 'label next' order; "
                         "random: the folder in a seeded random order (N times the number of classes in all)")
    ap.add_argument("--batch", type=int, default=BATCH, help="--order label-next: images per batch")
    ap.add_argument("--seed", type=int, default=0, help="which images of each class the inspector labels")
    ap.add_argument("--first-by-name", action="store_true", help="label the first N of each class by file name instead")
    ap.add_argument("--unmarked", action="store_true",
                    help="--order label-next: store the labels without their source, as stations did before ADR 0049 "
                         "(the command then reads them as drawn like the folder's other images)")
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
        picked: list[str] | None = None
        if args.order == "label-next":
            t0 = time.monotonic()
            picked = label_next_picks(args.train, args.per_class, args.seed, args.batch, EMBED)
            print(f"label next: {len(picked)} picks in {time.monotonic() - t0:.0f} s (embedding included)")
            labelled = label_listed(db, picked, None if args.unmarked else LabelSource.LABEL_NEXT)
        elif args.order == "random":
            picked = random_order_picks(args.train, args.per_class, args.seed)
            labelled = label_listed(db, picked)
        else:
            labelled = label_sample_per_class(db, args.per_class, args.seed, args.first_by_name)
        db.close()
        print(f"indexed {len(report.added)} images; labelled {sum(labelled.values())}: {labelled}")

        cmd = [sys.executable, str(ROOT / "main.py"), "--db", url, "retrain", "classifier", "--progress-json",
               "--threads", str(args.threads), "--name", "loop"]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        cmd += shlex.split(args.retrain_args)
        ran = run_retrain(cmd, env)
        if ran is None:
            return 1
        events, done, plan, seconds = ran
        independent = independent_scores(Path(done["path"]), args.val, Path(tmp), env, args.threads)
        card = json.loads(Path(done["path"], "card.json").read_text(encoding="utf-8"))
        files = labelled_paths(url, args.train)
        simple = simple_answers_on(args.train, args.val, files)

    result = {
        "train_tree": str(args.train), "val_tree": str(args.val), "per_class": args.per_class, "order": args.order,
        "seed": None if args.first_by_name and args.order == "per-class" else args.seed, "labelled": labelled,
        "batch": args.batch if args.order == "label-next" else None,
        "labels_marked_label_next": args.order == "label-next" and not args.unmarked,
        # what the inspector labelled, relative to the train tree; label-next: in the order picked
        "labelled_files": picked if picked is not None else sorted(p.relative_to(args.train).as_posix() for p in files),
        "retrain_command": " ".join(cmd[2:]).replace(url, "URL"),
        "plan": {k: plan[k] for k in ("start", "data", "notes", "command")}, "retrain_seconds": round(seconds, 1),
        "held_out_comparison": done["comparison"],
        "independent_val": {k: independent[k] for k in ("accuracy", "f1", "count", "per_class", "classes",
                                                         "confusion_matrix", "classes_left_out")},
        "simple_answers_independent_val": simple,
        "verdict": next((e["message"] for e in events if e["event"] == "verdict"), None),
        "card_training": card.get("training"), "card_data": card.get("data"),  # how the registered version was fitted
    }
    print(f"simple answers on the same labels, independent val: {simple}")
    print(f"retrain: {seconds:.0f} s wall ({plan['start']})")
    print(f"held out inside the station: {done['comparison']}")
    print(f"independent val ({independent['count']} images): accuracy {independent['accuracy']:.3f}, "
          f"macro F1 {independent['f1']:.3f}"
          + (f" (classes the command left out, scored as errors: {independent['classes_left_out']})"
             if independent["classes_left_out"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
