"""What the engine returns per image: frozen dataclasses holding numpy arrays (plain data).

These cross thread and process boundaries (worker -> database -> GUI), so they hold no tensors,
no model objects and no database rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

# What follows a family's name where ``InspectionEngine.predict_decoded`` says that family's model failed on an image it
# read ("anomaly model failed: …"): the file is fine (``app.services.review_types.prelabel_failure`` reads it so).
MODEL_FAILED = " model failed: "


@dataclass(frozen=True)
class ClassResult:
    """Softmax scores over the model's classes, the arg-max class and its score."""

    classes: tuple[str, ...]
    scores: np.ndarray  # (n_classes,) float32, sums to 1
    label: str
    confidence: float

    def score_dict(self) -> dict[str, float]:
        return {c: float(s) for c, s in zip(self.classes, self.scores)}


@dataclass(frozen=True)
class SegmentResult:
    """Small-target mask at the image's own resolution and its 8-connected target count."""

    mask: np.ndarray  # (h, w) bool, original image size
    target_count: int
    # How sure the model is of every blob it nearly called (segmenter_predict.frame_confidence); None: not known
    # (an answer stored before ADR 0071, or rebuilt from a stored count).
    confidence: float | None = None


@dataclass(frozen=True)
class AnomalyResult:
    """Per-pixel anomaly map (model resolution, float32) and the image-level score."""

    anomaly_map: np.ndarray  # (mh, mw) float32
    score: float
    threshold: float | None  # the model card's decision threshold, when it has one


@dataclass(frozen=True)
class ImageResult:
    """Everything predicted for one image, or why it could not be read (``error``)."""

    key: object  # the caller's handle for the image (a path, a database id, ...)
    path: str
    height: int = 0
    width: int = 0
    classifier: ClassResult | None = None
    segmenter: SegmentResult | None = None
    anomaly: AnomalyResult | None = None
    error: str | None = None
    # family -> in-domain score (inference.domain), for families whose model has domain statistics
    in_domain: Mapping[str, float] = field(default_factory=dict)
    # family -> why its model calls the image out of domain (inference.domain_notes), for those that do
    domain_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None
