"""The accurate segmenter profile and end-to-end pre-labelling: today's process against the new one,
and one thread against two (issue 21, benchmarks/results/speed-3.md).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/accurate_speed.py [--rounds 3] [--reps 3]
        [--images 16] [--frame PNG] [--configs today:1 new:1 new:2] [--json FILE]
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/accurate_speed.py --views [--reps 4] [--frame PNG]

Each configuration runs in a child process of its own (``today``: the process as main runs it;
``new``: with ``inference.device.keep_freed_memory``, which is process-wide and cannot be
switched back), and the children alternate round by round (order reversed every other round),
so the load of the shared machine weighs on all of them alike. ``:N`` is the torch and numba
thread count, or ``auto`` (ADR 0040: ``ThreadGovernor`` re-chooses before each frame and each worker
batch; the counts it chose are reported). ``--burners N`` keeps N busy-loop processes running for
the whole run (another program on the station's cores). A child measures:

- one 512² infrared frame (``--frame``, enlarged; default the first SIRST image, else a synthetic
  sky) through the full segmenter with the ``accurate`` profile (standardise, the card's networks x 4
  flips, verifier): wall and CPU seconds (user + system) and minor page faults per frame, after
  one warm-up frame;
- the in-process worker (decode, all three bundled families with the accurate profile, mask PNGs,
  map files, SQLite writes) on ``--images`` synthetic 256² images, batch 8, timed from the end of
  its first batch to its last (``speed_profiles.worker_rate``), and the share of its wall time in each
  stage of its loop (``WorkerStats.seconds``: claim, model loading, decode wait, models, store; whole run);
- with ``--engine``, the bare engine (``InspectionEngine.predict_files``, batch 8, the same lanes as the
  worker's batches) on the same files: the in-app rate as a share of it (issue 21: >= 90 %);
- its peak resident memory.

``issue:N`` is ``today:N`` with the segmenter of ``--issue-segmenter`` (the bundle as it was when issue 21
was filed: two networks x 4 flips + verifier, 8 passes; ``git archive fc84308~1 resources/models/segmenter-sirst
| tar -x -C DIR``): the issue's "today", run beside the others.

``lanes:N`` is ``new:N`` with the worker told ``threads=N``: its batches run as N lanes of one thread
each (ADR 0041; ``auto`` does the same with the count it chooses), where ``new:N`` leaves the worker's
batches on N intra-op threads (the previous behaviour). A single frame is one image: N intra-op threads
in both.

CPU seconds matter on a shared machine: wall time there depends on what else runs, CPU time much less.

``--views``: in one process, the accurate profile's 8 network passes as today (one pass per flip)
against the 4 flips of each network batched into one forward pass, alternating; largest
difference of the logits, CPU seconds per frame.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")  # the pool must be large enough for a :2 configuration

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prelabel import images, model_dirs  # noqa: E402
from benchmarks.speed_profiles import SIRST, engine_rate, load_average, worker_rate  # noqa: E402
from inference.device import AUTO_THREADS, ThreadGovernor, keep_freed_memory, prepare_inference_process, set_threads  # noqa: E402


def frame(side: int, path: str | None) -> np.ndarray:
    """An infrared frame enlarged to side x side (gray float): ``path``, else speed_profiles' frame."""
    import cv2

    from benchmarks.speed_profiles import ir_frame
    from inference.imageio import read_image

    if path is None:
        return ir_frame(side)
    return cv2.resize(read_image(path, "gray"), (side, side), interpolation=cv2.INTER_LINEAR)


