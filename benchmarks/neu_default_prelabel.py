"""``python main.py prelabel`` with the old default NEU classifier (MemoryMamba) and the new one (ADR 0039).

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/neu_default_prelabel.py --folder DIR_OF_NEU_IMAGES \\
        [--rounds 3] [--json benchmarks/results/neu-texture-2/prelabel.json]

Each run is the real command on a fresh SQLite database (``--families classifier --threads 1``): for
``old`` the bundled ``classifier-neu`` is promoted first (``models promote``), for ``new`` the
database's own default (``classifier-neu-texture``) runs. Old and new alternate for ``--rounds``
rounds; the rate is the command's own report (``images_per_second``: pre-labelling, model loading
excluded), the model the worker loaded is read back from its log, and the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _main(*args: str) -> str:
    run = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    return run.stdout + run.stderr


def one_run(which: str, folder: Path, work: Path) -> dict:
    db = f"sqlite:///{work / (which + '.sqlite')}"
    if which == "old":
        listing = _main("models", "list", "--db", db)
        version = next(line.split()[1] for line in listing.splitlines() if re.search(r"\sclassifier-neu\s", line))
        _main("models", "promote", version, "--db", db, "--note", "old default, for timing")
    load = os.getloadavg()[0]
    log = _main("prelabel", str(folder), "--families", "classifier", "--threads", "1", "--db", db,
                "--report", str(work / f"{which}.json"))
    report = json.loads((work / f"{which}.json").read_text(encoding="utf-8"))
    model = re.search(r"loaded classifier model (\S+) from (\S+)", log)
    return {"which": which, "model": model.group(1) if model else "?", "dir": Path(model.group(2)).name if model else "?",
            "images": report["images"], "images_per_second": report["images_per_second"], "load": load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs = []
    for _ in range(args.rounds):
        for which in ("old", "new"):
            with tempfile.TemporaryDirectory() as work:
                runs.append(one_run(which, args.folder.resolve(), Path(work)))
            r = runs[-1]
            print(f"{r['which']}: {r['model']} ({r['dir']}) {r['images']} images, {r['images_per_second']:.1f} images/s, "
                  f"load {r['load']:.2f}")
    median = {w: statistics.median(r["images_per_second"] for r in runs if r["which"] == w) for w in ("old", "new")}
    print(f"median images/s: old {median['old']:.1f}, new {median['new']:.1f}, new / old {median['new'] / median['old']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "median_images_per_second": median,
                                         "new_over_old": median["new"] / median["old"]}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
