"""Turning an image's predictions into review flags and a priority (higher = look first).

The inspector's review queue is sorted by priority, so the rules are deliberately simple and
explainable: each flag names why the image needs a look, and each flag adds a severity in
[1, 2] (1 when barely over its threshold, up to 2 when far over it). Unflagged images keep a
priority below 1 from how near they came to a flag (classifier uncertainty, anomaly score over
its threshold), so even "all fine" images are ordered from most to least doubtful.

An image a model's domain statistics call unlike its training images (``inference.domain``) gets
``out_of_domain`` instead of that model's other reasons: a "scratches 100 %" on an infrared sky
frame is no defect to look for, it is an image the model cannot judge. Its severity grows with
how far past the threshold the image lies. The image stays flagged (its reason is
``out_of_domain``), so a part a model cannot judge is still put in front of an inspector; and
what the window hides, Accept does not take (``answer_stands``).

Thresholds are per project (``FlagSettings``), stored in the database's project settings
(``app.services.project_settings``) so every station and worker flags with the same values.
A folder (product) may override the anomaly threshold for one anomaly model version
(``FolderThreshold``, chosen from costs in ``app.services.operating_point``): scores of one
model on one product are comparable, across products or versions they are not.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from inference.domain import OUT_OF_DOMAIN_BELOW as OUT_OF_DOMAIN_BELOW  # re-exported: prelabel report, GUI
from inference.domain import is_out_of_domain as is_out_of_domain  # re-exported for the review service
from inference.normal_classes import DEFAULT_NORMAL_CLASSES, is_normal_class
from inference.results import ImageResult

ANOMALY = "anomaly"
TARGETS = "small_targets"
DEFECT = "defect_class"
LOW_CONFIDENCE = "low_confidence"
OUT_OF_DOMAIN = "out_of_domain"
# Which reasons a family's own prediction row carries (the image carries them all); every family's
# row may carry OUT_OF_DOMAIN, but only when its own model called the image out of domain.
FAMILY_REASONS = {"classifier": (DEFECT, LOW_CONFIDENCE), "segmenter": (TARGETS,), "anomaly": (ANOMALY,)}


@dataclass(frozen=True)
class FolderThreshold:
    """The anomaly threshold a folder uses while ``model_version_id`` is the active anomaly model,
    with the costs it was chosen from (kept so the Operating point dialog reopens with them)."""

    folder_id: int
    model_version_id: int
    threshold: float
    cost_escape: float | None = None
    cost_false_call: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> "FolderThreshold":
        if not isinstance(data, Mapping):
            raise ValueError(f"a folder threshold must be an object, not {data!r}")
        try:
            out = cls(int(data["folder_id"]), int(data["model_version_id"]), float(data["threshold"]),
                      *(None if data.get(k) is None else float(data[k]) for k in ("cost_escape", "cost_false_call")))
        except KeyError as exc:
            raise ValueError(f"a folder threshold lacks {exc}") from None
        if not math.isfinite(out.threshold):
            raise ValueError(f"folder {out.folder_id}'s anomaly threshold must be a number")
        return out


def find_folder_threshold(values: tuple[FolderThreshold, ...], folder_id: int | None,
                          anomaly_version_id: int | None) -> FolderThreshold | None:
    return next((f for f in values if (f.folder_id, f.model_version_id) == (folder_id, anomaly_version_id)), None)


@dataclass(frozen=True)
class FlagSettings:
    # None: use the anomaly model card's threshold (and if it has none, never flag on anomaly).
    anomaly_threshold: float | None = None
    min_targets: int = 1
    good_classes: tuple[str, ...] = DEFAULT_NORMAL_CLASSES
    min_confidence: float = 0.6
    # Per folder and anomaly model version, over ``anomaly_threshold`` (Project ▸ Operating point…).
    folder_thresholds: tuple[FolderThreshold, ...] = ()

    def is_defect(self, class_name: str) -> bool:
        """Whether a class names a defect: any class the project does not list as not a defect (``good_classes``)."""
        return not is_normal_class(class_name, self.good_classes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.folder_thresholds:
            del out["folder_thresholds"]  # older stations, which reject unknown keys, still read it
        return out

    def folder_threshold(self, folder_id: int | None, anomaly_version_id: int | None) -> FolderThreshold | None:
        """The folder's own threshold for this anomaly model version, if one was set."""
        return find_folder_threshold(self.folder_thresholds, folder_id, anomaly_version_id)

    def for_folder(self, folder_id: int | None, anomaly_version_id: int | None) -> "FlagSettings":
        """The settings that flag images of ``folder_id`` scored by ``anomaly_version_id``: the
        folder's own anomaly threshold when it has one for that version, else the project's."""
        own = self.folder_threshold(folder_id, anomaly_version_id)
        return self if own is None else dataclasses.replace(self, anomaly_threshold=own.threshold)

    def with_folder_threshold(self, value: FolderThreshold) -> "FlagSettings":
        """These settings with ``value`` replacing the folder's threshold for that model version."""
        others = tuple(f for f in self.folder_thresholds
                       if (f.folder_id, f.model_version_id) != (value.folder_id, value.model_version_id))
        return dataclasses.replace(self, folder_thresholds=others + (value,))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "FlagSettings":
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown flag settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        # each value's kind, as a hand-edited old flags file may hold anything: a threshold "0.5" was stored, then
        # re-flagging raised TypeError and the Settings dialog could not open to mend it (a session-47 audit)
        threshold = values.get("anomaly_threshold")
        if threshold is not None and (not _real(threshold) or not _finite(threshold)):
            raise ValueError(f"anomaly_threshold must be a number or null, not {str(threshold)[:40]!r}")
        for key in ("min_confidence", "min_targets"):
            if key in values and (not _real(values[key]) or not _finite(values[key])):
                raise ValueError(f"{key} must be a number, not {str(values[key])[:40]!r}")  # 1e999 raised OverflowError
                # past every handler and stopped the worker (the review of session 47)
        if "min_targets" in values:
            if float(values["min_targets"]) != int(values["min_targets"]):
                raise ValueError("min_targets must be a whole number")
            values["min_targets"] = int(values["min_targets"])
        if "good_classes" in values:
            if not isinstance(values["good_classes"], (list, tuple)) or not all(
                    isinstance(c, str) for c in values["good_classes"]):
                raise ValueError("good_classes must be a list of class names")  # a text was split into letters
            values["good_classes"] = tuple(values["good_classes"])
        if "folder_thresholds" in values:
            if not isinstance(values["folder_thresholds"], (list, tuple)):
                raise ValueError("folder_thresholds must be a list")
            values["folder_thresholds"] = tuple(FolderThreshold.from_dict(f) for f in values["folder_thresholds"])
        s = cls(**values)
        if not 0.0 <= s.min_confidence <= 1.0:
            raise ValueError("min_confidence must be within [0, 1]")
        if s.min_targets < 1:
            raise ValueError("min_targets must be at least 1")
        return s


