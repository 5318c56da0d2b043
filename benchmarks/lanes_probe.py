"""Why lanes (ADR 0041), measured in one process: the engine's models alone on a batch, and one network pass per batch size.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lanes_probe.py [--images 32] [--rounds 2] [--json FILE]

1. The bundled models (all three families, their default profiles) on ``--images`` synthetic 256²
   images already decoded (no decoding, no storage: ``InspectionEngine.predict_decoded``), batch 8,
   after one warm-up batch, in four configurations alternating round by round:
   - ``1 lane, 1 thread``;
   - ``1 lane, 2 threads`` (two intra-op threads: the worker's batches before ADR 0041);
   - ``2 lanes, scan behind the lock``: lanes, but every scan call goes through the parallel kernel
     and its lock, as before the serial kernel existed;
   - ``2 lanes`` (today's code).
   Wall and process CPU seconds per image.
2. The segmenter's main network, one pass over 256² frames at batch 1, 2, 4 and 8 (one thread):
   CPU milliseconds per frame, i.e. whether batching frames would make a pass cheaper.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.services.json_files import write_json_atomic  # noqa: E402
from benchmarks.prelabel import images  # noqa: E402
from benchmarks.speed_profiles import load_average  # noqa: E402
from inference.bundled import bundled_model_dir  # noqa: E402
from inference.device import keep_freed_memory, set_threads  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402
from inference.families import NAMES as FAMILIES  # noqa: E402
from inference.ssm import cpu_scan  # noqa: E402

BATCH = 8
CONFIGS = ("1 lane, 1 thread", "1 lane, 2 threads", "2 lanes, scan behind the lock", "2 lanes")


def _locked_serial(*args) -> None:
    """The scan as before the serial kernel: the parallel kernel, on one thread, behind the lock."""
    with cpu_scan._KERNEL_LOCK:
        cpu_scan.numba.set_num_threads(1)
        cpu_scan.scan_forward(*args)


def _timed(run: Callable[[], None], n: int) -> dict[str, float]:
    w, c = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    return {"images_per_second": round(n / wall, 3), "cpu_s_per_image": round(cpu / n, 4)}


def engine_rows(n_images: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="lanes-probe-"))
    paths = images(tmp / "images", n_images)
    rows: dict[str, list[dict[str, float]]] = {c: [] for c in CONFIGS}
    with InspectionEngine({f: bundled_model_dir(f) for f in FAMILIES}, device="cpu") as engine:
        decoded = engine.collect(engine.submit_decode([(str(p), str(p)) for p in paths]))
        batches = [decoded[i:i + BATCH] for i in range(0, len(decoded), BATCH)]
        set_threads(1)
        engine.predict_decoded(batches[0])  # warm-up: numba compilation, first allocations
        engine.predict_decoded(batches[0], lanes=2)
        serial = cpu_scan.scan_forward_serial
        for r in range(rounds):
            for config in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
                lanes = 2 if config.startswith("2 lanes") else 1
                set_threads(2 if config == "1 lane, 2 threads" else 1)
                cpu_scan.scan_forward_serial = _locked_serial if "lock" in config else serial  # type: ignore[assignment]
                try:
                    row = _timed(lambda lanes=lanes: [engine.predict_decoded(b, lanes=lanes) for b in batches], len(decoded))
                finally:
                    cpu_scan.scan_forward_serial = serial
                rows[config].append({**row, "round": r + 1, "load_average": load_average()})
                print(f"round {r + 1} {config:30s} {row['images_per_second']:.2f} img/s, "
                      f"{row['cpu_s_per_image']:.3f} CPU s/img, load {load_average()}", flush=True)
        set_threads(1)
    return rows


def segmenter_batch_rows(reps: int = 2) -> dict[str, float]:
    from inference.checkpoints import load_model
    from inference.models.mim_istd import segment_logits

    set_threads(1)
    net = load_model(bundled_model_dir("segmenter"), family="segmenter").model.eval()
    x = torch.randn(8, net.config.in_chans, 256, 256)
    out: dict[str, float] = {}
    with torch.inference_mode():
        segment_logits(net, x[:1])
        for k in (1, 2, 4, 8):
            segment_logits(net, x[:k])  # warm-up at this batch size
            c = time.process_time()
            for _ in range(reps):
                for i in range(0, 8, k):
                    segment_logits(net, x[i:i + k])
            out[f"batch_{k}"] = round((time.process_time() - c) / (8 * reps) * 1000, 1)
            print(f"segmenter main network, batch {k}: {out[f'batch_{k}']:.1f} CPU ms per 256² frame", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    keep_freed_memory()
    result = {"engine_256": engine_rows(args.images, args.rounds), "segmenter_pass_cpu_ms_per_frame": segmenter_batch_rows(),
              "load_average": load_average()}
    for config, rows in result["engine_256"].items():
        rates = [r["images_per_second"] for r in rows]
        print(f"{config:30s} mean {sum(rates) / len(rates):.2f} img/s")
    if args.json:
        write_json_atomic(Path(args.json), result)


if __name__ == "__main__":
    main()
