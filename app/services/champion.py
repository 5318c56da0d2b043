"""Champion and challenger: what a retrained version would change, before it pre-labels anything.

A retrained version is registered as its family's *challenger* (``retraining.register_retrained``);
the version it would replace is the *champion*: the active version, or the challenger's parent where
routing rules name the parent for their images (``champion_of``, ADR 0060). Before promoting the
challenger an inspector sees two things:

- the held-out comparison the ``retrain`` command computed (both versions scored on the same
  reviewed images the training never saw), read from the challenger's card;
- the *disagreement queue*: the most recently reviewed and most recently added images the champion
  answers for (at most ``COMPARE_LIMIT``) on which the two versions answer differently, with the human label where
  there is one. The challenger's answers are computed by a worker (a ``compare`` job: the same
  claim/predict/store path as pre-labelling, but it never changes an image's flags or priority,
  which stay the champion's), stored as predictions of the challenger version, and compared here.

Qt-free and model-free: this module reads and writes rows only (the GUI calls it on a helper thread).
Promotion is ``ModelCatalog.promote`` (an activation recorded in ``model_activations``, part of the
audit export; or, for a routed champion, the rules naming the challenger instead), roll back
``ModelCatalog.rollback``.
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from app.services.display import decode_mask_png, load_rgb, resize_to
from app.services.flags import OUT_OF_DOMAIN, is_out_of_domain
from app.services.prelabel import (
    FAMILIES,
    UNLOADABLE,
    JobProgress,
    PrelabelError,
    job_status,
    project_speed_profile,
    read_card,
)
from app.services.project_settings import load_project_settings
from app.services.reflag import card_threshold
from app.services.wording import plural
from database.dto import ModelVersionInfo, PredictionInfo
from database.recent_images import REVIEWED, recently_added_ids, recently_reviewed_ids
from database.states import JobStatus
from inference.preprocess import shrink_to

if TYPE_CHECKING:
    from database.engine import Database

COMPARE = "compare"     # the worker's job kind: predictions of one version, no flags written
COMPARE_LIMIT = 200     # images a comparison runs on: the most recently reviewed, then the newest
# Said of a reviewed image whose label is older than the challenger's retraining (``Disagreement.learnt``).
LEARNT = "labelled before its retraining"
LEARNT_NOTE = ("{n} of the compared images were labelled before the challenger's retraining, which may have learnt "
               "them (if so, it may repeat those labels from memory): judge it on the others and on the held-out "
               "comparison")
# Two segmentation masks disagree below this intersection over union (both empty: IoU 1). 0.5 is
# the usual "same object" cut of detection benchmarks: below it an inspector would draw it anew.
MASK_IOU_MIN = 0.5


class ComparisonError(Exception):
    """A comparison that cannot be made (no challenger, no champion), in one sentence."""


@dataclass(frozen=True)
class HeldOut:
    """The retrain command's held-out comparison as rows: (metric, reference's value, challenger's)."""

    images: int
    reference: str        # the version scored beside the challenger (its parent, usually the champion)
    rows: tuple[tuple[str, float | None, float | None], ...]
    note: str             # why there are no reference figures, the best simple answer, ...


@dataclass(frozen=True)
class ModelPair:
    family: str
    champion: ModelVersionInfo | None
    challenger: ModelVersionInfo
    held_out: HeldOut
    routed: tuple[str, ...] = ()   # the rules that name the champion, when it is a routed version (ADR 0060)
    trained_on: str = ""           # what each learnt from, in words (``trained_on_note``)


@dataclass(frozen=True)
class Answer:
    """One version's answer on one image, as the disagreement queue shows it."""

    text: str                  # "scratch 0.93", "anomalous (score 0.71 ≥ 0.50)", "3 targets"
    mask_png: bytes | None     # the segmenter's mask, drawn over the image


@dataclass(frozen=True)
class Disagreement:
    image_id: int
    path: str | None           # the file, for the side-by-side view (None: folder gone)
    rel_path: str
    reason: str                # "class ok → scratch", "verdict normal → anomalous", "mask IoU 0.31"
    champion: Answer
    challenger: Answer
    human: str                 # the reviewed label ("" when the image is not reviewed)
    iou: float | None = None
    learnt: bool = False       # its label is older than the challenger's retraining: it may have learnt it


