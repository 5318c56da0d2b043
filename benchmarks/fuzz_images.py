"""Fuzz the image path: generated, then damaged image files through the reader and the real worker.

    PYTHONPATH=. python benchmarks/fuzz_images.py --cases 2000 --seed 0 [--minutes 5] [--out F.json]

Each case encodes a random image (PNG, JPEG, BMP or TIFF; 8 or 16 bit; gray, colour or alpha; 1
to 300 pixels a side), damages its bytes (flips, truncation, inserted or deleted runs, sometimes
keeping the signature so the damage reaches the decoder), or swaps in a text file, an empty file
or another format's bytes, and reads it as every model does (``inference.imageio.decode``, which the engine uses). It
must decode or be refused with a clear reason, with nothing printed on stderr by libpng/OpenCV.
Every --worker-every cases, the files so far go through a real pre-label job (tiny models) in a
station with two human-labelled images: the job must finish, every failed image must carry a
clear reason, and the human labels must be unchanged.
"""
from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import inference  # noqa: E402,F401 - first: it sets OpenCV's pixel limit, which cv2 reads at its import

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from fuzz_common import Tally, captured_stderr, label_fingerprint, mutate, parser, run_cases, unclear

from inference.engine import decode  # noqa: E402
from inference.imageio import ImageReadError  # noqa: E402

FORMATS = (".png", ".jpg", ".bmp", ".tif")


def generated(rng: random.Random) -> tuple[bytes, str]:
    suffix = rng.choice(FORMATS)
    h, w = rng.randint(1, 300), rng.randint(1, 300)
    channels = rng.choice((1, 3, 4)) if suffix != ".jpg" else rng.choice((1, 3))
    dtype = np.uint16 if suffix in (".png", ".tif") and rng.random() < 0.3 else np.uint8
    shape = (h, w) if channels == 1 else (h, w, channels)
    img = np.random.default_rng(rng.getrandbits(32)).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    ok, buf = cv2.imencode(suffix, img)
    assert ok
    return buf.tobytes(), suffix


def hostile_bytes(rng: random.Random) -> tuple[bytes, str]:
    data, suffix = generated(rng)
    roll = rng.random()
    if roll < 0.05:
        return b"", suffix
    if roll < 0.1:
        return b"hello, I am not a picture\n" * rng.randint(1, 50), suffix
    if roll < 0.15:
        return data, rng.choice([s for s in FORMATS if s != suffix])  # right bytes, wrong name
    return mutate(data, rng, protect=8 if rng.random() < 0.6 else 0), suffix


class ImageFuzzer:
    def __init__(self, worker_every: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="fuzz_images."))
        self.batch = self.tmp / "batch"
        self.batch.mkdir()
        self.worker_every = worker_every
        self.pending = 0
        self.tally = Tally("fuzz_images")
        self.models = None

    def case(self, seed: int, rng: random.Random) -> str:
        data, suffix = hostile_bytes(rng)
        path = self.batch / f"case_{seed}{suffix}"
        path.write_bytes(data)
        with captured_stderr() as printed:
            try:
                decoded = decode(path, {"rgb": 256, "gray": 256})
                outcome = "decoded"
            except ImageReadError as exc:
                decoded, outcome = None, "refused"
                why = unclear(exc.reason)
                if why:
                    self.tally.finding(seed, f"unclear reason ({why})", exc.reason)
        if printed:
            self.tally.finding(seed, "printed on stderr", "\n".join(printed[:5]))
        if decoded is not None and not all(np.isfinite(v).all() for v in decoded.views.values()):
            self.tally.finding(seed, "non-finite pixels", str(path))
        self.pending += 1
        if self.worker_every and self.pending >= self.worker_every:
            self.through_worker(seed)
        return outcome

    def through_worker(self, seed: int) -> None:
        """The files so far as a folder of a station with human labels, pre-labelled by the real worker."""
        from app.services.artifacts import ArtifactStore
        from app.services.indexing import index_folder
        from app.services.prelabel import failed_images, job_status, submit_prelabel
        from app.worker import Worker, WorkerOptions
        from database import LabelChange, ReviewState
        from tests.worker.helpers import good_images, make_db

        if self.models is None:
            from tests.tiny_models import save_tiny_models
            self.models = save_tiny_models(self.tmp / "models")
        good_images(self.batch / "labelled", 2, seed=seed)
        station = self.tmp / f"station_{seed}"
        db = make_db(f"sqlite:///{station.with_suffix('.sqlite')}", self.models)
        try:
            folder = index_folder(db, self.batch).folder_id
            for image in db.images.query():
                if image.rel_path.startswith("labelled/"):
                    db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
            before = label_fingerprint(db)
            job = submit_prelabel(db, folder_id=folder)
            with captured_stderr() as printed:
                Worker(db, WorkerOptions(device="cpu", batch_size=8, poll_s=0.01),
                       artifacts=ArtifactStore(self.tmp / "artifacts")).run(once=True)
            status = job_status(db, job)
            if not status.finished:
                self.tally.finding(seed, "pre-label job did not finish", repr(status))
            for path, reason in failed_images(db, job):
                why = unclear(reason)
                if why:
                    self.tally.finding(seed, f"unclear failure reason ({why})", f"{path}: {reason}")
            noisy = [ln for ln in printed if "libpng" in ln or "[ WARN" in ln or "Traceback" in ln]
            if noisy:
                self.tally.finding(seed, "worker printed library noise", "\n".join(noisy[:5]))
            if label_fingerprint(db) != before:
                self.tally.finding(seed, "human labels changed by pre-labelling", str(station))
            self.tally.count("worker_runs")
            self.tally.outcomes["worker_failed_images"] = (self.tally.outcomes.get("worker_failed_images", 0)
                                                           + status.failed)
        finally:
            db.close()
        shutil.rmtree(self.batch)
        self.batch.mkdir()
        self.pending = 0


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--worker-every", type=int, default=100, help="cases between real pre-label runs (0: never)")
    args = p.parse_args()
    fuzzer = ImageFuzzer(args.worker_every)
    return run_cases(fuzzer.tally, args, fuzzer.case, fuzzer.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
