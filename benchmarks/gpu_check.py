"""Issue 21 item 5, the GPU path proven in one run on a lent GPU machine (``scripts/gpu_checks.sh`` runs it).

    python benchmarks/gpu_check.py --out gpu_check.json [--device cuda] [--batches 1 8 32] [--images 64]

1. **Scan agreement on the models' own shapes.** One forward pass of each bundled network at 256²
   on the CPU records the (b, d, n, L, groups) of every selective-scan call SS2D makes; each distinct
   shape is then run through mamba-ssm's fused kernel (backend ``cuda``, when it imports) and the
   torch scan on the GPU, against our numba scan on the CPU (the station's CPU path), forward and
   the gradients of u, delta, A, B, C, D: the largest relative error of each.
2. **Throughput per family.** Each family's bundled model (its card's default profile) through
   ``InspectionEngine`` on synthetic 256² images at each batch size, after a warm-up batch: images
   per second, and whether the engine's probe kept half precision for the family (it does only where
   the results stay within the family's ``half_tolerance``); a 512² infrared-like frame through the
   full segmenter (seconds, median of 5).
3. **The paper presets' training cost.** Each family's ``paper`` preset at its paper's training
   resolution: one training step (forward, backward, AdamW) per scan backend, in fp32 and under bf16
   autocast: median seconds per step of 10, images per second, peak GPU memory.

Needs only ``inference/`` and its packages (torch, numpy, OpenCV, numba, safetensors): no Qt, no
database, so it runs under the GPU image's own Python. ``--device cpu`` runs the same steps on the
CPU (a smoke test here; its scan rows then compare the torch scan on the CPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prelabel import images  # noqa: E402  (inference-only imports: fine on the GPU image)
from inference import families  # noqa: E402
from inference.bundled import bundled_model_dir  # noqa: E402
from inference.checkpoints import load_model  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402
from inference.ssm import scan as scan_module  # noqa: E402
from inference.ssm.cuda_scan import cuda_unavailable_reason  # noqa: E402

MAX_SCAN_ELEMENTS = 1 << 24  # b * d * L above this is scaled down (batch first) to keep the check short


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_available": torch.cuda.is_available(), "device": device}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    try:
        import mamba_ssm

        env["mamba_ssm"] = getattr(mamba_ssm, "__version__", "imported")
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding to report
        env["mamba_ssm"] = f"does not import: {type(exc).__name__}: {exc}"
    env["cuda_kernel_unavailable"] = cuda_unavailable_reason()
    return env


def scan_shapes() -> list[tuple[int, int, int, int, int | None]]:
    """Distinct (b, d, n, L, groups) of the selective-scan calls of one 256² pass of each bundled network."""
    seen: dict[tuple, None] = {}
    real = scan_module.selective_scan

    def recorder(u, delta, A, B, C, *args, **kwargs):
        groups = B.shape[1] if B.dim() == 4 else None
        seen[(u.shape[0], u.shape[1], A.shape[1], u.shape[2], groups)] = None
        return real(u, delta, A, B, C, *args, **kwargs)

    import inference.ssm.ss2d as ss2d

    ss2d.selective_scan = recorder  # type: ignore[assignment]
    try:
        for family in families.NAMES:
            loaded = load_model(bundled_model_dir(family), family=family)
            chans = int(getattr(getattr(loaded.model, "config", None), "in_chans", 3) or 3)
            with torch.inference_mode():
                try:
                    loaded.model.eval()(torch.rand(1, chans, 256, 256))
                except Exception:  # noqa: BLE001 - a model that is not one network (texture models): no scan
                    continue
    finally:
        ss2d.selective_scan = real  # type: ignore[assignment]
    return list(seen)


def _inputs(b: int, d: int, n: int, L: int, groups: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bc = (b, n, L) if groups is None else (b, groups, n, L)
    return {"u": torch.randn(b, d, L, generator=g), "delta": torch.randn(b, d, L, generator=g) * 0.5,
            "A": -torch.rand(d, n, generator=g) * 2 - 0.1, "B": torch.randn(*bc, generator=g),
            "C": torch.randn(*bc, generator=g), "D": torch.randn(d, generator=g),
            "delta_bias": torch.randn(d, generator=g) * 0.5}


def _run(x: dict[str, torch.Tensor], device: str, backend: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    leaves = {k: v.detach().to(device).requires_grad_(k != "delta_bias") for k, v in x.items()}
    y = scan_module.selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                   D=leaves["D"], delta_bias=leaves["delta_bias"], delta_softplus=True, backend=backend)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device)
    (y * w).sum().backward()
    return y.detach().cpu(), {k: v.grad.detach().cpu() for k, v in leaves.items() if v.grad is not None}


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))


def scan_agreement(shapes, device: str) -> list[dict[str, Any]]:
    rows = []
    backends = (["cuda"] if device == "cuda" and cuda_unavailable_reason() is None else []) + ["torch"]
    for b, d, n, L, groups in shapes:
        while b > 1 and b * d * L > MAX_SCAN_ELEMENTS:
            b //= 2
        x = _inputs(b, d, n, L, groups)
        ref_y, ref_g = _run(x, "cpu", "numba")
        for backend in backends:
            t = time.perf_counter()
            y, grads = _run(x, device, backend)
            rows.append({"shape": {"b": b, "d": d, "n": n, "L": L, "groups": groups}, "backend": backend,
                         "forward_rel_err": _rel(y, ref_y),
                         "grad_rel_err": {k: _rel(grads[k], ref_g[k]) for k in ref_g},
                         "seconds": round(time.perf_counter() - t, 4)})
    return rows


def throughput(device: str, batches: list[int], n_images: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    paths = images(tmp / "images", n_images, 256)
    out: dict[str, Any] = {}
    for family in families.NAMES:
        with InspectionEngine({family: bundled_model_dir(family)}, device=device) as engine:
            row: dict[str, Any] = {"model": bundled_model_dir(family).name,
                                   "half_precision": engine.loaded()[family].half, "images_per_second": {}}
            engine.predict_paths(paths, batches[0])  # warm-up: compilation, kernels, allocator, cuDNN choices
            for batch in batches:
                engine.predict_paths(paths[:batch], batch)  # this batch size's first run
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                done = len(engine.predict_paths(paths, batch))
                if device == "cuda":
                    torch.cuda.synchronize()
                row["images_per_second"][str(batch)] = round(done / (time.perf_counter() - t), 2)
            out[family] = row
            print(f"{family}: {row}", flush=True)
    from inference.segmenter_predict import predict_masks

    model = load_model(bundled_model_dir("segmenter"), map_location=device, family="segmenter")
    yy, xx = np.mgrid[0:512, 0:512]
    frame = (0.4 + 0.1 * np.sin(xx / 40) + 0.05 * np.cos(yy / 23)).astype(np.float32)
    frame[250:253, 300:303] += 0.3  # one small bright target
    predict_masks(model, [frame])
    seconds = []
    for _ in range(5):
        t = time.perf_counter()
        predict_masks(model, [frame])
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
    out["segmenter_512_frame_seconds_median"] = round(statistics.median(seconds), 4)
    return out


PAPER_RUNS = {  # family -> (model module, input size, batch): the papers' own training resolutions
    "classifier": ("memory_mamba", 224, 32),
    "segmenter": ("mim_istd", 256, 16),
    "anomaly": ("pattern_anomaly", 256, 8),
}


def _paper_model(module: str, preset_name: str) -> tuple[torch.nn.Module, int]:
    """The registered model of ``module`` built from that module's own preset (``inference.models.registry``)."""
    import importlib

    from inference.models.registry import spec

    cfg = importlib.import_module(f"inference.models.{module}").preset(preset_name)
    return spec(module).model_cls(cfg), int(getattr(cfg, "in_chans", 3))