@dataclass(frozen=True)
class Comparison:
    family: str
    champion_id: int
    challenger_id: int
    images: int                # images chosen for the comparison
    compared: int              # of those, answered by both versions
    disagreements: tuple[Disagreement, ...]
    learnt: int = 0            # of the compared, reviewed images labelled before the challenger's retraining
    failed: int = 0            # of the others, images whose last worker run failed (an unreadable file, a model)
    note: str = ""             # why there is nothing to compare, where the champion answers for no image
    unreadable: int = 0        # of the failed, the images the worker could not read (the rest: a model did not load)
    unreadable_first: str = ""  # the first of those, "rel_path: reason"
    # (version name, why) where the newest compare job that ran a version failed as its model cannot be loaded there
    cannot_load: tuple[str, str] | None = None

    @property
    def waiting(self) -> int:
        """Images a worker has still to run (by either version); not those its last run failed on, which another
        run would not answer either (seen under Xvfb: an empty and a truncated file were "not run by both yet:
        Find disagreements runs them" after every run)."""
        return self.images - self.compared - self.failed


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def held_out(challenger: ModelVersionInfo) -> HeldOut:
    """The held-out comparison recorded in the challenger's card at retraining (empty when it was
    not retrained here, e.g. a model folder added by hand)."""
    record = (challenger.card or {}).get("retraining")
    compared = record.get("held_out_comparison") if isinstance(record, Mapping) else None
    if not isinstance(compared, Mapping) or not compared:
        return HeldOut(0, "", (), "no held-out comparison: this version was not retrained in this station")
    def block(key: str) -> Mapping[str, Any]:
        value = compared.get(key)
        return value if isinstance(value, Mapping) else {}

    new, ref = block("new"), block("parent")
    keys = list(dict.fromkeys([*ref, *new]))
    rows = tuple((k, _number(ref.get(k)), _number(new.get(k))) for k in keys)
    notes = []
    if not new:
        notes.append("the challenger was not scored" + (
            f": {compared['new_not_scored']}" if compared.get("new_not_scored") and "parent_not_scored" not in compared
            else ""))
    if "parent_not_scored" in compared:
        notes.append(f"the previous version was not scored: {compared['parent_not_scored']}")
    from app.services.retraining import parent_notes

    notes += parent_notes(compared)
    if compared.get("held_out_cut"):   # the held-out part shares sessions with the training part (the session-46 review)
        notes.append(str(compared["held_out_cut"]))
    simple = compared.get("simple_answers")
    if isinstance(simple, Mapping) and isinstance(simple.get("held_out"), Mapping):
        best = simple.get("best_simple")
        figures = simple["held_out"].get(best)
        if isinstance(figures, Mapping):
            text = ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if _number(v) is not None)
            notes.append(f"best simple answer ({best}): {text}")
    from app.services.retraining import every_label_note, lost_note

    notes.extend(n for n in (every_label_note(compared), lost_note(compared)) if n)
    if compared.get("refitted_on_all"):
        from app.services.retraining import REFIT_NOTE

        notes.append(REFIT_NOTE)
    images = compared.get("held_out_images")
    return HeldOut(int(images) if isinstance(images, int) else 0, str(compared.get("parent_name") or ""), rows,
                   "; ".join(notes))


def trained_on(version: ModelVersionInfo | None) -> tuple[int | None, int | None]:
    """How many images a version learnt from and how many held-out good ones its anomaly threshold rests on, as
    its card's ``data`` says (the trainers write ``train_good``/``holdout_good``, ``train_images`` or
    ``fit_frames``); None where the card does not say."""
    data = (version.card or {}).get("data") if version is not None else None
    if not isinstance(data, Mapping):
        return None, None
    def count(key: str) -> int | None:
        value = data.get(key)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
    n = next((c for c in (count(k) for k in ("train_good", "train_images", "fit_frames")) if c is not None), None)
    return n, count("holdout_good")


FEW_TIMES = 5  # a challenger that learnt from this many times fewer images than its champion is said to


def _classes(version: ModelVersionInfo) -> tuple[str, ...]:
    from app.services.project_classes import version_classes
    return version_classes(version)


