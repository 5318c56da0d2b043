"""InspectionEngine: run the active model of each family over batches of images.

Why it is shaped this way:
- models are loaded once per engine (a worker keeps one engine for its whole life);
- decoding is the slow part on a CPU for large images, so a small thread pool decodes (and
  shrinks) the next batch while the models run on the current one (OpenCV releases the GIL);
- one unreadable file never aborts a batch: it becomes an ``ImageResult`` with ``error`` set
  to ``ImageReadError.reason``;
- on a GPU, half precision (autocast) is used for a family only if a probe batch shows its
  results within ``HALF_TOLERANCE`` of full precision; otherwise that family stays in float32.
- on a CPU with more than one core to spare, a batch's images are split into lanes that run side
  by side on threads of their own, each on one intra-op thread (ADR 0041): one network pass is
  about a thousand small operations, each ending in a barrier of the intra-op pool, so two lanes
  of one thread beat one lane of two (models at 256²: 1.78x against 1.24x, speed-6.md).

No Qt, no database: the caller maps its own keys (paths, database ids) to results.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from . import families
from .checkpoints import CheckpointError, load_model
from .device import AUTO_MAX_THREADS, pick_device, set_threads
from .domain_notes import notes_by_family
from .engine_families import FamilyModel, family_model
from .families import NAMES as FAMILIES
from .imageio import DecodedImage, ImageReadError, decode
from .profiles import ProfileError, apply_profile, resolve_profile
from .results import MODEL_FAILED, ImageResult

log = logging.getLogger(__name__)

# A batch's in-domain scores and out-of-domain notes (``FamilyModel.domain_assessment``), image by image.
Assessed = tuple[list[float], list[str]]

# Largest difference half precision may make before a family falls back to float32 (per family,
# from the catalogue: class probabilities absolute, mask pixels that flip, anomaly map fraction of range).
HALF_TOLERANCE = families.table("half_tolerance")


@dataclass(frozen=True)
class LoadedFamily:
    family: str
    name: str
    path: str
    half: bool
    profile: str | None = None  # the card's speed profile it runs (None: the card names none)


class InspectionEngine:
    """Loads one model directory per family and predicts batches of image files."""

    def __init__(self, model_dirs: Mapping[str, str | os.PathLike], device: str = "auto",
                 half: bool | None = None, decode_threads: int = 2,
                 max_side: Mapping[str, int] | None = None, profile: str | None = None) -> None:
        """``max_side`` caps, per family, the side of the image handed to its model (larger images
        are shrunk while decoding; results still come back at the file's size). ``profile``: the
        speed profile to run where a model's card names it, else the card's default
        (``inference.profiles``)."""
        unknown = set(model_dirs) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown families: {', '.join(sorted(unknown))}")
        if not model_dirs:
            raise ValueError("no model directory given")
        self.device = pick_device(device)
        self._models: dict[str, FamilyModel] = {}
        self._half: dict[str, bool] = {}
        self._profile: dict[str, str | None] = {}
        for family in (f for f in FAMILIES if f in model_dirs):
            loaded = load_model(model_dirs[family], map_location=self.device, family=family)
            try:
                self._profile[family] = resolve_profile(loaded.card, profile)
                loaded = apply_profile(loaded, profile)
            except ProfileError as exc:
                raise CheckpointError(f"{model_dirs[family]}: {exc}") from None
            self._models[family] = family_model(loaded)
            if max_side and family in max_side:
                self._models[family].max_side = int(max_side[family])
            want_half = self.device.type == "cuda" if half is None else half
            self._half[family] = bool(want_half and self.device.type == "cuda" and self._half_is_safe(family))
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_threads), thread_name_prefix="decode")
        self._lanes: ThreadPoolExecutor | None = None  # started on the first batch run in lanes

    # -- information -------------------------------------------------------------------------
    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self._models)

    def loaded(self) -> dict[str, LoadedFamily]:
        return {f: LoadedFamily(f, m.name, str(m.path), self._half[f], self._profile[f])
                for f, m in self._models.items()}

    def model(self, family: str) -> FamilyModel:
        return self._models[family]

    def _modes(self, families: Sequence[str]) -> dict[str, int]:
        modes: dict[str, int] = {}
        for f in families:
            m = self._models[f]
            modes[m.mode] = max(modes.get(m.mode, 0), m.max_side)
        return modes

    # -- precision ---------------------------------------------------------------------------
    def _autocast(self, family: str):
        if self._half.get(family):
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _half_is_safe(self, family: str) -> bool:
        """Compare float32 and autocast results on a fixed probe batch (smooth patterns + noise)."""
        model = self._models[family]
        rng = np.random.default_rng(0)
        side = min(model.max_side, 256)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
        probes = []
        for k in range(2):
            base = 0.5 + 0.3 * np.sin(6.28 * (xx * (k + 1) + yy)) + 0.05 * rng.standard_normal((side, side))
            img = np.clip(base, 0, 1).astype(np.float32)
            probes.append(img if model.mode == "gray" else np.repeat(img[:, :, None], 3, axis=2))
        sizes = [(side, side)] * len(probes)
        with torch.inference_mode():
            full = model.predict(probes, sizes)
            try:
                # Overflow under float16 shows as inf/NaN in the half answer (a classifier's logits did, on an
                # H200): the comparison below refuses it, so numpy's warnings about it say nothing more.
                with torch.autocast(device_type="cuda", dtype=torch.float16), np.errstate(all="ignore"):
                    half = model.predict(probes, sizes)
            except (ValueError, RuntimeError) as exc:
                # Seen on an H200: the segmenter's scan state overflows float16 and the scan refuses the
                # non-finite result. That is the probe's answer (half is unsafe), not a failed engine.
                log.info("%s: half precision off (the probe failed under float16: %s)", family, exc)
                return False
        diff = model.difference(full, half)
        ok = bool(np.isfinite(diff) and diff <= HALF_TOLERANCE[family])
        log.info("%s: half precision %s (difference %.4g, tolerance %.4g)", family,
                 "on" if ok else "off", diff, HALF_TOLERANCE[family])
        return ok

    # -- prediction --------------------------------------------------------------------------
    def predict_decoded(self, items: Sequence[tuple[object, str, DecodedImage | str]],
                        families: Sequence[str] | None = None, lanes: int = 1) -> list[ImageResult]:
        """Run the models on already decoded images; a ``str`` in place of an image is its read error.

        ``lanes`` > 1 (CPU only): split the images into up to that many lanes run side by side, each
        on one intra-op thread; the thread count set before is restored afterwards. Each image's
        results are the same as in one lane (every family predicts each image on its own)."""
        families = self._check(families)
        good = [(i, d) for i, (_, _, d) in enumerate(items) if isinstance(d, DecodedImage)]
        parts = _lane_parts(good, lanes if self.device.type == "cpu" else 1)
        if len(parts) > 1:
            per_family, domain = self._run_lanes(parts, families)
        else:
            per_family, domain = self._run_models(good, families)
        out: list[ImageResult] = []
        index = {i: j for j, (i, _) in enumerate(good)}
        for i, (key, path, d) in enumerate(items):
            if not isinstance(d, DecodedImage):
                out.append(ImageResult(key=key, path=path, error=d))
                continue
            j = index[i]
            broken = [f"{f}{MODEL_FAILED}{r[j]}" for f, r in per_family.items() if isinstance(r[j], Exception)]
            if broken:
                out.append(ImageResult(key=key, path=path, height=d.height, width=d.width, error="; ".join(broken)))
                continue
            out.append(ImageResult(
                key=key, path=path, height=d.height, width=d.width,
                classifier=per_family["classifier"][j] if "classifier" in per_family else None,
                segmenter=per_family["segmenter"][j] if "segmenter" in per_family else None,
                anomaly=per_family["anomaly"][j] if "anomaly" in per_family else None,
                in_domain={f: s[0][j] for f, s in domain.items() if s is not None},
                domain_notes=notes_by_family({f: s[1] if s is not None else None for f, s in domain.items()}, j),
            ))
        return out

    def _run_models(self, good: Sequence[tuple[int, DecodedImage]], families: Sequence[str]
                    ) -> tuple[dict[str, list], dict[str, Assessed | None]]:
        """Each family's results and (in-domain scores, out-of-domain notes) for the decoded images ``good``, in order."""
        per_family: dict[str, list] = {}
        domain: dict[str, Assessed | None] = {}
        with torch.inference_mode():  # thread-local: entered on the thread that runs the models
            for f in families:
                model = self._models[f]
                if not good:
                    per_family[f] = []
                    continue
                images = [d.views[model.mode] for _, d in good]
                sizes = [(d.height, d.width) for _, d in good]
                per_family[f] = self._predict_family(f, images, sizes)
                domain[f] = self._in_domain(f, images, [d.source for _, d in good])
        return per_family, domain

    def _run_lanes(self, parts: Sequence[Sequence[tuple[int, DecodedImage]]], families: Sequence[str]
                   ) -> tuple[dict[str, list], dict[str, Assessed | None]]:
        """``_run_models`` on each part at once, one thread per part, then joined in order."""
        if self._lanes is None:
            self._lanes = ThreadPoolExecutor(max_workers=AUTO_MAX_THREADS, thread_name_prefix="lane")
        before = torch.get_num_threads()
        if before != 1:
            set_threads(1)
        try:
            runs = list(self._lanes.map(lambda part: self._run_models(part, families), parts))
        finally:
            if before != 1:
                set_threads(before)
        per_family = {f: [r for run, _ in runs for r in run[f]] for f in families}
        domain: dict[str, Assessed | None] = {}
        for f in families:  # a lane whose in-domain scores failed costs the batch its scores, as in one lane
            lists = [d.get(f) for _, d in runs]
            known = [x for x in lists if x is not None]
            domain[f] = None if len(known) < len(lists) else (
                [v for x in known for v in x[0]], [n for x in known for n in x[1]])
        return per_family, domain

    def _in_domain(self, family: str, images: list[np.ndarray], sources: list[tuple[int, int, int]]) -> Assessed | None:
        """In-domain scores of a batch and why each image out of domain is (None: no statistics, or the embedding
        failed, which costs the score only: the prediction itself stands)."""
        try:
            with self._autocast(family):
                return self._models[family].domain_assessment(images, sources)
        except (RuntimeError, ValueError) as exc:
            log.warning("%s: in-domain scores of a batch of %d failed (%s)", family, len(images), exc)
            return None

    def embed_files(self, paths: Sequence[str | os.PathLike], family: str,
                    batch_size: int = 16) -> tuple[np.ndarray, list[str]]:
        """(n, d) embeddings of the readable ``paths`` by ``family``'s model, decoded as for
        prediction, and the paths that could not be read."""
        feats, unreadable = self.domain_features_files(paths, family, ("embedding",), batch_size)
        return feats["embedding"], unreadable

    def domain_features_files(self, paths: Sequence[str | os.PathLike], family: str,
                              parts: Sequence[str] = ("embedding", "descriptor"), batch_size: int = 16,
                              transform: Callable[[np.ndarray], np.ndarray] | None = None,
                              ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Per part, (n, d) features of the readable ``paths`` as ``family``'s model sees them
        (decoded as for prediction; ``transform`` applied to each decoded image first), and the
        paths that could not be read (domain statistics are fitted on these)."""
        model = self._models[family]
        modes = {model.mode: model.max_side}
        rows: dict[str, list[np.ndarray]] = {p: [] for p in parts}
        unreadable: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                batch = [str(p) for p in paths[start:start + batch_size]]
                decoded = list(self._pool.map(lambda p: self._decode_one(p, modes), batch))
                good = [d for d in decoded if isinstance(d, DecodedImage)]
                images = [d.views[model.mode] for d in good]
                sources = [d.source for d in good]
                if transform is not None:  # a camera change: the file's size changes as the image does
                    changed = [transform(im) for im in images]
                    sources = [(round(h * c.shape[0] / im.shape[0]), round(w * c.shape[1] / im.shape[1]), ch)
                               for (h, w, ch), im, c in zip(sources, images, changed)]
                    images = changed
                unreadable += [p for p, d in zip(batch, decoded) if not isinstance(d, DecodedImage)]
                if images:
                    with self._autocast(family):
                        for p, v in model.domain_features(images, parts, sources).items():
                            rows[p].append(np.asarray(v, np.float32))
        return ({p: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for p, v in rows.items()}, unreadable)

    def _predict_family(self, family: str, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list:
        """The family's results; if the batch fails (e.g. out of GPU memory), each image alone,
        so one image the model cannot take costs that image only (its entry is the exception)."""
        model = self._models[family]
        try:
            with self._autocast(family):
                return model.predict(images, sizes)
        except (RuntimeError, ValueError) as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(images) == 1:
                return [exc]
            log.warning("%s batch of %d failed (%s); retrying image by image", family, len(images), exc)
        out: list = []
        for image, size in zip(images, sizes):
            try:
                with self._autocast(family):
                    out.extend(model.predict([image], [size]))
            except (RuntimeError, ValueError) as exc:
                out.append(exc)
        return out

    def _check(self, families: Sequence[str] | None) -> list[str]:
        if families is None:
            return list(self._models)
        missing = [f for f in families if f not in self._models]
        if missing:
            raise ValueError(f"no model loaded for: {', '.join(missing)}")
        return [f for f in FAMILIES if f in families]

    def _decode_one(self, path: str, modes: Mapping[str, int]) -> DecodedImage | str:
        try:
            return decode(path, modes)
        except ImageReadError as exc:
            return exc.reason
        except MemoryError:
            return "not enough memory to decode this image"

    def submit_decode(self, batch: Sequence[tuple[object, str]], families: Sequence[str] | None = None
                      ) -> list[tuple[object, str, Future]]:
        """Start decoding a batch on the pool; pass the result to ``collect`` later."""
        modes = self._modes(self._check(families))
        return [(key, path, self._pool.submit(self._decode_one, path, modes)) for key, path in batch]

    @staticmethod
    def collect(pending: Sequence[tuple[object, str, Future]]) -> list[tuple[object, str, DecodedImage | str]]:
        return [(key, path, fut.result()) for key, path, fut in pending]

    def predict_files(self, items: Iterable[tuple[object, str | os.PathLike]], batch_size: int = 8,
                      families: Sequence[str] | None = None, prefetch: int = 1, lanes: int = 1
                      ) -> Iterator[list[ImageResult]]:
        """Yield one list of results per batch, decoding up to ``prefetch`` batches ahead
        (``prefetch=0``: decode a batch only after the previous one ran, the serial baseline);
        ``lanes`` as in ``predict_decoded``."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        it = iter(items)
        queue: deque[list[tuple[object, str, Future]]] = deque()

        def fill() -> None:
            while len(queue) < prefetch + 1:
                batch = []
                for key, path in it:
                    batch.append((key, str(path)))
                    if len(batch) == batch_size:
                        break
                if not batch:
                    return
                queue.append(self.submit_decode(batch, families))

        fill()
        while queue:
            pending = queue.popleft()
            if prefetch:
                fill()  # the next batches decode while this one runs on the models
            results = self.predict_decoded(self.collect(pending), families, lanes)
            if not prefetch:
                fill()
            yield results

    def predict_paths(self, paths: Sequence[str | os.PathLike], batch_size: int = 8,
                      families: Sequence[str] | None = None, lanes: int = 1) -> list[ImageResult]:
        results: list[ImageResult] = []
        for batch in self.predict_files(((str(p), p) for p in paths), batch_size, families, lanes=lanes):
            results.extend(batch)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._lanes is not None:
            self._lanes.shutdown(wait=True)

    def __enter__(self) -> "InspectionEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lane_parts(good: Sequence[tuple[int, DecodedImage]], lanes: int) -> list[Sequence[tuple[int, DecodedImage]]]:
    """``good`` in at most ``lanes`` consecutive parts of near-equal size, none empty."""
    n = min(max(1, lanes), len(good))
    if n <= 1:
        return [good]
    return [good[k * len(good) // n:(k + 1) * len(good) // n] for k in range(n)]


def model_dirs_from(paths: Mapping[str, str | os.PathLike | None]) -> dict[str, Path]:
    """Drop families without a directory (``None``), keeping the rest as ``Path``."""
    return {f: Path(p) for f, p in paths.items() if p is not None}