def _real(value: Any) -> bool:
    """A JSON number (a bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    """A finite number, a 400-digit integer included as not one (float() of it raises OverflowError)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class Flags:
    reasons: tuple[str, ...]
    priority: float
    out_of_domain: tuple[str, ...] = ()  # the families whose model called the image out of domain

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def for_family(self, family: str) -> tuple[str, ...]:
        """The reasons ``family``'s own prediction row carries."""
        if family in self.out_of_domain:
            return (OUT_OF_DOMAIN,)
        return tuple(r for r in self.reasons if r in FAMILY_REASONS.get(family, ()))


def answer_stands(family: str, out_of_domain: Collection[str]) -> bool:
    """Whether ``family``'s answer on an image is shown and taken by Accept: only when its model calls
    the image in domain. Tried and dropped (session 11): letting an anomaly over its threshold stand out
    of domain, so a badly broken part keeps its finding — on a mixed folder it brought back "anomalous
    0.9996" on infrared sky frames and steel through the tile model, the confident answers on foreign
    images this flag exists to withhold; a broken part out of domain is flagged for review all the same."""
    return family not in out_of_domain


def out_of_domain_families(result: ImageResult) -> tuple[str, ...]:
    """The families whose in-domain score puts the image outside their training domain."""
    return tuple(f for f, s in result.in_domain.items() if is_out_of_domain(s))