def trained_on_note(champion: ModelVersionInfo | None, challenger: ModelVersionInfo) -> str:
    """What each version learnt from, in words, when the cards say: a challenger retrained from a dozen reviewed
    bottles against a bundled model of 178 (seen under Xvfb, session 35) was one click from promotion with nothing
    on screen saying so. The "1/5 or less" warning only where both answer the same question (a classifier of
    another part's classes learnt from other images by design)."""
    def said(version: ModelVersionInfo, n: int, held: int | None) -> str:
        return f"{version.name} {plural(n, 'image')}" + (f" (its threshold from {plural(held, 'held-out good one')})" if held else "")

    (new, new_held), (old, old_held) = trained_on(challenger), trained_on(champion)
    if new is None:
        return ""
    text = "learnt from: " + said(challenger, new, new_held)
    if champion is not None and old is not None:
        text += ", " + said(champion, old, old_held)
        same_task = _classes(champion) == _classes(challenger)   # a classifier of another part's classes: no ratio
        if same_task and new * FEW_TIMES <= old:
            text += f"; the challenger learnt from 1/{FEW_TIMES} or less of what the champion did"
    return text


def champion_of(db: Database, challenger: ModelVersionInfo) -> ModelVersionInfo | None:
    """The version a challenger would replace: its parent when routing rules name the parent for their
    images (a line's own version: the tile classifier retrained from tile labels), else the family's
    active version (ADR 0060)."""
    from app.services.counting_versions import named_in
    from app.services.project_settings import readable_routing

    parent = db.model_versions.get(challenger.parent_id) if challenger.parent_id is not None else None
    if parent is not None and not parent.active and parent.id != challenger.id \
            and named_in(readable_routing(db), challenger.family, parent.name):
        return parent
    return db.model_versions.active(challenger.family)


def champion_images(db: Database, champion: ModelVersionInfo) -> frozenset[int] | None:
    """The images the champion answers for (None: all, when no rule names a version of its family):
    a comparison runs there, not on another line's images."""
    from app.services.counting_versions import served_images
    from app.services.project_settings import readable_routing

    return served_images(db, readable_routing(db), champion.family, champion.name, champion.active)


def pair(db: Database, family: str, version_id: int | None = None) -> ModelPair | None:
    """A champion and its challenger of the family, or None when it has no challenger: the pair ``version_id`` is
    in (as the challenger, or as the champion: the tile classifier's, not the steel one's), else the newest."""
    from app.services.counting_versions import named_in
    from app.services.project_settings import readable_routing

    found = db.model_versions.challengers(family)
    if not found:
        return None
    champions = {c.id: champion_of(db, c) for c in found}
    # A challenger made from its champion comes first: after a roll back the replaced version is the champion's
    # challenger again, and a later one made from that replaced version (its figures measured against it, not
    # against the champion) was offered instead and promoted by Make active (a session-45 probe).
    found = sorted(found, key=lambda c: (champ := champions[c.id]) is None or c.parent_id != champ.id)
    challenger = next((c for c in found if c.id == version_id), None) or next(
        (c for c in found if (champ := champions[c.id]) is not None and champ.id == version_id), found[0])
    champion = champions[challenger.id]
    routed = tuple(named_in(readable_routing(db), family, champion.name)) \
        if champion is not None and not champion.active else ()
    return ModelPair(family, champion, challenger, held_out(challenger), routed, trained_on_note(champion, challenger))


