"""The "label next" counter scored against the retrain command's own accuracy (counter.md).

    PYTHONPATH=. python benchmarks/counter_study.py benchmarks/results/counter/*_s2[0-3].json \
        --jsonl benchmarks/results/counter/study.jsonl

Each run JSON (``retraining_loop.py``, via ``lnclasses_command.py`` or on val) holds the labelled files
and the command's accuracy on images it never saw (``independent_val``). For each run the counter
(``app.services.labels_needed``) is computed on exactly those labelled files, with the unlabelled
rest of the run's pool as the folder, and its accuracy estimate is set beside the truth. Features
come through the station's own embedding cache (``app.services.image_embedding``), keyed by a hash
of the file. counter.md's study ran this script at commit 405b851 with three candidates side by side
(the counter before, ``texture_logreg``; the adopted one, ``head``; ``head_folder``, removed); their
rows are in results/counter/study.jsonl and val/study.jsonl. A future candidate is added the same way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.image_embedding import EmbeddingCache, embedding_source  # noqa: E402
from app.services.labels_needed import COUNTER_FEATURES, TARGET_ACCURACY, labels_needed  # noqa: E402

COUNTER_MODELS = ("counter",)  # the candidates scored side by side (counter.md: texture_logreg, head, head_folder)
CACHE = Path("/tmp/counter_study_cache")


def _hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp") and p.is_file())


def study_run(run: dict, seed: int = 0) -> dict:
    """One run's row: the truth and the counter's accuracy estimate, "more" and short text."""
    train = Path(run["train_tree"])
    labelled = [Path(f) if Path(f).is_absolute() else train / f for f in run["labelled_files"]]
    labelled_set = {p.resolve() for p in labelled}
    pool = [p for p in _tree_files(train) if p.resolve() not in labelled_set]
    labels = [p.parent.name for p in labelled]
    names = [str(p.relative_to(train)).replace("/", "__") for p in labelled]
    row: dict = {"file": run.get("_file"), "order": run["order"], "seed": run["seed"], "per_class": run["per_class"],
                 "labels": len(labelled), "acc_true": run["independent_val"]["accuracy"],
                 "f1_true": run["independent_val"]["f1"], "counters": {}}
    for model in COUNTER_MODELS:
        cache = EmbeddingCache(CACHE, embedding_source(COUNTER_FEATURES))
        t0 = time.perf_counter()
        x, _ = cache.vectors([(str(p), _hash(p)) for p in labelled])
        t_feat = time.perf_counter() - t0
        t0 = time.perf_counter()
        est = labels_needed(x, labels, names, pool=len(pool), seed=seed)
        row["counters"][model] = {"accuracy_now": est.accuracy_now, "more": est.more, "at_least": est.at_least,
                                  "short": est.short, "ceiling": est.ceiling, "points": est.points,
                                  "features_s": round(t_feat, 2), "counter_s": round(time.perf_counter() - t0, 2)}
    return row


def summarise(rows: list[dict], target: float = TARGET_ACCURACY) -> dict:
    """E (mean |estimate - truth|), bias and V (agreement on "target reached") per candidate, over the
    cells where every candidate gives an estimate; the same per order."""
    cells = [r for r in rows if all(r["counters"][m]["accuracy_now"] is not None for m in COUNTER_MODELS)]
    out: dict = {"cells": len(cells), "left_out": len(rows) - len(cells)}
    for scope in ("all", "label-next", "per-class"):
        sub = [r for r in cells if scope == "all" or r["order"] == scope]
        if not sub:
            continue
        out[scope] = {}
        for m in COUNTER_MODELS:
            err = [abs(r["counters"][m]["accuracy_now"] - r["acc_true"]) for r in sub]
            bias = [r["counters"][m]["accuracy_now"] - r["acc_true"] for r in sub]
            agree = [(r["counters"][m]["accuracy_now"] >= target) == (r["acc_true"] >= target) for r in sub]
            out[scope][m] = {"E": round(float(np.mean(err)), 4), "bias": round(float(np.mean(bias)), 4),
                             "V": round(float(np.mean(agree)), 4), "n": len(sub)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--jsonl", type=Path, required=True, help="one row per run (written)")
    a = p.parse_args()
    rows = []
    for f in sorted(a.runs):
        run = json.loads(f.read_text())
        run["_file"] = f.name
        row = study_run(run)
        rows.append(row)
        c = row["counters"]
        print(f"{f.name}: {row['labels']} labels, truth {row['acc_true']:.3f}; "
              + "; ".join(f"{m} {c[m]['accuracy_now'] if c[m]['accuracy_now'] is None else round(c[m]['accuracy_now'], 3)}"
                          f" '{c[m]['short']}'" for m in COUNTER_MODELS), flush=True)
    a.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
