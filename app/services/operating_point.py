"""The operating point: the anomaly threshold a folder (product) should use, chosen from costs.

Why from costs and reviewed images: the anomaly model's own threshold comes from its training
data, but what a threshold is worth depends on the product: a missed defect (an *escape*, an
anomalous part scored at or below the threshold, so never flagged) may cost a recall, a *false
call* (a normal part flagged) costs an inspector's minute. The inspectors' verdicts say which
images really are normal or anomalous, the model version's stored predictions give their image
scores, so every threshold's escapes and false calls can be counted and priced, and the
cheapest one chosen. Scores of different model versions are not comparable, so the result is
per folder *and* anomaly model version, and it is saved as that pair's ``FolderThreshold`` in
the project's flag settings; saving re-flags the folder's stored predictions (no model runs).

Flag rule (``app.services.flags``): an image is flagged when its score is *above* the
threshold. Candidate thresholds are midway between consecutive distinct reviewed scores (plus
one below the lowest and the highest score itself): any threshold between two scores counts the
same, and the middle is the one least likely to flip on the next image. Qt-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.services.flags import FolderThreshold, is_out_of_domain
from app.services.project_settings import load_project_settings, update_flag_settings
from app.services.reflag import Reflagged, reflag_folder, stored_thresholds
from database.states import AnomalyVerdict

if TYPE_CHECKING:
    from database.engine import Database

DEFAULT_BINS = 30


class OperatingPointError(ValueError):
    """Why no operating point can be computed or saved, in one sentence for the user."""


@dataclass(frozen=True)
class ReviewedScores:
    """Image scores of one anomaly model version on one folder's reviewed images, by human verdict."""

    folder_id: int
    model_version_id: int
    normal: tuple[float, ...]
    anomalous: tuple[float, ...]
    from_classes: int = 0   # of them, verdicts read from a class label (no G / D given)
    out_of_domain: int = 0  # reviewed images left out: the version called them out of its domain (no finding)
    elsewhere: int = 0      # reviewed images left out: another version's answer counts there (their routing rule)

    @property
    def count(self) -> int:
        return len(self.normal) + len(self.anomalous)


@dataclass(frozen=True)
class Costs:
    escape: float = 10.0       # one anomalous part passed as normal
    false_call: float = 1.0    # one normal part flagged for a look

    def check(self) -> None:
        for name, value in (("an escape", self.escape), ("a false call", self.false_call)):
            if not math.isfinite(value) or value < 0:
                raise OperatingPointError(f"the cost of {name} must be a number of at least 0, not {value}")
        if self.escape == 0 and self.false_call == 0:
            raise OperatingPointError("at least one of the two costs must be above 0")


@dataclass(frozen=True)
class Outcome:
    """What one threshold does to the reviewed images."""

    threshold: float
    escapes: int
    false_calls: int
    cost: float


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]           # len(bins) + 1, shared by both classes
    normal: tuple[int, ...]
    anomalous: tuple[int, ...]


@dataclass(frozen=True)
class OperatingPoint:
    scores: ReviewedScores
    costs: Costs
    candidates: tuple[Outcome, ...]    # ascending threshold
    best: Outcome
    histogram: Histogram

    def at(self, threshold: float) -> Outcome:
        """Escapes, false calls and cost at any threshold (the dialog's dragged line)."""
        return outcome(self.scores, self.costs, threshold)


def reviewed_scores(db: "Database", folder_id: int, model_version_id: int) -> ReviewedScores:
    """The version's image scores of the folder's reviewed images (accepted or corrected; rejected images are
    unusable and left out) by their verdict: the anomaly verdict where one was given (G / D), else the class label
    read by the project's classes that are not a defect (Settings ▸ Project: such a class is a normal part, any other
    class an anomalous one, as the queue's "defect class" flag reads them). Seen under Xvfb (session 42): 34 tiles
    labelled by class, and the operating point said no image was reviewed. An image the version calls out of its
    domain is left out (counted in ``out_of_domain``): its score is no finding, and its panel shows none; so is one
    where another version's answer counts (``elsewhere``), where the version counts for any of the folder's images."""
    flags = load_project_settings(db).flags
    labels = [lab for lab in db.labels.current_labels(folder_id)
              if lab.anomaly_verdict is not None or lab.class_name]
    preds = db.predictions.for_images([lab.image_id for lab in labels], model_version_id)
    normal: list[float] = []
    anomalous: list[float] = []
    from_classes = outside = elsewhere = 0
    # Where the version's answer counts for some of the folder's images, the threshold applies to those alone: a
    # session-44 probe's folder of tiles (this version) and bottles (routed to another) gave an optimum from both that
    # flagged every good tile.
    counting = any(p.current_family is not None for p in preds.values())
    for lab in labels:
        p = preds.get(lab.image_id)
        if p is None or p.anomaly_score is None or not math.isfinite(p.anomaly_score):
            continue
        if counting and p.current_family is None:
            elsewhere += 1
            continue
        if is_out_of_domain(p.in_domain):   # its panel shows no score: an answer outside the domain is no finding
            outside += 1
            continue
        if lab.anomaly_verdict is not None:
            bad = lab.anomaly_verdict == AnomalyVerdict.ANOMALOUS
        else:
            bad, from_classes = flags.is_defect(str(lab.class_name)), from_classes + 1
        (anomalous if bad else normal).append(float(p.anomaly_score))
    return ReviewedScores(folder_id, model_version_id, tuple(normal), tuple(anomalous), from_classes, outside,
                          elsewhere)


