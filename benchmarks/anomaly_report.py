"""Markdown rows for RESULTS.md from anomaly evaluation JSONs and model cards, so the tables
there are printed by a command rather than typed.

    PYTHONPATH=. python benchmarks/anomaly_report.py --eval benchmarks/results/anomaly_bottle.json ... \
        [--validation resources/models/anomaly-magnetic_tile [--key appearance_stats]]

``--eval``: files written by ``main.py evaluate anomaly --json`` (one model, or several keyed by
model directory): image AUROC, pixel AUROC, PRO and pixel AUROC per defect type.
``--validation``: model directories whose card records a post-training step's validation grid
(``appearance_stats`` or ``memory_bank``): pixel AUROC per synthetic defect size, their mean, image AUROC.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def eval_rows(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    runs = [("", data)] if "image_auroc" in data else list(data.items())
    rows = []
    for name, r in runs:
        types = ", ".join(f"{k} {v:.3f}" for k, v in r.get("pixel_auroc_by_type", {}).items())
        rows.append(f"| {path.name}{' ' + name if name else ''} | {r['image_auroc']:.4f} | {r['pixel_auroc']:.4f} | "
                    f"{r['pro']:.4f} | {types} |")
    return rows


def validation_rows(model_dir: Path, key: str) -> list[str]:
    """A header and one row per validation setting: pixel AUROC per synthetic kind, their mean, image AUROC."""
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    info = card[key]
    kinds = [k for k in info["validation"][0] if k.startswith("pixel_")]
    rows = ["| model | setting | " + " | ".join(k.replace("_", " ") for k in kinds) + " | pixel mean | image |",
            "|---|---|" + "---|" * (len(kinds) + 2)]
    for r in info["validation"]:
        setting = "; ".join(str(v) if k == "map" else f"{k} {v}" for k, v in r.items()
                            if not k.startswith(("pixel", "image")) and v is not None)
        rows.append(f"| {model_dir.name} | {setting} | " + " | ".join(f"{r[k]:.4f}" for k in kinds)
                    + f" | {r['pixel']:.4f} | {r['image']:.4f} |")
    rows.append(f"| {model_dir.name} | chosen: {info['chosen']} ({info['seconds']:.0f} s) |" + " |" * (len(kinds) + 2))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", nargs="*", type=Path, default=[])
    ap.add_argument("--validation", nargs="*", type=Path, default=[])
    ap.add_argument("--key", default="appearance_stats",
                    help="card record holding the validation grid (appearance_stats, edge_band, memory_bank)")
    args = ap.parse_args()
    if args.validation:
        for d in args.validation:
            print("\n".join(validation_rows(d, args.key)))
    if args.eval:
        print("| evaluation | image AUROC | pixel AUROC | PRO | pixel AUROC per type |\n|---|---|---|---|---|")
        for f in args.eval:
            print("\n".join(eval_rows(f)))


if __name__ == "__main__":
    main()
