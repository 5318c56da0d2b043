"""Anomaly model speed: training s/step and inference ms/image, extrapolated to a 200-image category.

    PYTHONPATH=. python benchmarks/anomaly_throughput.py [--preset cpu] [--threads 1] [--steps 10]

Random images at the preset's input size (speed does not depend on content). Prints the
pattern model's figures as ratios against the pixel-Gaussian baseline measured in the same
process, and the projected wall time of ``train anomaly`` with the default epochs on ~200 good
images (85 % trained, 15 % held out). The machine may be shared: the figures are what this
run saw, and the median step is reported to damp interference.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from inference.anomaly_predict import model_maps, normalise_batch
    from inference.models.pattern_anomaly import PatternAnomaly, preset
    from inference.models.pattern_anomaly_fit import with_memory_bank, with_terms
    from inference.models.pixel_gaussian import PixelGaussian, PixelGaussianConfig
    from inference.training.anomaly_train import TrainOptions, pattern_step
    from inference.training.common import set_threads

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=25, help="epochs of the default train command")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--bank-size", type=int, default=8192, help="memory-bank rows for the heatmap-with-bank figures")
    ap.add_argument("--compare-image-size", type=int, default=0,
                    help="also time the heatmaps at this input size (same preset otherwise), as ratios to the preset's size")
    ap.add_argument("--stats", action="store_true",
                    help="also time each heatmap with the appearance-statistics term (and the edge-band term), and each term alone")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    cfg = preset(args.preset)
    model = PatternAnomaly(cfg)
    rng = np.random.default_rng(0)
    batch = rng.random((args.batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)).astype(np.float32)
    opts = TrainOptions(data=Path("."), out=Path("."), batch_size=args.batch_size)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times, cpu_times = [], []
    for i in range(args.steps + 2):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = pattern_step(model, batch, rng, opts, torch.device("cpu"))["loss"]
        optim.zero_grad()
        loss.backward()
        optim.step()
        if i >= 2:  # first steps warm caches/allocator
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    step = statistics.median(times)
    # CPU seconds per step: what a step costs on an idle core (wall time also counts waiting
    # for a shared CPU). With one thread this is the honest extrapolation to an unshared machine.
    cpu_step = statistics.median(cpu_times)

    model.eval()
    t0 = time.perf_counter()
    model_maps(model, batch)
    infer_pattern = (time.perf_counter() - t0) / len(batch)
    # Heatmap cost with a memory bank (random unit rows: speed does not depend on content),
    # interleaved with the plain model, median of 3 rounds, as ratios in this process.
    rows = torch.nn.functional.normalize(torch.randn(args.bank_size, cfg.dim + 2), dim=1)

    def bank_variants(m: PatternAnomaly, images: np.ndarray, tag: str = "") -> dict:
        return {tag + name: (v, images) for name, v in
                ({"none": m} | {f: with_memory_bank(m, rows, bank_fusion=f, bank_k=k) for f, k in (("sum", 3), ("bank", 3))}).items()}

    def stats_variants(vs: dict) -> dict:
        """The appearance-statistics term added to each map (sum, weight 1), and alone (neutral statistics:
        speed does not depend on their values)."""
        out = {f"{name}+stats": (with_terms(m, stats_fusion="sum"), images) for name, (m, images) in vs.items()}
        # magnetic tile's map with the edge-band term on top, and that term alone
        out["sum+stats+band"] = (with_terms(vs["sum"][0], stats_fusion="sum", band_fusion="sum"), vs["sum"][1])
        return out | {"stats": (with_terms(vs["none"][0], stats_fusion="stats"), vs["none"][1]),
                      "band": (with_terms(vs["none"][0], band_fusion="band"), vs["none"][1])}

    variants = bank_variants(model, batch)
    if args.stats:
        variants |= stats_variants(variants)
    size2 = args.compare_image_size
    if size2:
        batch2 = rng.random((args.batch_size, cfg.in_channels, size2, size2)).astype(np.float32)
        variants |= bank_variants(PatternAnomaly(preset(args.preset, image_size=size2)).eval(), batch2, f"{size2}:")
    heat = {name: [] for name in variants}
    for _ in range(3):
        for name, (m, images) in variants.items():
            t0 = time.perf_counter()
            model_maps(m, images)
            heat[name].append((time.perf_counter() - t0) / len(images))
    heat = {name: statistics.median(v) for name, v in heat.items()}
    size_ratio = {name: round(heat[f"{size2}:{name}"] / heat[name], 2) for name in ("none", "sum", "bank")} if size2 else {}
    base = PixelGaussian(PixelGaussianConfig(image_size=cfg.image_size))
    t0 = time.perf_counter()
    base.fit(normalise_batch(base, batch))
    fit_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    model_maps(base, batch)
    infer_base = (time.perf_counter() - t0) / len(batch)

    n_train = args.images - max(1, round(args.images * 0.15))
    steps_total = math.ceil(n_train / args.batch_size) * args.epochs
    held_and_test = (args.images - n_train + 50) * infer_pattern  # calibration + a ~50-image test split
    projected = steps_total * step + held_and_test
    projected_idle = steps_total * cpu_step + held_and_test * cpu_step / step
    out = {
        "preset": args.preset, "threads": args.threads, "batch_size": args.batch_size,
        "train_s_per_step": round(step, 3), "train_cpu_s_per_step": round(cpu_step, 3),
        "projected_train_minutes_200_images_idle_core": round(projected_idle / 60, 1), "train_s_per_image": round(step / args.batch_size, 4),
        "projected_train_minutes_200_images": round(projected / 60, 1), "epochs": args.epochs, "steps": steps_total,
        "infer_ms_per_image": round(infer_pattern * 1000, 1), "baseline_infer_ms_per_image": round(infer_base * 1000, 2),
        "infer_ratio_vs_baseline": round(infer_pattern / infer_base, 1), "baseline_fit_s_per_batch": round(fit_base, 4),
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
        "bank_rows": args.bank_size,
        "heatmap_ms_per_image": {name: round(v * 1000, 1) for name, v in heat.items()},
        "heatmap_ratio_vs_no_bank": {name: round(v / heat["none"], 2) for name, v in heat.items() if ":" not in name},
    }
    if size2:
        out[f"heatmap_ratio_{size2}_vs_{cfg.image_size}"] = size_ratio
    print(f"train: {step:.3f} s/step of {args.batch_size} images ({args.threads} thread(s)); "
          f"{steps_total} steps for {args.images} good images x {args.epochs} epochs -> "
          f"projected {projected / 60:.1f} min incl. calibration + test at this load; "
          f"CPU time {cpu_step:.3f} s/step -> {projected_idle / 60:.1f} min on an idle core")
    print(f"inference: {infer_pattern * 1000:.1f} ms/image (baseline {infer_base * 1000:.2f} ms/image, "
          f"ratio {infer_pattern / infer_base:.0f}x); load average {out['load_average_1min']}")
    print(f"heatmap with a {args.bank_size}-row memory bank: " + ", ".join(
        f"{name} {v * 1000:.1f} ms/image ({v / heat['none']:.2f}x)" for name, v in heat.items() if ":" not in name and "+" not in name and name not in ("stats", "band"))
        + "  [none: prediction map; sum: prediction + bank term (k=3, magnetic tile); bank: bank term alone (k=3, bottle)]")
    if args.stats:
        print("with the appearance-statistics term: " + ", ".join(
            f"{name} {heat[name] * 1000:.1f} ms/image ({heat[name] / heat[name.split('+')[0]]:.3f}x of {name.split('+')[0]})"
            for name in heat if name.endswith("+stats")) + f"; the term alone {heat['stats'] * 1000:.2f} ms/image "
            f"({heat['stats'] / heat['none']:.3f}x the prediction map)")
        print(f"with the edge-band term: sum+stats+band {heat['sum+stats+band'] * 1000:.1f} ms/image "
              f"({heat['sum+stats+band'] / heat['sum+stats']:.3f}x of sum+stats); the term alone {heat['band'] * 1000:.2f} "
              f"ms/image ({heat['band'] / heat['none']:.3f}x the prediction map)")
        out["heatmap_ratio_band_vs_without"] = round(heat["sum+stats+band"] / heat["sum+stats"], 3)
        out["heatmap_ratio_stats_vs_without"] = {name: round(heat[name] / heat[name.split("+")[0]], 3)
                                                 for name in heat if name.endswith("+stats")}
    if size2:
        print(f"heatmap at {size2}² input vs {cfg.image_size}²: " + ", ".join(
            f"{name} {heat[f'{size2}:{name}'] * 1000:.1f} ms/image ({r:.2f}x)" for name, r in size_ratio.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
