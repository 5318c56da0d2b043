"""Fuzz model folders: damaged configs, headers, weights and cards through add, load and predict.

    PYTHONPATH=. python benchmarks/fuzz_model_folders.py --cases 1000 --seed 0 [--minutes 5] [--mem-gib 3]

Each case copies one tiny model folder (classifier, segmenter or anomaly) and damages it one to
three ways: a config field set to a huge, negative, non-finite, wrong-typed or nested value; the
format, model or family entry changed; config.json damaged or replaced; a tensor's shape, dtype
or byte range rewritten in the safetensors header; the weights' bytes damaged or truncated; the
card's ``parts`` pointed elsewhere. The folder then goes through the model catalog's check (what
Add… and Make active run) and the loader; a folder the loader takes predicts one image.

Findings: any exception other than the catalog's or the loader's own refusal, an unclear
message, a case slower than --slow-s seconds, or an allocation beyond --mem-gib GiB (the
process's address space is capped, so an unbounded allocation fails at once as MemoryError
instead of exhausting the shared machine).
"""
from __future__ import annotations

import json
import random
import resource
import shutil
import struct
import tempfile
import time
from pathlib import Path

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from fuzz_common import Tally, mutate, parser, run_cases, unclear

from app.services.model_catalog import ModelCatalogError, check_model_dir  # noqa: E402
from inference.checkpoints import CheckpointError, load_model  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402

FAMILIES = ("classifier", "segmenter", "anomaly")


def vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def hostile_value(rng: random.Random):
    return rng.choice((
        10 ** rng.randint(3, 12), -(10 ** rng.randint(0, 9)), 0, 1, rng.randint(2, 5000),
        float("inf"), float("nan"), 1e300, -0.5, "x" * rng.randint(0, 400), None, True,
        [10 ** rng.randint(1, 8)] * rng.randint(1, 40), [[1, 2], [3]], {"a": 1}, [],
    ))


def damage_config(d: Path, rng: random.Random) -> str:
    meta = json.loads((d / "config.json").read_text())
    kind = rng.choice(("field", "field", "field", "top", "bytes", "replace"))
    if kind == "field":
        key = rng.choice(sorted(meta["config"]) or ["x"])
        meta["config"][key] = hostile_value(rng)
    elif kind == "top":
        key = rng.choice(("format", "model", "family", "config"))
        meta[key] = rng.choice((2, "x", -1, None, "memory_mamba", "target_verifier", "pixel_gaussian", [], {}))
    if kind == "bytes":
        (d / "config.json").write_bytes(mutate((d / "config.json").read_bytes(), rng))
    elif kind == "replace":
        (d / "config.json").write_text(rng.choice(("[]", "null", "", "{", " " * (2 << 20) + "{}")))
    else:
        (d / "config.json").write_text(json.dumps(meta))
    return f"config:{kind}"


def damage_header(d: Path, rng: random.Random) -> str:
    raw = (d / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    t = header[rng.choice(names)]
    kind = rng.choice(("shape", "shape", "offsets", "dtype", "length"))
    if kind == "shape":
        t["shape"] = rng.choice(([100000, 100000], [rng.randint(0, 9)] * rng.randint(0, 4), [-1], ["a"], 5))
    elif kind == "offsets":
        t["data_offsets"] = rng.choice(([0, 10 ** 12], [5, 2], [0], None, [0, t["data_offsets"][1] + 4]))
    elif kind == "dtype":
        t["dtype"] = rng.choice(("F33", "", None, "BF16", "I8"))
    body = json.dumps(header).encode()
    length = len(body) if kind != "length" else rng.choice((0, 2 ** 63, len(body) + 10 ** 6, len(body) - 3))
    (d / "model.safetensors").write_bytes(struct.pack("<Q", length) + body + raw[8 + n:])
    return f"header:{kind}"


def damage_weights(d: Path, rng: random.Random) -> str:
    path = d / "model.safetensors"
    path.write_bytes(mutate(path.read_bytes(), rng))
    return "weights:bytes"


def damage_card(d: Path, rng: random.Random) -> str:
    card = json.loads((d / "card.json").read_text()) if (d / "card.json").exists() else {}
    card["parts"] = rng.choice(({"v": "../"}, {"v": "/etc"}, {"v": "."}, {"v": 5}, ["x"], {"v": "missing"}))
    (d / "card.json").write_text(json.dumps(card))
    return "card:parts"


DAMAGES = (damage_config, damage_config, damage_header, damage_weights, damage_card)


class ModelFolderFuzzer:
    def __init__(self, slow_s: float) -> None:
        from tests.tiny_models import save_tiny_models

        self.tmp = Path(tempfile.mkdtemp(prefix="fuzz_models."))
        self.models = save_tiny_models(self.tmp / "tiny")
        self.image = self.tmp / "part.png"
        cv2.imwrite(str(self.image), np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
        self.slow_s = slow_s
        self.tally = Tally("fuzz_model_folders")

    def case(self, seed: int, rng: random.Random) -> str:
        family = rng.choice(FAMILIES)
        d = self.tmp / f"case_{seed}"
        shutil.copytree(self.models[family], d)
        try:
            damages = []
            for _ in range(rng.randint(1, 3)):
                try:
                    damages.append(rng.choice(DAMAGES)(d, rng))
                except (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error):
                    damages.append("(skipped: an earlier damage left nothing to parse)")
            start = time.monotonic()
            outcome = self.check(seed, family, d, damages)
            took = time.monotonic() - start
            if took > self.slow_s:
                self.tally.finding(seed, f"slow case ({took:.1f} s)", " ".join(damages))
            return outcome
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def check(self, seed: int, family: str, d: Path, damages: list[str]) -> str:
        what = " ".join(damages)
        try:
            check_model_dir(family, d)
            catalog = "accepted"
        except ModelCatalogError as exc:
            catalog = "refused"
            self.clear(seed, "catalog", str(exc), what)
        try:
            load_model(d, family=family)
            loader = "loaded"
        except CheckpointError as exc:
            loader = "refused"
            self.clear(seed, "loader", str(exc), what)
        except MemoryError:
            self.tally.finding(seed, "loader tried an allocation over the memory cap", what)
            loader = "memory"
        if loader == "loaded":
            with InspectionEngine({family: d}, device="cpu") as engine:
                [result] = engine.predict_paths([self.image])
            self.tally.count(f"damaged by {damages[0].split(':')[0]}, still loads")
            if not result.ok:
                self.clear(seed, "prediction", result.error or "", what)
                loader = "loaded, prediction refused"
        return f"catalog {catalog}, loader {loader}"

    def clear(self, seed: int, where: str, message: str, what: str) -> None:
        why = unclear(message)
        if why:
            self.tally.finding(seed, f"unclear {where} message ({why})", f"{what}: {message}")


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--mem-gib", type=float, default=3.0, help="address space allowed on top of start-up")
    p.add_argument("--slow-s", type=float, default=20.0, help="a case slower than this is a finding")
    args = p.parse_args()
    fuzzer = ModelFolderFuzzer(args.slow_s)
    cap = vm_size() + int(args.mem_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return run_cases(fuzzer.tally, args, fuzzer.case, fuzzer.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
