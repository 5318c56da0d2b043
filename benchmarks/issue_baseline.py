"""Issue 21's "≥ 4× today in the same run": the station's pre-labelling worker as it was when the issue
was filed, against today's, alternating in one run.

    git worktree add /tmp/issue21-code 5584ce3     # the last commit before issue 21's work (2026-11-23)
    ln -s "$PWD/.venv" /tmp/issue21-code/.venv
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/issue_baseline.py --baseline-tree /tmp/issue21-code \
        [--rounds 2] [--images 32] [--json FILE]

Each round runs, each in a fresh child process (order reversed every other round):
- ``then``: the baseline tree's own ``benchmarks/prelabel.py`` worker measurement (its bundled models —
  MemoryMamba NEU classifier, the two-network segmenter x 4 flips + verifier, the pattern anomaly model —
  its worker on one thread, as the issue measured: claims, decoding, models, mask PNGs, maps, SQLite),
  timed after a warm-up job;
- ``now``: today's worker as the station starts it (``--threads auto``: lanes of the governor's count,
  freed memory kept, the bundled models on their default profiles), timed after its first batch.
Both on the same ``--images`` synthetic 256² images (the generator is the same in both trees), batch 8.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.services.json_files import write_json_atomic  # noqa: E402
from benchmarks.speed_profiles import load_average  # noqa: E402

THEN = """
import sys, tempfile, time
from pathlib import Path
from benchmarks.prelabel import images, model_dirs, worker_rate
from inference.training.common import set_threads
set_threads(1)
tmp = Path(tempfile.mkdtemp(prefix="issue21-then-"))
dirs, origin = model_dirs(tmp / "models")
images(tmp / "images", {n})
images(tmp / "warm-up", 8)
rate = worker_rate(dirs, tmp / "images", tmp / "warm-up", tmp, "cpu", 8)
print("RESULT", rate, "; ".join(f"{{f}}: {{o}}" for f, o in origin.items()))
"""

NOW = """
import sys, tempfile
from pathlib import Path
from benchmarks.prelabel import images
from benchmarks.speed_profiles import worker_rate
from database.engine import open_database
from inference.device import AUTO_THREADS, keep_freed_memory, prepare_inference_process
prepare_inference_process(AUTO_THREADS)
keep_freed_memory()
tmp = Path(tempfile.mkdtemp(prefix="issue21-now-"))
images(tmp / "images", {n})
db = open_database(f"sqlite:///{{tmp / 'bench.sqlite'}}")
by = {{}}
rate, timed = worker_rate(db, tmp / "images", None, tmp / "artifacts", 8, threads=AUTO_THREADS, by_threads=by)
db.close()
print("RESULT", rate, f"lanes by batch {{by}}")
"""


def child(tree: Path, code: str) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    _, rate, *what = line.split(" ", 2)
    return float(rate), what[0] if what else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-tree", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--json")
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    runs = {"then": (args.baseline_tree.resolve(), THEN.format(n=args.images)), "now": (here, NOW.format(n=args.images))}
    rows: dict[str, list[dict]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name in (("then", "now") if r % 2 == 0 else ("now", "then")):
            rate, what = child(*runs[name])
            rows[name].append({"round": r + 1, "images_per_second": round(rate, 3), "what": what, "load_average": load_average()})
            print(f"round {r + 1} {name}: {rate:.2f} img/s ({what}); load {load_average()}", flush=True)
    mean = {k: sum(x["images_per_second"] for x in v) / len(v) for k, v in rows.items()}
    per_round = [n["images_per_second"] / t["images_per_second"] for t, n in zip(rows["then"], rows["now"])]
    print(f"then {mean['then']:.2f} img/s, now {mean['now']:.2f} img/s: {mean['now'] / mean['then']:.2f}x "
          f"(per round {', '.join(f'{x:.2f}x' for x in per_round)})")
    if args.json:
        write_json_atomic(Path(args.json), {"rows": rows, "mean": mean, "ratio": mean["now"] / mean["then"],
                                            "ratio_per_round": per_round, "images": args.images,
                                            "baseline_tree": str(args.baseline_tree)})


if __name__ == "__main__":
    main()