def _loss(out: Any) -> torch.Tensor:
    """A scalar touching every output: the step's cost is the network's, whatever its real loss adds."""
    if isinstance(out, dict):
        return sum(v.float().mean() for v in out.values() if torch.is_tensor(v) and v.is_floating_point())
    return out.float().mean()


def paper_presets(device: str, preset_name: str = "paper", steps: int = 10) -> dict[str, Any]:
    """Training-step cost of each family's paper preset (forward, backward, AdamW) per scan backend and precision.

    What a GPU preset costs is the figure issue 19 asks for ("anything longer has a preset for a GPU
    and its figures say which was used"): images per second and peak memory, after 3 warm-up steps.
    """
    import functools

    import inference.ssm.ss2d as ss2d

    real = ss2d.selective_scan
    backends = (["cuda"] if device == "cuda" and cuda_unavailable_reason() is None else []) + ["torch"]
    out: dict[str, Any] = {}
    for family, (module, size, batch) in PAPER_RUNS.items():
        if device == "cpu":
            size, batch = min(size, 64), 2
        rows = []
        for backend in backends:
            for precision in ("fp32", "bf16") if device == "cuda" else ("fp32",):
                ss2d.selective_scan = functools.partial(real, backend=backend)  # type: ignore[assignment]
                torch.manual_seed(0)
                try:
                    model, chans = _paper_model(module, preset_name)
                    model = model.to(device).train()
                    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                    x = torch.rand(batch, chans, size, size, device=device)
                    params = sum(p.numel() for p in model.parameters())
                    if device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    times = []
                    for step in range(3 + steps):
                        t = time.perf_counter()
                        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                            loss = _loss(model(x))
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if device == "cuda":
                            torch.cuda.synchronize()
                        if step >= 3:
                            times.append(time.perf_counter() - t)
                    sec = statistics.median(times)
                    row: dict[str, Any] = {"backend": backend, "precision": precision, "input": size, "batch": batch,
                                           "parameters": params, "step_seconds_median": round(sec, 4),
                                           "train_images_per_second": round(batch / sec, 1)}
                    if device == "cuda":
                        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                except Exception as exc:  # noqa: BLE001 - a failing combination is a finding, the rest still runs
                    row = {"backend": backend, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]}
                finally:
                    ss2d.selective_scan = real  # type: ignore[assignment]
                rows.append(row)
                print(f"paper {family}: {row}", flush=True)
        out[family] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--images", type=int, default=64, help="synthetic 256² images per timed run")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-presets", action="store_true")
    ap.add_argument("--preset", default="paper", help="model preset for the training-step rows (test_tiny: smoke)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --device cpu for a smoke test")
    result: dict[str, Any] = {"environment": environment(args.device)}
    print(json.dumps(result["environment"], indent=1), flush=True)
    shapes = scan_shapes()
    result["scan_shapes"] = len(shapes)
    result["scan"] = scan_agreement(shapes, args.device)
    for row in result["scan"]:
        print(f"scan {row['backend']:>5} {row['shape']}: forward {row['forward_rel_err']:.2e}, "
              f"grads max {max(row['grad_rel_err'].values()):.2e}", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))  # the scan rows survive a failure below
    if not args.skip_throughput:
        result["throughput"] = throughput(args.device, args.batches, args.images)
        Path(args.out).write_text(json.dumps(result, indent=1))
    if not args.skip_presets:
        result["paper_presets"] = paper_presets(args.device, args.preset)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
