"""``keep_freed_memory`` (ADR 0031): the C allocator keeps freed activation buffers, and the
segmenter's maps and masks stay those of a process that does not.

Kept buffers are reused, so code that read memory it never wrote (a ``torch.empty`` the scan
kernel did not fill, say) would give different numbers in the second prediction of a process;
the check therefore predicts twice in each process. Each configuration runs in a fresh process:
the allocator setting is process-wide and cannot be undone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.bundled import bundled_model_dir

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import numpy as np
from inference.device import keep_freed_memory, set_threads
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
set_threads(1)
from inference.checkpoints import load_model
from inference.profiles import apply_profile
from inference.segmenter_predict import predict_masks
loaded = apply_profile(load_model(sys.argv[2], family="segmenter"), "accurate")
rng = np.random.default_rng(0)
frames = []
for h, w in ((96, 128), (130, 150)):
    img = 0.4 + 0.05 * rng.standard_normal((h, w))
    img[h // 3, w // 2] = img[2 * h // 3, w // 4] = 1.0
    frames.append(np.clip(img, 0, 1).astype(np.float32))
runs = [predict_masks(loaded, frames) for _ in range(2)]
print(json.dumps({"kept": kept, "runs": [[{"p": r.probability.tolist(), "mask": r.mask.tolist(), "count": r.count}
                                           for r in run] for run in runs]}))
"""


def _run(mode: str, model: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(model)], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_keep_freed_memory_takes_effect_once():
    code = "from inference.device import keep_freed_memory as k; print(k(), k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_segmenter_results_unchanged_with_kept_memory():
    model = bundled_model_dir("segmenter")
    if not (model / "config.json").is_file():
        pytest.skip("no bundled segmenter model in this checkout")
    plain, kept = _run("plain", model), _run("kept", model)
    assert kept["kept"] and not plain["kept"]
    reference = plain["runs"][0]
    for run in plain["runs"][1:] + kept["runs"]:
        for got, want in zip(run, reference):
            assert np.abs(np.array(got["p"]) - np.array(want["p"])).max() < 1e-5
            assert got["mask"] == want["mask"] and got["count"] == want["count"]
