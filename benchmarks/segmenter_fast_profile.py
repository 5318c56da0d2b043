"""Held-out cost of a 'fast' segmenter profile: the bundled model without test-time flips
(2 network passes per frame instead of 8) against the card's settings, in one run.

    PYTHONPATH=. python benchmarks/segmenter_fast_profile.py [--data ../shared/datasets/sirst]
        [--threads 1] [--json benchmarks/results/segmenter_fast_profile.json]

Both rows go through ``evaluate_tree`` (what ``python main.py evaluate segmenter`` runs), on the
tree's evaluation split; only the card's ``test_time_flips`` differs. A card should name a
``fast`` profile only where this costs less than the issue's 0.5 points.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundled import bundled_model_dir  # noqa: E402
from inference.checkpoints import load_model  # noqa: E402
from inference.training.common import set_threads  # noqa: E402
from inference.training.segmenter_eval import evaluate_tree  # noqa: E402

KEYS = ("iou", "niou", "pd", "fa", "images", "split", "seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sirst"))
    ap.add_argument("--model", help="segmenter directory (default: the bundled one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no data tree at {args.data} (pass --data)")
    set_threads(args.threads)
    loaded = load_model(args.model or bundled_model_dir("segmenter"), family="segmenter")
    out = {}
    for name, flips in (("fast (no test-time flips)", False), ("accurate (the card's settings)", None)):
        card = loaded.card if flips is None else dict(loaded.card, test_time_flips=flips)
        r = evaluate_tree(dataclasses.replace(loaded, card=card), args.data, progress=True)
        out[name] = {k: r[k] for k in KEYS} | {"test_time_flips": r["test_time_flips"], "members": r["members"]}
        print(name, out[name], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