def _domain_severity(result: ImageResult, families: tuple[str, ...]) -> float:
    """In [1, 2]: how far past the threshold the farthest family's distance is (score 0.5 ** ratio)."""
    worst = min(result.in_domain[f] for f in families)
    ratio = math.log(max(worst, 1e-300)) / math.log(0.5)  # distance / threshold
    return _over(ratio, 1.0)


def _over(value: float, threshold: float) -> float:
    """Severity in [1, 2]: how far ``value`` exceeds ``threshold`` relative to the threshold."""
    scale = abs(threshold) if threshold else 1.0
    return 1.0 + min(1.0, max(0.0, (value - threshold) / scale))


def over_threshold(score: float, threshold: float) -> bool:
    """One rule for "anomalous": a score above its threshold, as the model's own verdict, the flags and the
    operating point count it. The label panel, the gallery's chips, the disagreement queue and the retraining's
    held-out count said ">=": at a threshold equal to a score (the operating point proposes such thresholds) the
    panel said anomalous and Accept saved it while the queue said not flagged (a session-44 probe)."""
    return score > threshold


def flag_result(result: ImageResult, settings: FlagSettings) -> Flags:
    reasons: list[str] = []
    priority = 0.0
    ood = out_of_domain_families(result)
    if ood:
        reasons.append(OUT_OF_DOMAIN)
        priority += _domain_severity(result, ood)
    if result.anomaly is not None and answer_stands("anomaly", ood):
        thr = settings.anomaly_threshold if settings.anomaly_threshold is not None else result.anomaly.threshold
        if thr is not None and over_threshold(result.anomaly.score, thr):
            reasons.append(ANOMALY)
            priority += _over(result.anomaly.score, thr)
    if (result.segmenter is not None and "segmenter" not in ood
            and result.segmenter.target_count >= settings.min_targets):
        reasons.append(TARGETS)
        priority += _over(result.segmenter.target_count, settings.min_targets)
    cls = result.classifier if "classifier" not in ood else None
    if cls is not None:
        if settings.is_defect(cls.label):
            reasons.append(DEFECT)
            priority += 1.0 + cls.confidence
        if cls.confidence < settings.min_confidence:
            reasons.append(LOW_CONFIDENCE)
            priority += 1.0 + (settings.min_confidence - cls.confidence) / max(settings.min_confidence, 1e-6)
    if not reasons:
        priority = _closeness(result, settings)
    return Flags(tuple(reasons), round(priority, 6), ood)


def _closeness(result: ImageResult, settings: FlagSettings) -> float:
    """Priority < 1 of an unflagged image: how near it came to a flag (classifier uncertainty,
    anomaly score as a fraction of its threshold), so the "all fine" images are ordered too."""
    near = 0.0
    if result.classifier is not None:
        near = max(near, 1.0 - result.classifier.confidence)
    if result.anomaly is not None:
        thr = settings.anomaly_threshold if settings.anomaly_threshold is not None else result.anomaly.threshold
        if thr is not None and thr > 0:
            near = max(near, result.anomaly.score / thr)
    return min(0.999, max(0.0, near))


SETTINGS_FILE = "flag_settings.json"
def load_flag_settings(path: Path) -> FlagSettings:
    """Read thresholds from an older station's JSON file (for the one-time import into the
    database); a missing file means the defaults. Read bounded (a few thresholds: a large or deeply nested file is not
    such a file; a session-46 probe's raised RecursionError past the callers)."""
    from inference.model_limits import ModelLimitError, read_json_bounded

    try:
        doc = read_json_bounded(path)
    except FileNotFoundError:
        return FlagSettings()
    except ModelLimitError:
        raise ValueError(f"{path}: too large to be read, not flag settings") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid flag settings ({exc})") from None
    try:
        return FlagSettings.from_dict(doc)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: invalid flag settings ({exc})") from None
