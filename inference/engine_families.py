"""One adapter per model family between the engine and that family's own prediction helper.

Each family's helper (written beside its model) owns the model's preprocessing, so the engine
never duplicates resize/normalise rules; an adapter only says which channel mode and largest
side the engine's decoder should hand over, and converts the helper's output into the engine's
result dataclasses. ``difference`` measures how far two result lists disagree, for the
half-precision check.
"""
from __future__ import annotations

import importlib
import logging
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from . import families
from .checkpoints import CheckpointError, LoadedModel
from .domain import FEATURE_KINDS, DomainError, DomainStats, in_domain_score, load_domain
from .domain_notes import domain_notes
from .image_descriptor import DESCRIPTOR_VERSION, describe_images, symmetry_images
from .input_view import InputViewError, input_view
from .preprocess import anomaly_input
from .results import AnomalyResult, ClassResult, SegmentResult

log = logging.getLogger(__name__)


def _helper(module: str, loaded: LoadedModel):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise CheckpointError(f"{loaded.path}: this version has no prediction code for {loaded.family} models") from None
        raise


class FamilyModel:
    family = ""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.path = Path(loaded.path) if loaded.path else Path()
        self.mode = "rgb"
        self.max_side = 512
        self.domain: DomainStats | None = None  # what the model was trained on (inference.domain)
        self.domain_problem = ""  # why damaged statistics were set aside
        if loaded.path:
            try:
                self.domain = load_domain(loaded.path, DESCRIPTOR_VERSION)
            except DomainError as exc:  # the model still predicts; its images get no in-domain score
                self.domain_problem = str(exc)
                log.warning("%s: domain statistics not used: %s", loaded.path, exc)

    @property
    def device(self) -> torch.device:
        return next(self.loaded.model.parameters()).device

    def predict(self, images: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> list:
        raise NotImplementedError

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, d) pooled backbone embeddings of decoded images (the family helper's ``embed_images``)."""
        return embed_images(self.loaded, images)

    def domain_features(self, images: Sequence[np.ndarray], parts: Sequence[str] = FEATURE_KINDS,
                        sources: Sequence[tuple[int, int, int]] | None = None) -> dict[str, np.ndarray]:
        """What domain statistics describe, per kind of feature: the backbone's embedding (a
        forward pass), the image descriptor and the frame's symmetry (``inference.image_descriptor``,
        a few milliseconds; ``sources`` are the files' (height, width, channels) as stored)."""
        out = {}
        if "embedding" in parts:
            out["embedding"] = self.embed(images)
        if "descriptor" in parts:
            out["descriptor"] = describe_images(images, sources)
        if "symmetry" in parts:
            out["symmetry"] = symmetry_images(images)
        return out

    def in_domain(self, images: Sequence[np.ndarray],
                  sources: Sequence[tuple[int, int, int]] | None = None) -> list[float] | None:
        """Each image's in-domain score, None when the model carries no domain statistics
        (``sources``: the files' (height, width, channels), see ``domain_features``)."""
        assessed = self.domain_assessment(images, sources)
        return None if assessed is None else assessed[0]

    def domain_assessment(self, images: Sequence[np.ndarray], sources: Sequence[tuple[int, int, int]] | None = None
                          ) -> tuple[list[float], list[str]] | None:
        """Each image's in-domain score and, where it is out of domain, why (``inference.domain_notes``; "" inside),
        from one computation of the features; None when the model carries no domain statistics."""
        if self.domain is None or not images:
            return None
        feats = self.domain_features(images, self.domain.features, sources)
        parts = self.domain.part_distances(feats)   # once: the scores and the notes read the same distances
        distance = np.max(np.stack(list(parts.values())), axis=0)
        scores = in_domain_score(distance, self.domain.threshold)
        return [float(s) for s in scores], domain_notes(self.domain, feats, parts)

    def difference(self, a: list, b: list) -> float:
        raise NotImplementedError


class ClassifierModel(FamilyModel):
    family = "classifier"

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self._mod = _helper(families.family(self.family).predict_module, loaded)
        self.mode, self.max_side = input_view(self.family, loaded.config)

    def predict(self, images, sizes) -> list[ClassResult]:
        return [ClassResult(tuple(p.classes), np.asarray(p.scores, np.float32), p.label, float(p.confidence))
                for p in self._mod.predict_images(self.loaded, list(images))]

    def difference(self, a, b) -> float:
        return max(float(np.abs(x.scores - y.scores).max()) for x, y in zip(a, b))


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == size:
        return mask
    return cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


class SegmenterModel(FamilyModel):
    family = "segmenter"

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self._mod = _helper(families.family(self.family).predict_module, loaded)
        # A card naming members or a verifier it does not carry, or flip views that do not exist, fails
        # here, at load, with CheckpointError.
        self._mod.model_members(loaded)
        self._mod.model_post_process(loaded)
        self._mod.model_flips(loaded)
        self.mode, self.max_side = input_view(self.family, loaded.config)

    def predict(self, images, sizes) -> list[SegmentResult]:
        out = self._mod.predict_masks(self.loaded, list(images))
        # Targets are counted at the resolution the model saw; the mask is scaled to the file's.
        return [SegmentResult(_resize_mask(r.mask, size), int(r.count), float(r.confidence))
                for r, size in zip(out, sizes)]

    def difference(self, a, b) -> float:
        return max(float(np.mean(x.mask != y.mask)) for x, y in zip(a, b))


class AnomalyModel(FamilyModel):
    """Maps are kept at the model's resolution (small to store; the viewer scales them)."""

    family = "anomaly"

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self._mod = _helper(families.family(self.family).predict_module, loaded)
        self.mode, self.max_side = input_view(self.family, loaded.config)
        thr = self._mod.image_threshold(loaded.card)
        self.threshold = None if math.isnan(thr) else float(thr)

    def predict(self, images, sizes) -> list[AnomalyResult]:
        cfg = self.loaded.config
        batch = np.stack([anomaly_input(img, cfg.image_size, cfg.in_channels) for img in images])
        maps, scores = self._mod.model_maps(self.loaded.model, batch, self.device)
        return [AnomalyResult(np.asarray(m, np.float32), float(s), self.threshold) for m, s in zip(maps, scores)]

    def difference(self, a, b) -> float:
        worst = 0.0
        for x, y in zip(a, b):
            span = float(x.anomaly_map.max() - x.anomaly_map.min()) or 1.0
            worst = max(worst, float(np.abs(x.anomaly_map - y.anomaly_map).max()) / span)
        return worst


def adapter_class(family: str) -> type[FamilyModel]:
    """The catalogue's adapter for ``family`` (imported lazily from its "module:Class" path)."""
    cls: type[FamilyModel] = families.load_entry(families.family(family).adapter)
    return cls


def embed_images(loaded: LoadedModel, images: Sequence[np.ndarray]) -> np.ndarray:
    """Float images (as the engine decodes them) -> (n, d) float32 embeddings of ``loaded``'s
    backbone, by its family's helper: plain numpy in and out, for domain statistics and for
    anyone who wants to compare images as the model sees them."""
    helper = _helper(families.family(loaded.family).predict_module, loaded)
    return np.asarray(helper.embed_images(loaded, list(images)), np.float32)


def family_model(loaded: LoadedModel) -> FamilyModel:
    try:
        return adapter_class(loaded.family)(loaded)
    except (AttributeError, TypeError, InputViewError) as exc:  # a config without the fields this adapter reads
        raise CheckpointError(f"{loaded.path}: unsupported {loaded.family} model {loaded.name!r} ({exc})") from None

