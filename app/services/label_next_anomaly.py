""""Label next" where the routing runs no classifier on a folder's images but runs the anomaly model.

Why: a new line starts with no classes. Bottles routed to `anomaly-bottle` got "the model routing runs no classifier
on this folder's images, so there is no class to learn here", and `P` had no batch to walk. The anomaly model
is still retrained from the images reviewed normal (and the tile model from drawn regions), and its operating
point is set from reviewed scores around its threshold. The verdicts that help most are those the model is least
sure of: images it calls out of its domain, then images scored near the threshold (closeness
``1 / (1 + |ln(score / threshold)|)``, 1 at the threshold). They are spread over what the folder holds by the same
weighted k-center as the classifier's batches (``label_next.weighted_k_center``), with reviewed images as anchors,
so one cluster of near-threshold images does not fill the batch. The counter says how many more images reviewed
normal the next anomaly retraining needs (``retraining.MIN_GOOD_IMAGES``).

Plain data in and out; Qt-free. ``label_next_folder`` calls it on the GUI's helper thread.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.services.flags import is_out_of_domain
from app.services.label_next import Proposal, verdict_batch


@dataclass(frozen=True)
class AnomalyCandidate:
    """One image as the anomaly batch sees it (plain data)."""

    image_id: int
    reviewed: bool
    score: float | None = None       # the anomaly score that counts for it
    threshold: float | None = None   # the threshold that flags it (its folder's for that version, else the card's)
    in_domain: float | None = None   # the answer's in-domain score


def closeness(score: float | None, threshold: float | None) -> float:
    """1 at the threshold, falling with the distance in log-score (a score 2.7x above or below: 0.5); 0 without
    a score or a usable threshold."""
    if score is None or threshold is None or not threshold > 0 or not score > 0:
        return 0.0
    return 1.0 / (1.0 + abs(math.log(score / threshold)))


def _foreign(c: AnomalyCandidate) -> bool:
    return is_out_of_domain(c.in_domain)


def why(c: AnomalyCandidate) -> str:
    if _foreign(c):
        return f"out of the anomaly model's domain (in-domain score {c.in_domain:.2f})"
    if c.score is not None and c.threshold:
        return f"anomaly score {c.score:.3g} near its threshold {c.threshold:.3g}"
    return "no anomaly score yet (the anomaly model has not answered on it)"


def propose_anomaly(candidates: Sequence[AnomalyCandidate], embeddings: np.ndarray, size: int) -> Proposal:
    """The next ``size`` unreviewed images (``label_next.verdict_batch``): out of domain first, then by closeness
    to the threshold, spread over the folder from the reviewed images."""
    ordered = verdict_batch([c.reviewed for c in candidates], [_foreign(c) for c in candidates],
                            [closeness(c.score, c.threshold) for c in candidates], embeddings, size)
    return Proposal(tuple(candidates[i].image_id for i in ordered),
                    {candidates[i].image_id: why(candidates[i]) for i in ordered}, "anomaly")


def normal_needed(labels: Iterable[Any]) -> tuple[int, int]:
    """(images reviewed normal among the current ``labels``, how many more the next anomaly retraining needs)."""
    from database.states import AnomalyVerdict

    normal = sum(1 for label in labels if label.anomaly_verdict == AnomalyVerdict.NORMAL)
    return normal, normal_to_train(normal)


def normal_to_train(normal: int) -> int:
    """How many more normal images a folder needs for the retraining to train on ``MIN_GOOD_IMAGES``: its export keeps
    a fifth of them to test (``export.MVTEC_DEFAULT_HOLDOUT``), so 10 reviewed normal gave 8 to train, and the line read
    "ready" while the retraining refused (a session-47 audit)."""
    from app.services.export import MVTEC_DEFAULT_HOLDOUT
    from app.services.export_split import part_sizes
    from app.services.retraining import MIN_GOOD_IMAGES

    n = normal
    while part_sizes(n, MVTEC_DEFAULT_HOLDOUT)["train"] < MIN_GOOD_IMAGES:
        n += 1
    return n - normal


def regions_learnt(labels: Iterable[Any], versions: Sequence[Any]) -> tuple[int, int] | None:
    """(drawn anomalous regions the next retraining would learn from, the least it needs) where a version answering
    here learns from them (``refit_with_defects``: tile_defect; its retraining refused under "ready", a session-47
    audit), else None. The retraining keeps a fifth of each defect kind's regions to test (``defects_to_validation``)."""
    from app.services.export_formats import defect_type
    from app.services.export_split import part_sizes
    from app.services.json_files import JsonFileError, read_json_object
    from app.services.retrain_anomaly import MIN_DEFECT_REGIONS
    from app.services.retraining import HELD_OUT_SPLIT
    from database.states import AnomalyVerdict
    from inference import families

    def learns_regions(version: Any) -> bool:
        try:  # the version's own folder says its architecture; one not on this station: not known, not said
            config = read_json_object(Path(version.checkpoint_path) / "config.json")
        except JsonFileError:
            return False
        return config.get("model") in families.family("anomaly").refit_with_defects

    if not any(learns_regions(v) for v in versions):
        return None
    kinds: dict[str, int] = {}
    for label in labels:
        if label.anomaly_verdict == AnomalyVerdict.ANOMALOUS and label.anomaly_mask_png is not None:
            kind = defect_type(label.class_name)
            kinds[kind] = kinds.get(kind, 0) + 1
    return sum(part_sizes(n, HELD_OUT_SPLIT)["train"] for n in kinds.values()), MIN_DEFECT_REGIONS


def counter_text(normal: int, more: int, regions: tuple[int, int] | None = None) -> tuple[str, str]:
    """The line's short counter and its tooltip; ``regions``: ``regions_learnt``'s answer."""
    from app.services.retraining import MIN_GOOD_IMAGES

    short = (f"anomaly model: {more} more normal (G)" if more
             else f"anomaly model: ready ({normal} normal)")
    if regions is not None and regions[0] < regions[1]:
        short = (f"anomaly model: {more} more normal (G), " if more else "anomaly model: ") + \
            f"drawn regions (R) {regions[0]} of {regions[1]}"
    drawn = ("" if regions is None else
             f" This version also learns from the regions drawn on anomalous images (R): at least {regions[1]} to learn "
             f"from, after a fifth of each defect kind is kept to test it; {regions[0]} so far.")
    return short, (f"The anomaly model is retrained from the images reviewed normal (at least {MIN_GOOD_IMAGES} to "
                   f"train on, after a fifth is kept to test it); {normal} so far.{drawn} Verdicts near its threshold "
                   "also set the folder's operating point (Project ▸ Operating point…).")
