"""Re-applying changed flag thresholds to stored predictions, without running any model.

A project that changes its thresholds (Settings dialog, ``project_settings.change_flag_settings``)
wants its review queue re-ordered at once; the predictions already hold every number the rules read, so this is a pass over the
database: rebuild each image's result from its rows, flag it, write flags and priorities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from app.services.flags import FlagSettings, flag_result
from app.services.prelabel import FAMILIES, read_card
from app.services.wording import plural
from database.dto import ImageQuery, PredictionInfo
from database.predictions import FlagWrites
from inference.results import AnomalyResult, ClassResult, ImageResult, SegmentResult

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from database.engine import Database

_EMPTY = np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Reflagged:
    """What a re-flag did: ``checked`` images re-read, of which ``flagged`` are flagged now and ``unflagged`` no
    longer (an inspector's own flag stands, so it is no change). The count re-read alone was said as "6 image(s)
    re-flagged" for a threshold change that changed no flag (a session-49 audit)."""

    checked: int = 0
    flagged: int = 0
    unflagged: int = 0

    def __add__(self, other: Reflagged) -> Reflagged:
        return Reflagged(self.checked + other.checked, self.flagged + other.flagged, self.unflagged + other.unflagged)

    def summary(self) -> str:
        """E.g. "2 images now flagged, 1 image no longer flagged (6 re-checked)", "no image changed flag (6 re-checked)"."""
        changes = ([f"{plural(self.flagged, 'image')} now flagged"] if self.flagged else []) + (
            [f"{plural(self.unflagged, 'image')} no longer flagged"] if self.unflagged else [])
        return f"{', '.join(changes) or 'no image changed flag'} ({self.checked} re-checked)"


def card_threshold(card: Mapping[str, Any]) -> float | None:
    """The anomaly model card's image threshold (``{"threshold": {"image": x}}``), if any."""
    try:
        value = float(card["threshold"]["image"])
    except (KeyError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def result_from_predictions(image_id: int, preds: Mapping[str, PredictionInfo],
                            anomaly_threshold: float | None) -> ImageResult:
    """The flag rules' view of stored predictions (maps and masks are not needed, so not loaded)."""
    cls = seg = anom = None
    if (p := preds.get("classifier")) is not None and p.class_scores:
        names = tuple(p.class_scores)
        cls = ClassResult(names, np.array([p.class_scores[n] for n in names], np.float32),
                          p.predicted_class or "", float(p.confidence or 0.0))
    if (p := preds.get("segmenter")) is not None and p.target_count is not None:
        seg = SegmentResult(np.zeros((0, 0), bool), int(p.target_count))
    if (p := preds.get("anomaly")) is not None and p.anomaly_score is not None:
        anom = AnomalyResult(_EMPTY, float(p.anomaly_score), anomaly_threshold)
    in_domain = {f: float(p.in_domain) for f, p in preds.items() if p.in_domain is not None}
    return ImageResult(key=image_id, path="", classifier=cls, segmenter=seg, anomaly=anom, in_domain=in_domain)


# The thresholds a re-flag applies, or how to read them: a reader is called inside the re-flag's lock, given its
# transaction to read through, so that of two re-flags of a folder at once the later applies what is stored when it
# runs (``stored_thresholds``).
Thresholds = FlagSettings | Callable[["Session"], FlagSettings]

# Images re-flagged per write transaction: on SQLite that transaction holds the database's one write lock while it
# reads and works out the flags (about 13,000 images a second, benchmarks/results/reflag.md), so every other save
# waits at most about 0.15 s, not the seconds a whole folder of 100,000 images takes.
REFLAG_CHUNK = 2000


def stored_thresholds(db: "Database", fallback: FlagSettings | None = None) -> Callable[["Session"], FlagSettings]:
    """A reader of the project's thresholds as stored, for a re-flag (``Thresholds``: read inside its lock, in its
    transaction, not before). Where the stored ones cannot be used, ``fallback`` (what the caller read before), or
    without one the ``ProjectSettingsError``."""
    from app.services.project_settings import load_project_settings

    def read(s: "Session") -> FlagSettings:
        try:
            return load_project_settings(db, s).flags
        except ValueError:
            if fallback is None:
                raise
            return fallback
    return read


def reflag_folder(db: "Database", folder_id: int, settings: Thresholds,
                  versions: Mapping[str, int] | None = None) -> Reflagged:
    """Recompute flags and priorities of a folder's images from the given model versions'
    predictions (default: each image's predictions that count, ``database/current_predictions``),
    with the folder's own anomaly threshold for the image's anomaly version when it has one.
    Returns how many images were re-checked and how many of them changed flag."""
    return reflag_images(db, folder_id, db.images.ids(ImageQuery(folder_id=folder_id)), settings, versions)


def reflag_images(db: "Database", folder_id: int, ids: Sequence[int], settings: Thresholds,
                  versions: Mapping[str, int] | None = None) -> Reflagged:
    """``reflag_folder`` for some of the folder's images (a re-mark's: those whose answer that counts changed). Each
    ``REFLAG_CHUNK`` images are one transaction that takes the folder's lock, then reads the thresholds (``settings``,
    or from its reader) and the answers through it, and writes (``PredictionRepository.reflag``): two re-flags at once
    wrote in the order they ended, not the order they read, and the older thresholds' flags could be the ones left
    stored (a session-52 audit)."""
    done = Reflagged()
    ids = list(ids)
    for start in range(0, len(ids), REFLAG_CHUNK):
        part = ids[start:start + REFLAG_CHUNK]

        def work(s: "Session", part: Sequence[int] = part) -> FlagWrites:
            return _models_flags(db, folder_id, part, settings(s) if callable(settings) else settings, versions, s)
        done += Reflagged(*db.predictions.reflag(folder_id, work))
    return done


def models_flag(db: "Database", folder_id: int | None, image_id: int, settings: FlagSettings) -> bool:
    """Whether the models flag the image of ``folder_id``, from its predictions that count and its folder's thresholds
    (what ``reflag_images`` would write; nothing is written): F undone hands the flag back to them with the clear,
    and ``ReviewService.put_flag`` re-flags the image after it, for a re-flag that skipped it meanwhile (a session-51
    review). An image without a folder (removed meanwhile) is not flagged."""
    return folder_id is not None and bool(_models_flags(db, folder_id, [image_id], settings)[0])


def _models_flags(db: "Database", folder_id: int, ids: Sequence[int], settings: FlagSettings,
                  versions: Mapping[str, int] | None = None, s: "Session | None" = None) -> FlagWrites:
    """The flag rules over the images' stored predictions: the ids they flag, those they do not, each image's
    priority and the prediction rows whose own flags change (by prediction id). ``s``: read in that transaction (a
    re-flag's own, ``reflag_images``)."""
    if versions is None:
        per_family = {f: db.predictions.flag_inputs(ids, family=f, s=s) for f in FAMILIES}
    else:
        per_family = {f: db.predictions.flag_inputs(ids, model_version_id=vid, s=s) for f, vid in versions.items()}
    card_thresholds: dict[int, float | None] = {}

    def anomaly_threshold(version_id: int) -> float | None:
        if version_id not in card_thresholds:
            v = db.model_versions.get(version_id, s)
            card_thresholds[version_id] = None if v is None else card_threshold(v.card or read_card(Path(v.checkpoint_path)))
        return card_thresholds[version_id]

    flagged: list[int] = []
    clear: list[int] = []
    priorities: dict[int, float] = {}
    rewritten: dict[int, tuple[str, ...]] = {}
    for image_id in ids:
        preds = {f: rows[image_id] for f, rows in per_family.items() if image_id in rows}
        if not preds:  # no answer counts (any more): no model flags it, nor puts it first
            clear.append(image_id)
            priorities[image_id] = 0.0
            continue
        anomaly = preds.get("anomaly")
        version = anomaly.model_version_id if anomaly is not None else None
        folder_settings = settings.for_folder(folder_id, version)
        thr = anomaly_threshold(version) if version is not None else None
        flags = flag_result(result_from_predictions(image_id, preds, thr), folder_settings)
        (flagged if flags.flagged else clear).append(image_id)
        priorities[image_id] = flags.priority
        for family, p in preds.items():
            own = flags.for_family(family)
            if own != p.flags:
                rewritten[p.id] = own
    return flagged, clear, priorities, rewritten


def reflag_where(db: "Database", image_ids: Sequence[int], settings: Thresholds) -> Reflagged:
    """``reflag_images`` for images of any folders (each with its folder's own thresholds): after a pre-label job's
    batch and after an activation, the flags follow the answers that count. Found by a session-43 probe: a job
    running one family re-flagged its images from that family alone (the classifier's out-of-domain answer,
    still shown, no longer flagged them), and an activation left the images flagged by the replaced version."""
    by_folder: dict[int, list[int]] = {}
    for image_id, folder_id in db.images.folders_of(image_ids).items():
        by_folder.setdefault(folder_id, []).append(image_id)
    return sum((reflag_images(db, folder_id, sorted(found), settings) for folder_id, found in by_folder.items()),
               Reflagged())


def reflag_project(db: "Database", settings: Thresholds) -> Reflagged:
    """Every folder's images re-flagged with ``settings`` (the predictions that count)."""
    return sum((reflag_folder(db, f.id, settings) for f in db.folders.list()), Reflagged())