def compare_image_ids(db: Database, limit: int = COMPARE_LIMIT, within: AbstractSet[int] | None = None) -> list[int]:
    """The most recently reviewed images and the newest ones, ``limit`` in all: half each when
    both are plentiful, the rest to whichever has more (``within``: of these images only)."""
    reviewed = recently_reviewed_ids(db, limit, within)
    recent = recently_added_ids(db, limit, exclude=reviewed, within=within)
    n_recent = min(len(recent), max(limit // 2, limit - len(reviewed)))
    taken = reviewed[:limit - n_recent]
    return taken + recent[:limit - len(taken)]


def _versions(db: Database, challenger_id: int) -> tuple[ModelVersionInfo, ModelVersionInfo, bool]:
    """(champion, challenger, promoted): ``promoted``, the challenger is a version promoted for its rules' images,
    compared with the version it was made from on the images it answers for."""
    challenger = db.model_versions.get(challenger_id)
    if challenger is None:
        raise ComparisonError(f"model version {challenger_id} does not exist")
    champion, promoted = champion_of(db, challenger), False
    if not challenger.challenger and not challenger.active:
        from app.services.counting_versions import named_in
        from app.services.project_settings import readable_routing
        serves = tuple(named_in(readable_routing(db), challenger.family, challenger.name))
        if serves:   # promoted for its rules' images: compared with the version it was made from, as its held-out
            # figures are (it was paired with the family's active version, another line's model: a session-48 audit)
            parent = db.model_versions.get(challenger.parent_id) if challenger.parent_id is not None else None
            if parent is None:
                raise ComparisonError(f"{challenger.name} answers for {', '.join(serves)} (the routing names it) and "
                                      "was made from no earlier version: there is nothing to compare it with")
            champion, promoted = parent, True
    if champion is None:
        raise ComparisonError(f"the {challenger.family} family has no active version to compare with")
    if champion.id == challenger.id:
        raise ComparisonError(f"{challenger.name} is the active {challenger.family} version: there is nothing "
                              "to compare it with")
    return champion, challenger, promoted


def _scope(db: Database, champion: ModelVersionInfo, challenger: ModelVersionInfo, promoted: bool) -> frozenset[int] | None:
    """The images a comparison runs on: the champion's, or, for a version promoted for its rules' images (compared
    with the version it was made from, which answers for none of them now), the ones it answers for."""
    return champion_images(db, challenger if promoted else champion)


def submit_compare(db: Database, challenger_id: int, limit: int = COMPARE_LIMIT) -> list[int]:
    """Queue the worker runs a comparison needs: the challenger (and the champion) on the chosen
    images each has not predicted yet. Returns the job ids (empty: everything is there); while
    this challenger's earlier compare jobs are unfinished, those."""
    champion, challenger, promoted = _versions(db, challenger_id)
    running = [j.id for j in db.jobs.list(statuses=(JobStatus.QUEUED, JobStatus.RUNNING), kind=COMPARE)
               if j.params.get("challenger") == challenger.id]
    if running:   # asked twice (a second click, a second station): the same run, not a second one
        return running
    ids = compare_image_ids(db, limit, _scope(db, champion, challenger, promoted))
    profile = project_speed_profile(db)
    jobs = []
    for version in (challenger, champion):
        done = db.predictions.image_ids_with(version.id, among=ids)   # the compared images only, not every answer
        todo = [i for i in ids if i not in done]
        if todo:
            params = {"families": [version.family], "model_versions": {version.family: version.id},
                      "challenger": challenger.id}
            if profile:  # both versions run as the project pre-labels (ADR 0025)
                params["profile"] = profile
            jobs.append(db.jobs.create(COMPARE, params, todo, priority=1).id)
    return jobs


def compare_status(db: Database, job_ids: Sequence[int]) -> list[JobProgress]:
    try:
        return [job_status(db, j) for j in job_ids]
    except PrelabelError as exc:
        raise ComparisonError(str(exc)) from None


def _mask(png: bytes | None) -> np.ndarray | None:
    return decode_mask_png(png) if png else None


def mask_iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Intersection over union of two masks (missing or empty: no pixel; both empty: 1). Masks of
    different sizes (a model that resizes) are compared at the larger one's size."""
    if a is None or b is None:
        a = a if a is not None else np.zeros((1, 1), bool)
        b = b if b is not None else np.zeros((1, 1), bool)
    if a.shape != b.shape:
        h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
        a, b = (cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 for m in (a, b))
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def verdict(score: float | None, threshold: float | None) -> str | None:
    if score is None or threshold is None:
        return None
    from app.services.flags import over_threshold
    return "anomalous" if over_threshold(score, threshold) else "normal"


def stands(p: PredictionInfo) -> bool:
    """Whether a version's answer is shown as such: not when its model called the image out of its
    training domain (the label panel shows "out of domain" instead of a confident class or score,
    and the disagreement queue says the same; ``flags.answer_stands``)."""
    return OUT_OF_DOMAIN not in p.flags and not (p.in_domain is not None and is_out_of_domain(p.in_domain))


def _withheld(p: PredictionInfo) -> Answer:
    score = f" (in-domain score {p.in_domain:.2f})" if p.in_domain is not None else ""
    return Answer(f"out of domain{score}", None)


def answer(family: str, p: PredictionInfo, threshold: float | None = None) -> Answer:
    if not stands(p):
        return _withheld(p)
    if family == "classifier":
        conf = f" {p.confidence:.2f}" if p.confidence is not None else ""
        return Answer(f"{p.predicted_class or '—'}{conf}", None)
    if family == "segmenter":
        n = p.target_count
        return Answer("no mask" if n is None else f"{n} target{'s' if n != 1 else ''}", p.mask_png)
    v = verdict(p.anomaly_score, threshold)
    score = f"score {p.anomaly_score:.3g}" if p.anomaly_score is not None else "no score"
    thr = f" vs {threshold:.3g}" if threshold is not None else ""
    return Answer(f"{v or 'no verdict'} ({score}{thr})", None)


def disagreement_reason(family: str, champion: PredictionInfo, challenger: PredictionInfo,
                        thresholds: tuple[float | None, float | None] = (None, None)) -> tuple[str | None, float | None]:
    """Why the two answers differ (None: they agree) and, for masks, their IoU.

    Classifier: another class. Anomaly: another verdict, each version at its own threshold (their
    scores are on different scales). Segmenter: masks with IoU below ``MASK_IOU_MIN``. An answer
    withheld as out of domain differs from any standing answer; two withheld answers agree."""
    a_stands, b_stands = stands(champion), stands(challenger)
    if not (a_stands and b_stands):
        if a_stands == b_stands:
            return None, None
        before, after = (answer(family, p, t).text if st else "out of domain"
                         for p, t, st in ((champion, thresholds[0], a_stands), (challenger, thresholds[1], b_stands)))
        return f"{before} → {after}", None
    if family == "classifier":
        a, b = champion.predicted_class, challenger.predicted_class
        return (None if a == b else f"class {a or '—'} → {b or '—'}"), None
    if family == "anomaly":
        a_v, b_v = verdict(champion.anomaly_score, thresholds[0]), verdict(challenger.anomaly_score, thresholds[1])
        return (None if a_v is None or b_v is None or a_v == b_v else f"verdict {a_v} → {b_v}"), None
    iou = mask_iou(_mask(champion.mask_png), _mask(challenger.mask_png))
    return (f"mask IoU {iou:.2f}" if iou < MASK_IOU_MIN else None), iou


def retrained_at(version: ModelVersionInfo) -> datetime | None:
    """When the version's retraining read the reviewed labels (its registration less the run's seconds, from
    its card's record); None for a version not retrained here."""
    record = (version.card or {}).get("retraining")
    seconds = record.get("seconds") if isinstance(record, Mapping) else None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < 1e8:
        return None
    return version.created_at - timedelta(seconds=float(seconds))   # stored times are UTC-aware (database/types.py)


def anomaly_threshold(db: Database, version: ModelVersionInfo, folder_id: int, flags: Any) -> float | None:
    """The threshold an anomaly version flags a folder's images at: the folder's own, else the
    project's, else the version's card."""
    own = flags.for_folder(folder_id, version.id).anomaly_threshold if flags is not None else None
    return own if own is not None else card_threshold(version.card or read_card(Path(version.checkpoint_path)))


def human_text(family: str, label: Any) -> str:
    if label is None:
        return ""
    if family == "classifier":
        return label.class_name or ""
    if family == "anomaly":
        return str(label.anomaly_verdict or "")
    return "mask" if label.mask_png else "no mask"


def find_disagreements(db: Database, challenger_id: int, limit: int = COMPARE_LIMIT) -> Comparison:
    """The chosen images on which the champion and the challenger answer differently, from the
    predictions stored for both (images a worker has not run yet are counted, not compared)."""
    champion, challenger, promoted = _versions(db, challenger_id)
    family = challenger.family
    served = _scope(db, champion, challenger, promoted)
    if served is not None and not served:
        # seen under Xvfb: after the tile line was routed to the tile classifier, the pair of the steel champion and
        # a challenger retrained from it on tiles read "0 disagreement(s) in 0 image(s) compared" and nothing more
        return Comparison(family, champion.id, challenger.id, 0, 0, (), note=(
            f"{champion.name} answers for none of this project's images now: the model routing runs other {family} "
            f"versions on all of them, so there is nothing to compare {challenger.name} with here"))
    ids = compare_image_ids(db, limit, served)
    mine = db.predictions.for_images(ids, challenger.id)
    theirs = db.predictions.for_images(ids, champion.id)
    both = [i for i in ids if i in mine and i in theirs]
    failed = db.jobs.last_failures([i for i in ids if i not in mine or i not in theirs])
    images = {im.id: im for im in db.images.get_many(both)}
    flags = None
    if family == "anomaly":
        try:
            flags = load_project_settings(db).flags
        except ValueError:
            flags = None   # broken stored settings: the cards' thresholds
    labels = db.labels.current_many(both)
    read_at = retrained_at(challenger)
    # Reviewed labels older than the retraining: among the labels it read (of its folder and the images its version
    # answers for), so the challenger may repeat them from memory.
    # Only labels it could read: of its folder, holding its family's part (a session-46 probe counted a second
    # folder's parts and labels without a class as "labelled before its retraining", the evidence of images the
    # challenger never saw discounted)
    record = (challenger.card or {}).get("retraining")
    folder_id = record.get("folder_id") if isinstance(record, Mapping) else None
    learnt = set() if read_at is None else {
        i for i in both if i in images and images[i].review_state in REVIEWED
        and (label := labels.get(i)) is not None and _holds_part(family, label)
        and (not isinstance(folder_id, int) or images[i].folder_id == folder_id)
        and (label.created_at <= read_at or _read_then(db, family, i, label, read_at))}

    out = []
    for i in both:
        im = images.get(i)
        if im is None:
            continue
        thr = ((anomaly_threshold(db, champion, im.folder_id, flags), anomaly_threshold(db, challenger, im.folder_id, flags))
               if family == "anomaly" else (None, None))
        reason, iou = disagreement_reason(family, theirs[i], mine[i], thr)
        if reason is None:
            continue
        label = labels.get(i)
        human = human_text(family, label) if label is not None and im.review_state in REVIEWED else ""
        out.append(Disagreement(i, db.images.path_of(i), im.rel_path, reason, answer(family, theirs[i], thr[0]),
                                answer(family, mine[i], thr[1]), human, iou, i in learnt))
    unreadable = sorted(i for i, why in failed.items() if not why.startswith(UNLOADABLE))
    first = db.images.get_many(unreadable[:1])
    return Comparison(family, champion.id, challenger.id, len(ids), len(both), tuple(out), len(learnt), len(failed),
                      unreadable=len(unreadable),
                      unreadable_first=f"{first[0].rel_path}: {failed[first[0].id]}" if first else "",
                      cannot_load=_cannot_load(db, challenger, (challenger, champion)) if failed else None)  # read only then


def _cannot_load(db: Database, challenger: ModelVersionInfo,
                 versions: Sequence[ModelVersionInfo]) -> tuple[str, str] | None:
    """(version name, the worker's reason) where the newest compare job of the challenger's comparison that ran the
    version failed as its model cannot be loaded: a session-50 audit saw a corrupt challenger said as "55 image(s)
    the worker could not read (their reasons are in the Jobs dock)", of fine images, in a dock that lists no compare
    job."""
    errors: dict[int, str] = {}   # version id -> its newest compare job's error where that job failed, else ""
    for job in db.jobs.list(kind=COMPARE):   # newest first
        if job.params.get("challenger") == challenger.id:
            for version_id in job.params.get("model_versions", {}).values():
                errors.setdefault(version_id, (job.error or "") if job.status == JobStatus.FAILED else "")
    for version in versions:
        error = errors.get(version.id, "")
        if UNLOADABLE in error:   # "every image failed; first error: model cannot be loaded: …"
            return version.name, error.partition(UNLOADABLE)[2]
    return None


def failures_text(result: Comparison) -> str:
    """What the images a comparison could not run come to, for the challenger panel and ``models compare`` alike:
    the version that cannot be loaded (its images are fine), and the files the worker could not read, with the
    first one's reason (the Jobs dock lists no compare job to find them in); "" when none."""
    parts = []
    if result.cannot_load is not None:
        name, why = result.cannot_load
        parts.append(f"{name} cannot be loaded here: {why}")
    elif result.failed > result.unreadable:
        parts.append(f"{plural(result.failed - result.unreadable, 'image')} not run: a model could not be loaded")
    if result.unreadable:
        first = f" (first: {result.unreadable_first})" if result.unreadable_first else ""
        parts.append(f"{plural(result.unreadable, 'image')} the worker could not read{first}")
    return "; ".join(parts)


def _read_then(db: Database, family: str, image_id: int, label: Any, read_at: datetime) -> bool:
    """Whether the retraining read the label's part as it is now, though a revision came after it: a class cleared by
    a slip and put back, a restore, a mask-only edit of a classified image (a session-47 audit: such images read as
    not learnt, and the learnt count fell short)."""
    then = [r for r in db.labels.history(image_id) if r.created_at <= read_at]
    if not then or then[-1].review_state.value not in REVIEWED or not _holds_part(family, then[-1]):
        return False
    old = then[-1]
    if family == "classifier":
        return bool(old.class_name == label.class_name)
    if family == "segmenter":
        return bool(old.mask_png == label.mask_png)
    return bool(old.anomaly_verdict == label.anomaly_verdict)


def _holds_part(family: str, label: Any) -> bool:
    """Whether a label holds what the family's retraining reads: a class, a mask, an anomaly verdict."""
    if family == "classifier":
        return bool(label.class_name)
    if family == "segmenter":
        return label.mask_png is not None
    return label.anomaly_verdict is not None


def challengers(db: Database) -> dict[str, ModelPair]:
    """family -> its champion and challenger, for the families that have one."""
    return {f: p for f in FAMILIES if (p := pair(db, f)) is not None}


def overlay(rgb: np.ndarray, mask_png: bytes | None, color: tuple[int, int, int]) -> np.ndarray:
    """The image with a mask drawn half see-through in ``color`` (the mask brought to its size)."""
    mask = _mask(mask_png)
    if mask is None:
        return rgb
    mask = resize_to(mask, rgb.shape[1], rgb.shape[0], nearest=True)
    out = rgb.copy()
    out[mask] = (0.5 * out[mask] + 0.5 * np.array(color, np.float32)).astype(np.uint8)
    return out


def side_by_side(d: Disagreement, size: int, color: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The image twice, at most ``size`` pixels on its longer side: with the champion's mask and
    with the challenger's (the same image when the family draws no mask). Raises DisplayError."""
    if d.path is None:
        raise ComparisonError(f"{d.rel_path}: its folder is no longer indexed")
    rgb = np.ascontiguousarray(shrink_to(load_rgb(d.path), size))
    return overlay(rgb, d.champion.mask_png, color), overlay(rgb, d.challenger.mask_png, color)


class ChampionReview:
    """The Models dialog's champion/challenger calls on one database, for its helper thread.

    ``start_worker`` (the station's ``ReviewJobs.ensure_worker``) makes sure a worker process runs
    the compare jobs; without it they wait for any worker on the database. ``worker_alive`` (the station's
    ``ReviewJobs.worker_alive``) lets the progress line say when this station's worker is not running."""

    def __init__(self, db: Database, start_worker: Callable[[], None] | None = None,
                 limit: int = COMPARE_LIMIT, worker_alive: Callable[[], bool] | None = None) -> None:
        self.db, self.start_worker, self.limit = db, start_worker, limit
        self.worker_alive = worker_alive

    def pair(self, family: str, version_id: int | None = None) -> ModelPair | None:
        return pair(self.db, family, version_id)

    def start(self, challenger_id: int) -> list[int]:
        jobs = submit_compare(self.db, challenger_id, self.limit)
        if jobs and self.start_worker is not None:
            self.start_worker()
        return jobs

    def status(self, job_ids: Sequence[int]) -> list[JobProgress]:
        return compare_status(self.db, job_ids)

    def worker_running(self) -> bool | None:
        """Whether this station's worker runs (None: not known here — another program's worker may run the jobs)."""
        return None if self.worker_alive is None else self.worker_alive()

    def disagreements(self, challenger_id: int) -> Comparison:
        return find_disagreements(self.db, challenger_id, self.limit)
