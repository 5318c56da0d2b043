"""Where pre-labelling time goes, per family and per image: decode, preprocessing, each network
pass, the scan against the convolutions/norms/linears, the verifier, the memory bank's nearest
neighbours, map/mask encoding and database writes.

    NUMBA_NUM_THREADS=2 PYTHONPATH=. python benchmarks/profile_prelabel.py [--sides 256 512]
        [--threads 1 2] [--images 4] [--families classifier segmenter anomaly] [--no-worker]
        [--baseline] [--json FILE]

How: the functions that carry each stage are wrapped with timers for the run (inclusive wall
time, so nested rows are parts of the row above them; "scan", "conv", "norm" and "linear" are
summed over every network of the family). Each family runs alone through the engine (batch 1,
no prefetch, so stages do not overlap), then the real worker runs all three on the same files
into a temporary SQLite database for the encoding and storing rows. With ``--baseline`` each
configuration is also run with the speed-ups of issue 21 switched off (``inference.ssm.speed``)
in the same process, and the ratio is printed: the machine is shared, so only figures taken
side by side compare, so the two runs alternate image by image.

Use the bundled models (resources/models/); the images are synthetic PNGs (speed does not
depend on content, except the verifier, which runs once per candidate target).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("NUMBA_NUM_THREADS", "2")  # the pool must be large enough for --threads 2

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prelabel import images, model_dirs  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402
from inference.ssm import speed  # noqa: E402
from inference.training.common import set_threads  # noqa: E402

FAMILIES = ("classifier", "segmenter", "anomaly")


class Timers:
    """Inclusive wall time and call count per label, from any thread, kept apart per ``mode``
    (the run with the speed-ups and the baseline, interleaved image by image)."""

    def __init__(self) -> None:
        self.mode = "new"
        self._seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def add(self, label: str, seconds: float) -> None:
        with self._lock:
            self._seconds[self.mode][label] += seconds
            self._calls[self.mode][label] += 1

    def seconds(self, mode: str) -> dict[str, float]:
        return self._seconds[mode]

    def calls(self, mode: str) -> dict[str, int]:
        return self._calls[mode]

    def wrap(self, owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t)

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, original))

    def module_hooks(self) -> None:
        """Time leaf layers by kind (global forward hooks; a leaf never contains another timed layer)."""
        kinds = ((nn.Conv2d, "conv"), (nn.Conv1d, "conv"), (nn.BatchNorm2d, "norm"), (nn.LayerNorm, "norm"),
                 (nn.GroupNorm, "norm"), (nn.Linear, "linear"))
        starts: dict[int, float] = {}

        def kind(m: nn.Module) -> str | None:
            return next((k for cls, k in kinds if isinstance(m, cls)), None)

        def pre(m, _inputs):
            if kind(m):
                starts[id(m)] = time.perf_counter()

        def post(m, _inputs, _out):
            k = kind(m)
            if k and id(m) in starts:
                self.add(k, time.perf_counter() - starts.pop(id(m)))

        handles = [nn.modules.module.register_module_forward_pre_hook(pre),
                   nn.modules.module.register_module_forward_hook(post)]
        self._undo.append(lambda: [h.remove() for h in handles])

    def reset(self) -> None:
        self._seconds.clear()
        self._calls.clear()

    def close(self) -> None:
        while self._undo:
            self._undo.pop()()


def instrument(t: Timers) -> None:
    import app.worker as worker
    import inference.anomaly_predict as anomaly_predict
    import inference.classifier_predict as classifier_predict
    import inference.engine as engine
    import inference.models.pattern_anomaly as pattern
    import inference.models.texture_knn as texture_knn
    import inference.segmenter_predict as seg
    import inference.ssm.ss2d as ss2d
    from app.services.artifacts import ArtifactStore

    t.wrap(engine, "decode", "decode (read + channels + shrink)")
    t.wrap(classifier_predict, "resize_to_model_input", "classifier: resize to input")
    t.wrap(classifier_predict, "tta_logits", "classifier: network, all test-time views")
    t.wrap(seg, "standardise", "segmenter: standardise")
    t.wrap(seg, "predict_probabilities", "segmenter: networks (members x views)")
    t.wrap(seg, "segment_logits", "segmenter: one network pass")
    t.wrap(seg, "binarise", "segmenter: threshold + components + verifier")
    t.wrap(seg, "verify", "segmenter: target verifier")
    t.wrap(anomaly_predict, "anomaly_input", "anomaly: resize to input")
    t.wrap(anomaly_predict, "model_maps", "anomaly: model maps + score")
    for name in ("prediction_map", "bank_map", "stats_map", "band_map"):
        t.wrap(pattern.PatternAnomaly, name, f"anomaly: {name}")
    t.wrap(texture_knn, "nearest_rows", "anomaly: memory-bank nearest neighbours")
    t.wrap(ss2d, "selective_scan", "scan")
    t.module_hooks()
    t.wrap(worker, "mask_png", "worker: mask PNG encoding")
    t.wrap(ArtifactStore, "put_map", "worker: anomaly map encoding + file")
    t.wrap(worker.Worker, "_store", "worker: storing (encodings + database writes)")


def predict(engine: InspectionEngine, path: Path, families: list[str]) -> None:
    for batch in engine.predict_files([(str(path), path)], 1, families, 0):
        bad = [r.error for r in batch if r.error]
        if bad:
            raise RuntimeError(bad[0])


def modes(baseline: bool) -> list[str]:
    return ["new", "baseline"] if baseline else ["new"]


def family_run(engine: InspectionEngine, paths: list[Path], family: str, timers: Timers, baseline: bool
               ) -> dict[str, float]:
    """Seconds per mode for all ``paths`` through one family, batch 1 without prefetch.

    With ``baseline`` each image runs with the speed-ups and without them, alternating which goes
    first, so that the load of a shared machine (it changes by the minute) weighs on both alike.
    """
    for mode in modes(baseline):  # warm-up of both paths (numba compiles each signature once)
        with switched(mode == "new"):
            predict(engine, paths[0], [family])
    timers.reset()
    total: dict[str, float] = defaultdict(float)
    for i, p in enumerate(paths):
        order = modes(baseline) if i % 2 == 0 else modes(baseline)[::-1]
        for mode in order:
            timers.mode = mode
            with switched(mode == "new"):
                t = time.perf_counter()
                predict(engine, p, [family])
                total[mode] += time.perf_counter() - t
    timers.mode = "new"
    return total


@contextmanager
def switched(on: bool) -> Iterator[None]:
    before = speed.enabled()
    speed.set_enabled(on)
    try:
        yield
    finally:
        speed.set_enabled(before)


def profile_config(engine, dirs, paths, side, threads, timers, families, worker: bool, baseline: bool, tmp: Path
                   ) -> dict[str, dict]:
    """One result dict per mode ("new", and "baseline" when asked)."""
    from benchmarks.prelabel import worker_rate

    out = {m: {"side": side, "threads": threads, "families": {}} for m in modes(baseline)}
    n = len(paths)
    for family in families:
        seconds = family_run(engine, paths, family, timers, baseline)
        for m in modes(baseline):
            rows = {k: {"ms_per_image": 1000 * v / n, "calls_per_image": timers.calls(m)[k] / n}
                    for k, v in sorted(timers.seconds(m).items(), key=lambda kv: -kv[1])}
            out[m]["families"][family] = {"ms_per_image": 1000 * seconds[m] / n, "images_per_second": n / seconds[m],
                                          "stages": rows}
    if worker:
        for m in modes(baseline):
            timers.reset()
            folder = tmp / f"worker-{side}-{threads}-{m}"
            folder.mkdir(parents=True, exist_ok=True)
            for p in paths:
                (folder / p.name).write_bytes(p.read_bytes())
            warm = tmp / f"warm-{side}-{threads}-{m}"
            images(warm, 1, side)
            db_dir = tmp / f"db-{side}-{threads}-{m}"
            db_dir.mkdir()
            with switched(m == "new"):
                out[m]["worker_images_per_second"] = worker_rate({f: dirs[f] for f in families}, folder, warm, db_dir, "cpu", 1)
            out[m]["worker_stages"] = {k: {"ms_per_image": 1000 * v / (n + 1)} for k, v in timers.seconds("new").items()
                                       if k.startswith("worker") or k.startswith("decode")}
    return out


def print_config(res: dict, base: dict | None) -> None:
    load = os.getloadavg()[0]
    print(f"\n== {res['side']}² frames, {res['threads']} thread(s) (torch runs {torch.get_num_threads()}), "
          f"load average {load:.1f} ==")
    for family, f in res["families"].items():
        ratio = ""
        if base:
            b = base["families"][family]
            ratio = f"   baseline {b['ms_per_image']:.0f} ms -> {b['ms_per_image'] / f['ms_per_image']:.2f}x"
        print(f"{family}: {f['ms_per_image']:.0f} ms/image ({f['images_per_second']:.2f} img/s){ratio}")
        for k, row in f["stages"].items():
            was = ""
            if base and k in base["families"][family]["stages"]:
                was = f"  (baseline {base['families'][family]['stages'][k]['ms_per_image']:7.1f})"
            print(f"    {k:<48} {row['ms_per_image']:8.1f} ms  x{row['calls_per_image']:.1f}{was}")
    if "worker_images_per_second" in res:
        was = f" (baseline {base['worker_images_per_second']:.2f})" if base and "worker_images_per_second" in base else ""
        print(f"worker, all families stored: {res['worker_images_per_second']:.2f} img/s{was}")
        for k, row in res["worker_stages"].items():
            print(f"    {k:<48} {row['ms_per_image']:8.1f} ms")


def markdown(runs: list[dict]) -> str:
    """The runs of a ``--json`` file as one markdown table per configuration (for results files)."""
    out = []
    for res in runs:
        base = res.get("baseline")
        load = res.get("load_average", [float("nan")])[0]
        out.append(f"**{res['side']}², {res['threads']} thread(s)**, load average {load:.1f}\n")
        out.append("| family / stage | ms per image | calls per image | baseline ms | ratio |\n|---|---|---|---|---|")
        for family, f in res["families"].items():
            b = base["families"][family] if base else None
            ratio = f"{b['ms_per_image'] / f['ms_per_image']:.2f}×" if b else ""
            out.append(f"| **{family}** (all) | **{f['ms_per_image']:.0f}** | | {b['ms_per_image']:.0f} | **{ratio}** |"
                       if b else f"| **{family}** (all) | **{f['ms_per_image']:.0f}** | | | |")
            for k, row in f["stages"].items():
                was = b["stages"].get(k, {}).get("ms_per_image") if b else None
                r = f"{was / row['ms_per_image']:.2f}×" if was and row["ms_per_image"] else ""
                out.append(f"| {k} | {row['ms_per_image']:.1f} | {row['calls_per_image']:.0f} | "
                           f"{'' if was is None else f'{was:.1f}'} | {r} |")
        if "worker_images_per_second" in res:
            w = res["worker_images_per_second"]
            bw = base.get("worker_images_per_second") if base else None
            out.append(f"| **worker, all three stored (img/s)** | **{w:.2f} img/s** | | "
                       f"{'' if bw is None else f'{bw:.2f} img/s'} | {'' if not bw else f'{w / bw:.2f}×'} |")
            for k, row in res["worker_stages"].items():
                out.append(f"| {k} | {row['ms_per_image']:.1f} | | | |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--no-worker", action="store_true", help="skip the worker (encoding, database) rows")
    ap.add_argument("--baseline", action="store_true", help="also run with the issue-21 speed-ups off, same process")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--table-from", metavar="JSON", help="print the markdown tables of an earlier --json run and exit")
    args = ap.parse_args()
    if args.table_from:
        print(markdown(json.loads(Path(args.table_from).read_text())["runs"]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="profile-prelabel-"))
    dirs, origin = model_dirs(tmp / "models")
    print("models: " + "; ".join(f"{f}: {o}" for f, o in origin.items()) + f"; load average {os.getloadavg()}")
    timers = Timers()
    instrument(timers)
    results = []
    try:
        with InspectionEngine({f: dirs[f] for f in args.families}, device="cpu") as engine:
            for side in args.sides:
                paths = images(tmp / f"images-{side}", args.images, side)
                for threads in args.threads:
                    set_threads(threads)
                    both = profile_config(engine, dirs, paths, side, threads, timers, args.families,
                                          not args.no_worker, args.baseline, tmp)
                    res, base = both["new"], both.get("baseline")
                    res["load_average"] = os.getloadavg()
                    if base:
                        res["baseline"] = base
                    print_config(res, base)
                    sys.stdout.flush()
                    results.append(res)
                    if args.json:  # after every configuration: a long run on a busy machine may be cut short
                        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                        Path(args.json).write_text(json.dumps({"models": origin, "images": args.images, "runs": results},
                                                              indent=2))
    finally:
        timers.close()


if __name__ == "__main__":
    main()