def _usage() -> tuple[float, float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime + ru.ru_stime, ru.ru_minflt


def child(config: str, reps: int, n_images: int, frame_path: str | None, engine: bool = False,
          issue_segmenter: str | None = None) -> dict:
    from database.engine import open_database
    from inference.checkpoints import load_model
    from inference.profiles import apply_profile
    from inference.segmenter_predict import predict_masks

    mode, threads = config.split(":")
    governor = None
    if threads == AUTO_THREADS:
        prepare_inference_process(AUTO_THREADS)
        governor = ThreadGovernor()
        kept = keep_freed_memory()
    else:
        kept = keep_freed_memory() if mode in ("new", "lanes") else False
        set_threads(int(threads))
    chosen: list[int] = []
    by_threads: dict[int, int] = {}
    stages: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="accurate-speed-"))
    dirs, _ = model_dirs(tmp / "models")
    own = None
    if mode == "issue":  # the segmenter as it was when issue 21 was filed, the rest as today
        if not issue_segmenter:
            raise SystemExit("issue:N needs --issue-segmenter DIR")
        dirs["segmenter"] = Path(issue_segmenter)
        own = {"segmenter": dirs["segmenter"]}
    model = apply_profile(load_model(dirs["segmenter"], family="segmenter"), "accurate")
    img = frame(512, frame_path)
    predict_masks(model, [img])  # warm-up: numba compilation, first allocations
    runs = []
    for _ in range(reps):
        if governor is not None:
            chosen.append(governor.apply())
        w0, c0, f0 = _usage()
        predict_masks(model, [img])
        w1, c1, f1 = _usage()
        runs.append({"wall_s": round(w1 - w0, 3), "cpu_s": round(c1 - c0, 3), "minor_faults": f1 - f0})
    paths = images(tmp / "e2e", n_images)
    db = open_database(f"sqlite:///{tmp / 'bench.sqlite'}")
    try:
        w0, c0, _ = _usage()
        rate, timed = worker_rate(db, tmp / "e2e", "accurate", tmp / "artifacts", 8,
                                  threads=(AUTO_THREADS if governor is not None
                                           else int(threads) if mode == "lanes" else None), by_threads=by_threads,
                                  stages=stages, model_dirs=own)
        w1, c1, _ = _usage()
    finally:
        db.close()
    bare = None
    if engine:  # the bare engine on the same files, same lanes as the worker's batches: the in-app ratio
        # auto: the lanes the governor gave the worker's last batch (the bare engine does not govern)
        lanes = int(threads) if mode == "lanes" else governor.threads if governor is not None else 1
        bare = round(engine_rate(dirs, paths, "accurate", 8, lanes=lanes), 3)
    return {"config": config, "allocator_kept": kept, "frame_512": runs, "frame_threads_chosen": chosen,
            "worker_256": {"images_per_second": round(rate, 3), "timed": timed, "images": len(paths),
                           "batches_by_threads": by_threads,
                           "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
                           "cpu_s_per_image": round((c1 - c0) / len(paths), 3)},
            "engine_256_images_per_second": bare,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_average": load_average()}


def views(reps: int, frame_path: str | None) -> dict:
    """Per-flip passes (today) against the 4 flips of each network in one batched pass."""
    import torch

    from inference.checkpoints import load_model
    from inference.models.mim_istd import segment_logits
    from inference.preprocess import segmenter_input, standardise
    from inference.segmenter_predict import _run, model_members

    tmp = Path(tempfile.mkdtemp(prefix="accurate-views-"))
    dirs, _ = model_dirs(tmp / "models")
    members = model_members(load_model(dirs["segmenter"], family="segmenter"))
    x = torch.from_numpy(np.ascontiguousarray(standardise(segmenter_input(frame(512, frame_path), 1))))[None]
    flips: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))

    def batched(m) -> torch.Tensor:
        out = segment_logits(m, torch.cat([x.flip(d) if d else x for d in flips]))
        acc = out[0:1]
        for i, d in enumerate(flips[1:], 1):
            acc = acc + out[i:i + 1].flip(d)
        return acc / 4

    ways = {"per flip (today)": lambda: [_run(m, x, True) for m in members], "4 flips batched": lambda: [batched(m) for m in members]}
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    with torch.inference_mode():
        for m in members:
            m.eval()
        first = {k: f() for k, f in ways.items()}
        diff = max(float((a - b).abs().max()) for a, b in zip(*first.values()))
        for r in range(reps):
            for k in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
                _, c0, _ = _usage()
                ways[k]()
                seconds[k].append(round(_usage()[1] - c0, 3))
    return {"max_logit_difference": diff, "cpu_s": seconds, "load_average": load_average()}