def outcome(scores: ReviewedScores, costs: Costs, threshold: float) -> Outcome:
    anom = np.sort(np.asarray(scores.anomalous, np.float64))
    normal = np.sort(np.asarray(scores.normal, np.float64))
    return _outcomes(normal, anom, costs, np.array([threshold], np.float64))[0]


def _outcomes(normal: np.ndarray, anom: np.ndarray, costs: Costs, thresholds: np.ndarray) -> list[Outcome]:
    """Counts at each threshold by binary search over the sorted scores (flagged: score > t)."""
    escapes = np.searchsorted(anom, thresholds, side="right")
    false_calls = normal.size - np.searchsorted(normal, thresholds, side="right")
    cost = costs.escape * escapes + costs.false_call * false_calls
    return [Outcome(float(t), int(e), int(f), float(c)) for t, e, f, c in zip(thresholds, escapes, false_calls, cost)]


def candidate_thresholds(values: np.ndarray) -> np.ndarray:
    """Below the lowest score (flag every image), midway between consecutive distinct scores,
    and the highest score (flag none): one threshold for each way of splitting the images."""
    distinct = np.unique(values)
    spread = float(distinct[-1] - distinct[0])
    pad = spread / 100 if spread > 0 else max(1e-3, abs(float(distinct[0])) * 1e-3)
    mids = (distinct[:-1] + distinct[1:]) / 2
    return np.concatenate([[distinct[0] - pad], mids, [distinct[-1]]])


def operating_point(scores: ReviewedScores, costs: Costs, bins: int = DEFAULT_BINS) -> OperatingPoint:
    """Every candidate threshold's escapes, false calls and cost, and the cheapest one (ties: the
    one with fewer escapes, then the lower threshold). Raises OperatingPointError when the folder
    has no reviewed normal or no reviewed anomalous image scored by this version."""
    costs.check()
    missing = [what for what, xs in (("anomalous", scores.anomalous), ("normal", scores.normal)) if not xs]
    if missing:
        raise OperatingPointError(
            f"no image reviewed as {' or '.join(missing)} has a score from this model version in this folder "
            f"({len(scores.normal)} normal, {len(scores.anomalous)} anomalous reviewed"
            + (f"; {scores.out_of_domain} left out, out of its domain" if scores.out_of_domain else "")
            + "); review a few with "
            "G (normal) and D (anomalous), or give them a class, first")
    normal = np.sort(np.asarray(scores.normal, np.float64))
    anom = np.sort(np.asarray(scores.anomalous, np.float64))
    every = np.concatenate([normal, anom])
    candidates = _outcomes(normal, anom, costs, candidate_thresholds(every))
    best = min(candidates, key=lambda o: (o.cost, o.escapes, o.threshold))
    edges = np.histogram_bin_edges(every, bins=max(1, bins))
    hist = Histogram(tuple(float(e) for e in edges), tuple(int(n) for n in np.histogram(normal, edges)[0]),
                     tuple(int(n) for n in np.histogram(anom, edges)[0]))
    return OperatingPoint(scores, costs, tuple(candidates), best, hist)


def anomaly_versions(db: "Database") -> list[tuple[int, str, bool]]:
    """(id, name, active) of the anomaly model versions, the active one first."""
    versions = sorted(db.model_versions.list("anomaly"), key=lambda v: (not v.active, -v.id))
    return [(v.id, v.name, v.active) for v in versions]


def folder_anomaly_versions(db: "Database", folder_id: int) -> dict[int, int]:
    """Anomaly version id -> how many of the folder's images its answer counts for (the active one's, or a
    version's a routing rule names there, ADR 0059): the versions whose thresholds the folder's flags follow."""
    return db.predictions.counting_versions(folder_id, "anomaly")


def most_counting(counts: dict[int, int]) -> int | None:
    """The version that answers for most of the folder (ties: the newer one); None: none answers."""
    return max(counts, key=lambda v: (counts[v], v)) if counts else None


def saved_operating_point(db: "Database", folder_id: int, model_version_id: int) -> FolderThreshold | None:
    """The folder's saved threshold and costs for this version, if any."""
    return load_project_settings(db).flags.folder_threshold(folder_id, model_version_id)


def save_operating_point(db: "Database", folder_id: int, model_version_id: int, threshold: float,
                         costs: Costs | None = None, by: str | None = None) -> Reflagged:
    """Store the folder's threshold for this anomaly version and re-flag the folder's stored
    predictions with it (no model runs; only this folder changes): the images whose anomaly answer
    that counts is this version's take it (the active version's, or one a routing rule names, ADR
    0059). Returns how many images were re-checked and how many changed flag (none when no answer of the
    version counts in the folder: it applies once one does). Slow on a big folder: call it off the GUI thread."""
    if not math.isfinite(threshold):
        raise OperatingPointError(f"the threshold must be a number, not {threshold}")
    if db.folders.get(folder_id) is None:
        raise OperatingPointError(f"folder {folder_id} is not in this project")
    version = db.model_versions.get(model_version_id)
    if version is None or version.family != "anomaly":
        raise OperatingPointError(f"model version {model_version_id} is not an anomaly model of this project")
    point = FolderThreshold(folder_id, model_version_id, float(threshold),
                            costs.escape if costs else None, costs.false_call if costs else None)
    update_flag_settings(db, lambda now: now.with_folder_threshold(point), by=by)
    counts = version.active or db.predictions.counts_in_folder(folder_id, version.id)  # a rule may name it
    return reflag_folder(db, folder_id, stored_thresholds(db)) if counts else Reflagged()