def summarise(children: list[dict]) -> dict:
    out: dict = {}
    for c in dict.fromkeys(r["config"] for r in children):
        rows = [r for r in children if r["config"] == c]
        frames = [f for r in rows for f in r["frame_512"]]
        out[c] = {"frame_wall_median_s": float(np.median([f["wall_s"] for f in frames])),
                  "frame_wall_best_s": min(f["wall_s"] for f in frames),
                  "frame_cpu_median_s": float(np.median([f["cpu_s"] for f in frames])),
                  "frame_faults_median": float(np.median([f["minor_faults"] for f in frames])),
                  "worker_img_s_mean": float(np.mean([r["worker_256"]["images_per_second"] for r in rows])),
                  "worker_cpu_s_per_image_mean": float(np.mean([r["worker_256"]["cpu_s_per_image"] for r in rows])),
                  "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rows)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="512² frames timed per child (after one warm-up)")
    ap.add_argument("--images", type=int, default=16, help="256² images through the worker per child")
    ap.add_argument("--frame", help="an infrared image to enlarge to 512² (default: the first SIRST image)")
    ap.add_argument("--configs", nargs="+", default=["today:1", "new:1", "new:2"])
    ap.add_argument("--views", action="store_true", help="per-flip passes against batched flips instead")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--burners", type=int, default=0, help="busy-loop processes kept running during the run")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--engine", action="store_true",
                    help="also the bare engine on the worker's files, same lanes (the in-app ratio)")
    ap.add_argument("--issue-segmenter", help="for issue:N configurations: the segmenter directory as it was when "
                                              "issue 21 was filed (e.g. extracted with git archive)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.reps, args.images, args.frame, args.engine, args.issue_segmenter)))
        return
    if args.frame is None and not SIRST.is_dir():
        print(f"note: no SIRST copy at {SIRST}; pass --frame for a real infrared frame (using a synthetic sky)")
    if args.views:
        set_threads(1)
        result: dict = views(args.reps, args.frame)
        for k, v in result["cpu_s"].items():
            print(f"{k:>18}: CPU s per 512² frame {', '.join(map(str, v))} (median {np.median(v):.3f})")
        print(f"largest logit difference {result['max_logit_difference']:.2e}, load {result['load_average']}")
    else:
        children = []
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
        try:
            children = _rounds(args)
        finally:
            for b in burners:
                b.kill()
        result = {"burners": args.burners, "children": children, "summary": summarise(children)}
        for c, s in result["summary"].items():
            print(f"{c:>8}: frame wall median {s['frame_wall_median_s']:.3f} s (best {s['frame_wall_best_s']:.3f}), CPU median "
                  f"{s['frame_cpu_median_s']:.3f} s, faults {s['frame_faults_median']:.0f}; worker {s['worker_img_s_mean']:.2f} img/s "
                  f"({s['worker_cpu_s_per_image_mean']:.3f} CPU s/img); peak RSS {s['peak_rss_mib_max']:.0f} MiB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


def _rounds(args: argparse.Namespace) -> list[dict]:
    """The children, configurations alternating round by round (order reversed every other round)."""
    children = []
    for r in range(args.rounds):
        for c in (args.configs if r % 2 == 0 else args.configs[::-1]):
            cmd = [sys.executable, __file__, "--child", c, "--reps", str(args.reps), "--images", str(args.images)]
            cmd += ["--frame", args.frame] if args.frame else []
            cmd += ["--engine"] if args.engine else []
            cmd += ["--issue-segmenter", args.issue_segmenter] if args.issue_segmenter else []
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            res["round"] = r + 1
            children.append(res)
            f = res["frame_512"]
            chosen = f" (threads chosen {res['frame_threads_chosen']})" if res["frame_threads_chosen"] else ""
            by = res["worker_256"]["batches_by_threads"]
            chosen_w = f" (batches by threads {by})" if by else ""
            stages = res["worker_256"].get("stage_seconds") or {}
            if stages:  # the whole run's stages, first batch and model loading included
                total = sum(stages.values())
                chosen_w += " [" + ", ".join(f"{k} {v / total:.0%}" for k, v in stages.items()) + "]"
            if res.get("engine_256_images_per_second"):
                chosen_w += (f", bare engine {res['engine_256_images_per_second']:.2f} img/s (in-app "
                             f"{res['worker_256']['images_per_second'] / res['engine_256_images_per_second']:.0%})")
            print(f"round {r + 1} {c:>8}: 512² frame wall {', '.join(str(x['wall_s']) for x in f)} s{chosen}, CPU "
                  f"{', '.join(str(x['cpu_s']) for x in f)} s, faults {f[-1]['minor_faults']}; worker 256² "
                  f"{res['worker_256']['images_per_second']:.2f} img/s{chosen_w} ({res['worker_256']['cpu_s_per_image']:.3f} "
                  f"CPU s/img); peak RSS {res['peak_rss_mib']:.0f} MiB; load {res['load_average']}", flush=True)
    return children


if __name__ == "__main__":
    main()
