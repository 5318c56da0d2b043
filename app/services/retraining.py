"""Retraining from reviewed labels: which data, which starting point, which command (Qt- and torch-free).

A new model version is made in three steps that the ``retrain`` command (and through it the GUI's
Models dialog) runs in its own process: the reviewed labels of one family are exported in the
layout that family's ``train`` command reads (the same export users get, so what trains is what
they could inspect), the training runs with arguments planned here, and the result is
registered as a new, inactive version whose parent is the version it started from: the family's
*challenger* (``app.services.champion``). Nothing here changes a label or the active model;
promotion stays the inspector's decision, after the comparison.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from app.paths import data_dir
from app.services.artifacts import beside_database
from app.services.export import (
    CancelFn,
    ClassFolderError,
    ExportError,
    ExportOptions,
    NothingToExport,
    ProgressFn,
    export_database,
)
from app.services.export_split import SplitSpec
from app.services.json_files import JsonFileError, read_json_object, write_json_atomic
from app.services.model_files import ModelFilesError, keep_in_database, local_model_dir
from app.services.prelabel import resolve_models
from app.services.retrain_protocol import pooled_figures
from app.services.wording import agree, plural
from database.model_versions import json_safe as finite
from database.states import ReviewState
from inference import families
from inference.imageio import IMAGE_SUFFIXES
from inference.shell_words import shell_join

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from app.services.routing import Routing
    from database import Database, ImageQuery
    from database.dto import ModelVersionInfo

FAMILY_FORMAT = families.table("export_format")
MIN_PER_CLASS = 5          # the classifier's trainer keeps a fifth of each class for validation
# The light heads (linear layers on features) keep a class from 2 reviewed images: dropping the thin classes
# "label next" leaves at 10 labels per class cost macro F1 0.27 -> 0.42 (benchmarks/results/thin.md).
KEEP_MIN_PER_CLASS = 2
# Said where the version scored beside the new one was itself refitted on this project's reviewed labels (ADR 0048):
# every held-out image labelled before that refit was in its training.
PARENT_SAW_NOTE = ("{parent} was itself refitted on this project's reviewed labels, the held-out images labelled "
                   "before it among them: its figures here flatter it")


def parent_answers_note(compared: Mapping[str, Any]) -> str:
    """Said beside a held-out comparison where some held-out labels are the previous version's own answers."""
    k, n = int(compared.get("parent_answers_held_out", 0)), int(compared.get("held_out_images", 0))
    return (f"{k} of {plural(n, 'held-out label')} {agree(k, 'is', 'are')} "
            f"{compared.get('parent_name') or 'the previous version'}'s own {agree(k, 'answer', 'answers')} kept as "
            f"{agree(k, 'it', 'they')} came: {agree(k, 'it agrees', 'they agree')} with it by construction, its "
            "figures here lean its way")


def parent_more_classes_note(compared: Mapping[str, Any]) -> str | None:
    """Said beside a held-out comparison where the previous version knows classes the reviewed labels do not use: its
    figures are over the reviewed classes only, and the new version will not answer those others at all (the retrain
    line and the Models dialog alike; a session-50 audit found the dialog and ``models compare`` without it). None
    otherwise."""
    more = compared.get("parent_more_classes")
    if not isinstance(more, list) or not more:
        return None
    return (f"{compared.get('parent_name') or 'the previous version'} also knows {plural(len(more), 'class', 'classes')} "
            f"these labels do not use, {', '.join(map(str, more[:4]))}{' …' if len(more) > 4 else ''}: its answers "
            "there count as misses, its averages are over the reviewed classes; the new version knows only those")


def parent_notes(compared: Mapping[str, Any]) -> list[str]:
    """What the held-out comparison must say of the previous version beside its figures (it saw the held-out images;
    some held-out labels are its own answers; it knows classes the new one does not): one list for the retrain line
    (``comparison_text``) and the Models dialog (``champion.held_out``), which each built it."""
    notes = []
    if compared.get("parent_saw_held_out"):
        notes.append(PARENT_SAW_NOTE.format(parent=compared.get("parent_name") or "the previous version"))
    if compared.get("parent_answers_held_out"):
        notes.append(parent_answers_note(compared))
    more = parent_more_classes_note(compared)
    if more:
        notes.append(more)
    return notes


def every_label_note(compared: Mapping[str, Any]) -> str | None:
    """The classifier's check on every reviewed label (nested group cross-validation on the training part, with
    the held-out part; ADR 0072), where the comparison holds it: what the refusal reads. None otherwise."""
    pooled = pooled_figures(compared)
    if pooled is None:
        return None

    def said(m: Mapping[str, Any]) -> str:
        return ", ".join(f"{'macro F1' if k == 'f1' else k} {v:.3f}" for k, v in m.items() if isinstance(v, (int, float)))

    return (f"on all {pooled.get('images', '?')} reviewed labels (nested cross-validation, with the held-out ones): "
            f"new {said(pooled['new'])}, best simple answer {said(pooled['simple'])}")


def lost_note(compared: Mapping[str, Any]) -> str | None:
    """Said where the classifier check refused the version and it was registered all the same (seen under Xvfb,
    session 38: after "Retrain and register anyway" the panel gave the figures and the usual "look at the
    comparison" line, nothing more). None otherwise."""
    simple = compared.get("simple_answers")
    if isinstance(simple, Mapping) and simple.get("wins") is False:
        return ("it lost to the best simple answer and was registered all the same (retrain --keep-if-worse, or "
                "Retrain and register anyway)")
    return None


# Said wherever a held-out comparison is shown of a version refitted on all labels after its check (ADR 0048).
REFIT_NOTE = ("the new figures are the checked fit's: the registered version was then refitted on all reviewed "
              "labels, these included (ADR 0048)")
MIN_SEGMENTER_FRAMES = 10  # a tenth is held out to pick epoch, threshold and flips
MIN_GOOD_IMAGES = 10       # part of the good images calibrate the anomaly threshold
# A small reviewed set gives few optimizer steps per epoch; the classifier gets at least this many
# steps (batch 32) so a couple of hundred labels still train (magnetic tile, 175 fitted images,
# transfer from the NEU model: 30 epochs = 150 steps gave 0.35 on the station's held-out images,
# 200 epochs = 1000 steps 0.53; benchmarks/RESULTS.md, "Retraining from reviewed labels").
MIN_CLASSIFIER_STEPS = {"fine-tune": 300, "transfer": 1000, "scratch": 1000}
MAX_AUTO_EPOCHS = 400
CLASSIFIER_BATCH = 32
AUTO_EPOCHS = families.epochs_table()
HELD_OUT_SPLIT = SplitSpec(0.8, 0.2, 0.0)
HEADLINE = families.table("headline")
RECORD = "retraining.json"  # written into the new model directory beside its card


class RetrainError(Exception):
    """Retraining cannot start (too few reviewed labels, unknown folder, unreadable model); nothing changed."""


class TooFewLabels(RetrainError):
    """Too few reviewed labels of what a family learns from (frames with masks, classes, normal images).
    ``plan_retraining`` adds the reviewed labels the export left out and why: the inspector counts those among what
    they reviewed, and the refusal's count alone did not say where they went (a session-50 audit)."""


LEFT_OUT_SHOWN = 3  # the reasons a note or a refusal quotes; the rest are counted


def left_out_note(skipped: Sequence[str]) -> str:
    """The reviewed labels the export left out, how many and the first few reasons as the export words them (its
    advice included, such as "open its folder in the station to index it again"): the one wording of a plan's note
    and of a "too few" refusal, so `retrain` says on a refusal what `export` of the same labels says (a session-50
    audit: 10 corrected frames, 3 of their files changed or gone, and the refusal read only "there are 7")."""
    # the export's list is of every reviewed image left out, whatever its label holds (a class-only label beside a
    # segmenter's masks): said as such, not as this family's labels (a session-50 review: "there are 9 — 5 reviewed
    # labels not used" of 12 masks, 2 of the 5 class labels)
    return (f"the export left out {plural(len(skipped), 'reviewed image')}: {'; '.join(skipped[:LEFT_OUT_SHOWN])}"
            + (f"; … and {len(skipped) - LEFT_OUT_SHOWN} more" if len(skipped) > LEFT_OUT_SHOWN else ""))


def too_few(message: str, skipped: Sequence[str]) -> TooFewLabels:
    """A "too few" refusal with the reviewed labels left out and why, where there are some."""
    return TooFewLabels(f"{message} — {left_out_note(skipped)}" if skipped else message)


@dataclass(frozen=True)
class VersionScope:
    """The version a retraining starts from (its parent) and the images whose labels it learns from: where
    routing rules name versions of the family, only the images that version answers for (ADR 0060), so the
    tile classifier is not retrained on steel labels nor the steel one on tile labels."""

    version: ModelVersionInfo | None     # None: the family has no version yet
    images: frozenset[int] | None        # None: every image (no rule names a version of the family, all run it)
    routed: tuple[str, ...] = ()         # the patterns of the rules that name the version
    others: tuple[str, ...] = ()         # the other versions of the family routing rules name (a retraining's way out)
    # reviewed images under rules that do not run the family at all, per rule pattern (their labels are nobody's)
    unrun: tuple[tuple[str, int], ...] = ()

    def empty_note(self, db: Database, family: str) -> str:
        """Why a narrowed retraining found no labels, or too few, and where the others went (the versions the rules
        give them to, with their reviewed images, and the rules that run no version of the family: a session-48 audit
        followed docs/new_line.md on bottles routed to the anomaly model alone, and `retrain classifier` said only
        "nothing to export"; a session-51 audit's refusal counted "crazing 1" of 11 reviewed labels, silent on the 10
        the tiles rule gives to the tile classifier)."""
        reviewed = None
        if self.images is not None and self.others:   # read on a refusal only: a pass over the reviewed images
            from app.services.counting_versions import reviewed_by_version
            reviewed = reviewed_by_version(db, family)
        note = narrowing_note(self.images, self.others, reviewed)
        if self.unrun:
            n = sum(c for _p, c in self.unrun)
            note += (f"; {plural(n, 'reviewed image')} {agree(n, 'sits', 'sit')} under routing rules that run "
                     f"no {family}: "
                     f"{', '.join(f'{p} ({c})' for p, c in self.unrun)}: tick {family} in those rules (Project ▸ "
                     f"Model routing) to learn from their labels")
        return note

    def describe(self) -> str | None:
        """What the narrowing is, for the retrain command's notes (None: no narrowing)."""
        if self.images is None:
            return None
        name = self.version.name if self.version is not None else "the active version"
        why = []
        if self.routed:
            why.append(f"routing rule{'s' if len(self.routed) > 1 else ''} {', '.join(self.routed)}")
        if self.version is None or self.version.active:
            why.append("the images whose rule runs the family and names no other version")
        return (f"learns from the labels of the {plural(len(self.images), 'image')} {name} answers for only "
                f"({'; '.join(why)})")


def version_scope(db: Database, family: str, name: str | None = None) -> VersionScope:
    """The scope of a retraining of ``family``: the version called ``name`` (it must be named by a routing rule
    or be the active one), else the active version; a family no rule names a version of is not narrowed."""
    from app.services.counting_versions import named_in, served_images, version_by_name
    from app.services.project_settings import readable_routing

    if family not in FAMILY_FORMAT:
        raise RetrainError(f"unknown family {family!r}; choose from {', '.join(FAMILY_FORMAT)}")
    routing = readable_routing(db)
    if name is None:
        version = resolve_models(db, [family]).get(family)
    else:
        version = version_by_name(db, family, name)
        if version is None:
            raise RetrainError(f"this project has no {family} version named {name!r} "
                               "(python main.py models list names them)")
    routed = tuple(named_in(routing, family, version.name)) if version is not None else ()
    if version is not None and not routed and not version.active:
        raise RetrainError(f"{version.name} answers for no image: no routing rule names it and it is not the active "
                           f"{family} version; name it in a rule (Project ▸ Model routing) or make it active first")
    images = served_images(db, routing, family, version.name if version is not None else None,
                           version is None or version.active)
    others = tuple(sorted({n for f, n in routing.named_versions()
                           if f == family and (version is None or n != version.name)}))
    return VersionScope(version, images, routed, others, _reviewed_unrun(db, routing, family))


def _reviewed_unrun(db: Database, routing: Routing, family: str) -> tuple[tuple[str, int], ...]:
    """Reviewed images whose routing rule does not run ``family``, counted per rule pattern (none read where every
    rule runs it)."""
    if all(family in r.families for r in routing.rules):
        return ()
    from database.dto import ImageQuery as Query
    counts: dict[str, int] = {}
    for folder in db.folders.list():
        for im in db.images.query(Query(folder_id=folder.id, states=(ReviewState.ACCEPTED, ReviewState.CORRECTED),
                                        sort="id")):
            rule = routing.rule_for(im.rel_path, folder.name)
            if rule is not None and family not in rule.families:
                counts[rule.pattern] = counts.get(rule.pattern, 0) + 1
    return tuple(counts.items())


@dataclass(frozen=True)
class RetrainPlan:
    family: str
    name: str                  # the new version's name
    data_dir: Path             # the exported training tree the trainer reads
    out_dir: Path              # where the trainer writes (the model directory, or its parent for the segmenter)
    train_args: tuple[str, ...]  # arguments of ``python main.py train FAMILY``
    parent: ModelVersionInfo | None
    start: str                 # "fine-tuned from ..." / "from scratch: ..."
    data: Mapping[str, Any] = field(default_factory=dict)  # what the exported data holds
    notes: tuple[str, ...] = ()  # what was left out and why
    comparable: bool = False   # the parent can be scored on the same held-out labels as the new version
    head_only: str | None = None  # classifier: a light head (no train run), cross-validated with groups by this rule
    head_method: str = "head"     # which light heads: "head" (frozen backbone), "texture", "defect", or "auto" (all)
    fitted_parent: bool = False   # the start point is a version the trainer cannot start from (texture_linear)
    folder_id: int | None = None  # the folder the labels were read from (None: every folder)
    skipped: tuple[str, ...] = ()  # the reviewed labels the export left out, each with why (a later refusal says them)

    @property
    def model_dir(self) -> Path:
        """The trained model directory (the segmenter's trainer writes ``final/`` and ``best/``)."""
        return self.out_dir / "final" if self.family == "segmenter" else self.out_dir

    def command_line(self) -> str:
        if self.head_only is not None:
            return "python main.py " + shell_join(["retrain", self.family, "--method", self.head_method,
                                                   "--groups", self.head_only])
        return "python main.py " + shell_join(["train", self.family, *self.train_args])


def models_root(db_url: str) -> Path:
    """Retrained versions live beside a SQLite file (``station-models/``), else in the user data folder."""
    return beside_database(db_url, "-models") or data_dir() / "models"


def version_name(family: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{family}-retrained-{now.strftime('%Y%m%d-%H%M%S')}"


NAME_BYTES = 200  # the folder's name and its work folder's (".NAME.work") within a file system's 255 bytes


def check_version_name(name: str) -> None:
    """A new version's name is also its folder's: one plain name, not a path (a session-47 audit: "line3/steel" and a
    300-character name ended in a traceback, and "a/../../b" led the work folder outside the models folder)."""
    if not name.strip() or name != name.strip() or name in (".", "..") or name.startswith("."):
        raise RetrainError(f"{name!r} cannot be a version's name: it is also its folder's (no leading dot or space)")
    if any(c in name for c in '/\\:*?"<>|') or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise RetrainError(f"{name!r} cannot be a version's name: it is also its folder's, and holds a character "
                           "a folder name cannot (/ \\ : * ? \" < > | or a control character)")
    if len(name.encode("utf-8", "surrogateescape")) > NAME_BYTES:
        raise RetrainError(f"a version's name is also its folder's: at most {NAME_BYTES} bytes "
                           f"({len(name.encode('utf-8', 'surrogateescape'))} given)")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path)
    except JsonFileError as exc:
        raise RetrainError(str(exc)) from None


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (none when it does not exist), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _stems(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def narrowing_note(within: AbstractSet[int] | None, others: tuple[str, ...] = (),
                   reviewed: Mapping[str, int] | None = None) -> str:
    """What a retraining narrowed to a version's images read, for its "no training data" or "too few" message (""
    when not narrowed); ``others``: the other versions the rules give images to, where the labels may have gone;
    ``reviewed``: reviewed images by the version that learns from them, so each other version is named with its
    count and the way out names the one holding the most: only one that holds reviewed labels, for retraining one
    without any is no way out (a session-51 review: "clf-tile (0 reviewed images): retrain that version")."""
    if within is None:
        return ""
    out = (f" (only the {plural(len(within), 'image')} the version answers for by the routing rules "
           f"{agree(len(within), 'was', 'were')} read")
    if others:
        named = (", ".join(f"{n} ({plural(reviewed.get(n, 0), 'reviewed image')})" for n in others)
                 if reviewed is not None else ", ".join(others))
        if reviewed is not None and not any(reviewed.get(n, 0) for n in others):
            return out + f"; the rules give the others to {named}: no other version holds reviewed labels either)"
        way_out = max(others, key=lambda n: reviewed.get(n, 0)) if reviewed is not None else others[0]
        out += (f"; the rules give the others to {named}: retrain that version "
                f"(--version {shell_join([way_out])}, or select it in the Models dialog and retrain it there)")
    return out + ")"


def export_training_data(db: Database, family: str, work: Path, folder: str | int | None = None,
                         progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                         within: AbstractSet[int] | None = None, scope: VersionScope | None = None,
                         groups: str | None = "auto") -> tuple[Path, dict[str, int], tuple[str, ...], tuple[str, ...]]:
    """Export the family's reviewed labels below ``work`` (``within``: of these images only; ``scope``: the
    narrowing it comes from, for the message when nothing is left; ``groups``: the capture-group rule the held-out
    part keeps whole, as the cross-validation does); returns the format's folder, the images held
    out of training (file name -> image id), the reviewed images left out, each with why (file missing, changed), and
    what the export says of its split."""
    if family not in FAMILY_FORMAT:
        raise RetrainError(f"unknown family {family!r}; choose from {', '.join(FAMILY_FORMAT)}")
    fmt = FAMILY_FORMAT[family]
    # The classifier and segmenter get an explicit held-out part, so the new version and the one it
    # replaces are scored on the same reviewed images the training never saw; the MVTec layout
    # already keeps a fifth of the normal images (and every anomalous one) for its test split.
    # Whole capture sessions are held out where the images show them (a session-45 probe: the held-out part was cut
    # image by image, so a session the new version trained on was also what it was scored on, and its figure leaned
    # its way against the cross-validation's, which keeps sessions whole).
    split = None if family == "anomaly" else dataclasses.replace(HELD_OUT_SPLIT, group_rule=groups)
    try:
        result = export_database(db, work / "export", ExportOptions(formats=(fmt,), split=split), folder=folder,
                                 progress=progress, cancel=cancel, within=within)
    except ClassFolderError as exc:  # "or leave imagefolder out" is no way for a retraining (a session-49 audit)
        raise RetrainError(f"the {family} cannot be trained on these labels: {exc.problem_and_advice}") from None
    except NothingToExport as exc:
        only = scope.empty_note(db, family) if scope is not None else narrowing_note(within)
        raise RetrainError(f"no training data for the {family}: {exc}{only}") from None
    except ExportError as exc:  # a full or unwritable destination: its own words ("no training data for the
        # classifier: the destination is full: …" blamed the labels: a session-51 audit)
        raise RetrainError(f"the reviewed {family} labels cannot be exported for training: {exc}") from None
    root: Path = result.out / fmt
    if not root.is_dir() or not result.formats.get(fmt, {}).get("images"):
        only = scope.empty_note(db, family) if scope is not None else narrowing_note(within)
        raise too_few(f"no reviewed {family} labels to train on: accept or correct some "
                      f"{'classes' if family == 'classifier' else 'masks' if family == 'segmenter' else 'anomaly verdicts'}"
                      f" first{only}", result.skipped)
    return root, result.held_out_files, tuple(result.skipped), result.station_notes


def parents_answers_kept(db: Database, version_id: int, family: str, image_ids: Sequence[int],
                         classes: AbstractSet[str] | None = None) -> int:
    """How many of ``image_ids`` hold ``version_id``'s own answer accepted as it came (an accepted label made from a
    prediction, equal to the version's answer: its class; its mask, "no target" included): they agree with that
    version by construction, so a held-out comparison on them leans its way (seen under Xvfb, session 37: a
    segmenter compared on one accepted frame, IoU 1.000 against the challenger's 0.786). A label given or imported
    by a person that happens to equal the answer is evidence, not a copy (seen under Xvfb, session 38: 18 imported
    tile labels were all called the tile classifier's own answers). ``classes``: the classifier's classes kept for
    training (a left-out class's images are not held out either)."""
    from app.services.display import DisplayError, decode_mask_png

    if not image_ids:
        return 0
    labels = {i: lab for i, lab in db.labels.current_many(image_ids).items()
              if lab.review_state == ReviewState.ACCEPTED and lab.from_prediction_id is not None}
    # only a label accepted from this version's own answer row: one accepted from an earlier version's answer, which
    # this version happens to give too, is evidence for it, not a copy (a session-45 probe: clf-v1's accepted
    # answers were called clf-v2's "own answers kept as they came" after v2 was made active)
    mine = {v.id for v in db.model_versions.list(family)}   # the family's versions, read once
    preds = {i: p for i, p in db.predictions.for_images(list(labels), version_id).items()
             if p.id == labels[i].from_prediction_id or _shown_with(db, mine, p, labels[i])}
    if family == "anomaly":
        return _anomaly_answers_kept(db, version_id, labels, preds)
    kept = 0
    for image_id, label in labels.items():
        pred = preds.get(image_id)
        if pred is None:
            continue
        if family == "classifier":
            kept += (label.class_name is not None and label.class_name == pred.predicted_class
                     and (classes is None or label.class_name in classes))
            continue
        if label.mask_png is None or pred.mask_png is None:
            continue
        try:
            a, b = decode_mask_png(label.mask_png), decode_mask_png(pred.mask_png)
        except DisplayError:
            continue
        kept += a.shape == b.shape and bool(np.array_equal(a, b))
    return kept


def _shown_with(db: Database, family_versions: AbstractSet[int], pred: Any, label: Any) -> bool:
    """Whether ``pred`` was the family's answer on screen when ``label`` was accepted from its image's answers: an
    accepted label names one answer row only (the first family's), so a segmenter's or anomaly model's own answer
    accepted beside a classifier's was not counted, and the "own answers" note never came (a session-46 probe). It
    was, where the label was accepted from a row of this image and ``pred`` is the only answer of its family the image
    had then (another version's beside it: which one was shown cannot be told, and it is not counted)."""
    rows = db.predictions.for_image(pred.image_id)
    if label.from_prediction_id not in {r.id for r in rows}:
        return False
    then = [r for r in rows if r.model_version_id in family_versions and r.created_at <= label.created_at]
    return [r.id for r in then] == [pred.id]


def _anomaly_answers_kept(db: Database, version_id: int, labels: Mapping[int, Any], preds: Mapping[int, Any]) -> int:
    """``parents_answers_kept`` for the anomaly model: an accepted label whose verdict is the version's own (its score
    against the threshold in force where the image is, as the panel showed it: the folder's, else the project's, else
    the card's; a label holding no verdict of its own takes the prediction's). Such a held-out verdict sits on the
    version's side of its threshold by construction, so its AUROC there leans its way (1.0 where every held-out
    verdict is its own): the comparison said nothing of it (a session-43 probe). The card's threshold alone counted a
    verdict accepted under a folder's operating point as not its own (a session-47 audit)."""
    from app.services.champion import anomaly_threshold, verdict
    from app.services.project_settings import load_project_settings

    version = db.model_versions.get(version_id)
    if version is None:
        return 0
    try:
        flags = load_project_settings(db).flags
    except ValueError:
        flags = None  # broken stored settings: the card's threshold, as the worker flags then
    folders = {im.id: im.folder_id for im in db.images.get_many(list(labels))}
    thresholds = {f: anomaly_threshold(db, version, f, flags) for f in set(folders.values())}  # once per folder
    kept = 0
    for image_id, label in labels.items():
        pred = preds.get(image_id)
        if pred is None or pred.anomaly_score is None or image_id not in folders:
            continue
        threshold = thresholds[folders[image_id]]
        if threshold is None:
            continue
        own = verdict(pred.anomaly_score, threshold)
        given = label.anomaly_verdict.value if label.anomaly_verdict is not None else None
        kept += given is None or given == own
    return kept


def _classifier_plan(root: Path, parent: ModelVersionInfo | None,
                     keep_min: int = MIN_PER_CLASS) -> tuple[list[str], str, dict[str, Any], list[str]]:
    """``keep_min``: the fewest reviewed images a class needs to be kept (``retrain --min-per-class``); two
    classes need ``MIN_PER_CLASS`` either way."""
    parts = [d for d in (root / "train", root / "val") if d.is_dir()]
    counts: dict[str, int] = {}
    for part in parts:
        for d in sorted(part.iterdir()):
            if d.is_dir():
                counts[d.name] = counts.get(d.name, 0) + len(image_files(d))
    counts = dict(sorted(counts.items()))
    notes = []
    for name, n in counts.items():
        if n < keep_min:
            notes.append(f"class {name!r} left out: {plural(n, 'reviewed image')}, at least {keep_min} are needed")
    kept = {k: v for k, v in counts.items() if v >= keep_min}
    if sum(v >= MIN_PER_CLASS for v in kept.values()) < 2:
        raise TooFewLabels("the classifier needs at least 2 classes with at least "
                           f"{MIN_PER_CLASS} reviewed images each; reviewed so far: "
                           + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    for name in counts.keys() - kept.keys():
        for part in parts:
            shutil.rmtree(part / name, ignore_errors=True)
    args: list[str] = []
    start = "from scratch"
    if parent is not None:
        pdir = Path(parent.checkpoint_path)
        card, config = read_json(pdir / "card.json"), read_json(pdir / "config.json").get("config", {})
        theirs = [str(c) for c in card.get("classes", [])]
        same = theirs == sorted(kept)
        # Same classes: fine-tune everything gently. Other classes: transfer learning — its
        # features start the run and only the final class layer is new, so it needs a higher rate.
        args += ["--init", str(pdir), "--preset", str(card.get("preset", "cpu")),
                 "--ablation", str(card.get("ablation", "full")), "--lr", "3e-4" if same else "1e-3"]
        if not same:
            args += ["--init-head", "new"]
        for key, flag in (("img_size", "--img-size"), ("input_norm", "--input-norm")):
            if config.get(key) is not None:
                args += [flag, str(config[key])]
        start = (f"fine-tuned from {parent.name}" if same else
                 f"transferred from {parent.name}: its features, a new class layer for {sorted(kept)} "
                 + (f"(it knows the same classes in another order: {theirs})" if set(theirs) == set(kept)
                    else f"(it knew {theirs})"))
    held_out = sum(len(image_files(d)) for d in (root / "val").glob("*") if d.is_dir())
    return args, start, {"classes": kept, "held_out": held_out}, notes


def _has_target(mask_png: Path) -> bool:
    import cv2

    mask = cv2.imread(str(mask_png), cv2.IMREAD_UNCHANGED)
    return mask is not None and bool(np.any(mask))


def _segmenter_plan(root: Path, parent: ModelVersionInfo | None) -> tuple[list[str], str, dict[str, Any], list[str]]:
    frames = image_files(root / "images")
    if len(frames) < MIN_SEGMENTER_FRAMES:
        raise TooFewLabels(f"the segmenter needs at least {MIN_SEGMENTER_FRAMES} reviewed frames with masks; "
                           f"there are {len(frames)}")
    with_targets = sum(_has_target(m) for m in image_files(root / "masks"))
    if with_targets == 0:
        raise TooFewLabels(f"none of the {len(frames)} reviewed masks holds a target: the segmenter cannot "
                           "learn what a target is from background alone")
    args: list[str] = []
    start = "from scratch"
    if parent is not None:
        pdir = Path(parent.checkpoint_path)
        card = read_json(pdir / "card.json")
        inner = card.get("training", {}).get("inner")
        args += ["--init", str(pdir), "--preset", str(card.get("preset", "cpu")), "--lr", "1e-3", "--target-prob", "0.5"]
        if inner:
            args += ["--inner", str(inner)]
        left = [what for what, has in (("ensemble members", bool(card.get("ensemble"))),
                                       ("target verifier", bool(card.get("verifier")) or (pdir / "verifier").is_dir()))
                if has]
        # Said only for a start point that has them (seen under Xvfb: said of segmenter-sirst-v3, which has neither).
        start = (f"fine-tuned from {parent.name}"
                 + (f" (its main network; its {' and '.join(left)} {agree(len(left), 'is', 'are')} not retrained)"
                    if left else ""))
    held_out = len(_stems(root / "val.txt"))
    return args, start, {"frames": len(frames), "with_targets": with_targets, "held_out": held_out}, []


def _anomaly_plan(root: Path, parent: ModelVersionInfo | None = None, parent_arch: str | None = None
                  ) -> tuple[Path, list[str], str, dict[str, Any], list[str]]:
    """``parent_arch``: the start point's architecture; one the family catalogue lists in
    ``refit_like`` is refitted with the parent's own settings, any other gives a new network."""
    from app.services.retrain_anomaly import MIN_DEFECT_REGIONS, defects_to_validation, fit_grouping

    categories = sorted(d for d in root.iterdir() if d.is_dir())
    if len(categories) > 1:
        raise RetrainError("the reviewed anomaly verdicts span several folders ("
                           + ", ".join(c.name for c in categories) + "): choose one with --folder "
                           "(an anomaly model learns one kind of part)")
    category = categories[0]
    good = len(image_files(category / "train" / "good"))
    test = category / "test"
    anomalous = sum(len(image_files(d)) for d in test.iterdir() if d.is_dir() and d.name != "good") if test.is_dir() else 0
    if good < MIN_GOOD_IMAGES:
        raise TooFewLabels(_too_few_normal(category.name, good, len(image_files(test / "good")), anomalous))
    arch = parent_arch if parent is not None and parent_arch in families.family("anomaly").refit_like else None
    learned = 0
    if arch in families.family("anomaly").refit_with_defects:
        # what stays in test/ after the training share of the drawn regions moved out: the count above was read
        # before the move, and a kind of one region-drawn image leaves none (a session-50 review: "no test
        # evaluation" was lost and the trainer skipped its one-class test set unsaid)
        learned, anomalous = defects_to_validation(category, HELD_OUT_SPLIT)
        if learned < MIN_DEFECT_REGIONS:
            raise TooFewLabels(
                f"{parent.name if parent else 'the active version'} is a {arch} model: it learns from reviewed anomalous "
                f"images with a drawn region (R), {MIN_DEFECT_REGIONS} at least in the training share (four in five of "
                f"them; the rest are kept for testing); {category.name} gives {learned}. Draw the regions of more "
                "anomalous images, or retrain a model from good images only (python main.py retrain anomaly --from-scratch)")
    args: list[str] = []
    notes = []
    if anomalous == 0 or not image_files(test / "good"):
        args.append("--no-evaluate")
        notes.append("no test evaluation: AUROC needs both normal and anomalous reviewed images")
    if arch is not None and parent is not None:
        group_by, folds, note = fit_grouping(category)
        args += ["--like", str(parent.checkpoint_path), "--group-by", group_by, "--cv-folds", str(folds)]
        notes += [note] if note else []
        start = (f"refitted as {arch} with {parent.name}'s settings on the reviewed images (fitted anew, nothing fine-tuned)"
                 + (f", its heads on {plural(learned, 'reviewed defect region')}" if learned else ""))
    else:
        channels = image_channels(image_files(category / "train" / "good"))
        args += ["--channels", str(channels)]
        start = f"from scratch on good parts (as every anomaly model is trained), {'gray' if channels == 1 else 'colour'} input"
    held_out = len(image_files(test / "good")) + anomalous
    data = {"category": category.name, "normal_train": good, "anomalous_test": anomalous, "held_out": held_out,
            **({"defects_learned": learned} if learned else {})}
    return category, args, start, data, notes


def _too_few_normal(category: str, train: int, kept: int, anomalous: int) -> str:
    """Why an anomaly retraining cannot start, in the inspector's counts: the images they reviewed as normal, the
    share of them the export trains on, and about how many more to review. It said only the training share ("data has
    1" of 2 reviewed; "has 0" with 3 reviewed as anomalous, unsaid; a session-50 audit), and never how many more.
    ``kept``: the normal images held out for testing. The count of more is the export's split rule for one folder, as
    "label next" counts it; never fewer than the training share lacks (folders of one name share a category, each
    split on its own)."""
    from app.services.label_next_anomaly import normal_to_train

    reviewed = train + kept
    more = max(normal_to_train(reviewed), MIN_GOOD_IMAGES - train)
    have = (f"{category} has {plural(reviewed, 'image')} reviewed as normal"
            + (f", {train} of them in the training share" if reviewed else ""))
    others = (f" (images reviewed as anomalous, {anomalous} here, do not count: the model learns what a normal part "
              "looks like)" if anomalous else "")
    return (f"the anomaly model needs at least {MIN_GOOD_IMAGES} images reviewed as normal in its training share (a "
            f"fifth of them is kept for testing); {have}: review about {more} more as normal{others}")


def image_channels(paths: Sequence[Path], sample: int = 8) -> int:
    """1 when the images are gray (also gray stored as RGB), else 3: the anomaly model's input channels."""
    import cv2

    for path in paths[:sample]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None and (np.any(img[..., 0] != img[..., 1]) or np.any(img[..., 1] != img[..., 2])):
            return 3
    return 1


def data_text(family: str, data: Mapping[str, Any]) -> str:
    """A plan's data in words for the dialog and the command's stage line (seen under Xvfb, session 36: the
    dialog read "data {'frames': 12, 'with_targets': 10, 'held_out': 2}")."""
    held = int(data.get("held_out", 0) or 0)
    if family == "classifier" and isinstance(data.get("classes"), Mapping):
        classes = data["classes"]
        text = (f"{sum(classes.values())} reviewed images in {len(classes)} classes ("
                + ", ".join(f"{k} {v}" for k, v in classes.items()) + ")")
    elif family == "segmenter" and "frames" in data:
        frames, targets = int(data["frames"]), int(data.get("with_targets", 0))
        text = f"{frames} reviewed frames ({targets} with targets, {frames - targets} without)"
    elif family == "anomaly" and "category" in data:
        text = (f"{data['category']}: {data.get('normal_train', 0)} normal images to learn from, "
                f"{data.get('anomalous_test', 0)} anomalous to test on"
                + (f", {data['defects_learned']} defect regions learnt" if data.get("defects_learned") else ""))
    else:
        return ", ".join(f"{k} {v}" for k, v in data.items())
    return text + (f"; {held} held out to compare" if held else "")


def auto_epochs(family: str, mode: str, data: Mapping[str, Any]) -> int:
    """The family's usual epochs, raised for a small classifier set to a minimum number of steps."""
    epochs = AUTO_EPOCHS[(family, mode)]
    if family == "classifier":
        fitted = sum(data["classes"].values()) - data.get("held_out", 0)
        steps_per_epoch = max(1, fitted // CLASSIFIER_BATCH)
        epochs = max(epochs, min(MAX_AUTO_EPOCHS, math.ceil(MIN_CLASSIFIER_STEPS[mode] / steps_per_epoch)))
    return epochs


def plan_retraining(db: Database, family: str, work: Path, out_dir: Path, *, folder: str | int | None = None,
                    epochs: int | None = None, threads: int | None = None, device: str = "auto",
                    extra_args: Sequence[str] = (), name: str | None = None, from_scratch: bool = False,
                    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                    min_per_class: int = MIN_PER_CLASS, scope: VersionScope | None = None,
                    groups: str | None = "auto") -> RetrainPlan:
    """Export the data, check it is enough, and choose how the new version starts and trains
    (``min_per_class``: the classifier's classes with fewer reviewed images are left out; ``scope``: the
    version to start from and the images to learn from, default ``version_scope(db, family)``)."""
    scope = scope if scope is not None else version_scope(db, family)
    parent = scope.version
    if parent is not None:  # its folder here: where it was made, this install's bundled copy, or the database's
        try:
            parent = dataclasses.replace(parent, checkpoint_path=str(local_model_dir(db, parent)))
        except ModelFilesError as exc:
            log.warning("retraining without a start point: %s", exc)
            parent = None
    root, held_files, skipped, split_notes = export_training_data(db, family, work, folder, progress, cancel,
                                                                  within=scope.images, scope=scope, groups=groups)
    start_from = None if from_scratch else parent  # the parent stays the lineage and the comparison either way
    parent_arch = str(read_json(Path(parent.checkpoint_path) / "config.json").get("model")) if parent else None
    fitted_parent = start_from is not None and parent_arch in families.family(family).fitted_only
    if fitted_parent:  # a network cannot start from it: train from scratch, the light heads refit it
        start_from = None
    try:
        if family == "classifier":
            args, start, data, notes = _classifier_plan(root, start_from, min_per_class)
        elif family == "segmenter":
            args, start, data, notes = _segmenter_plan(root, start_from)
        else:
            root, args, start, data, notes = _anomaly_plan(root, start_from, parent_arch)
    except TooFewLabels as exc:  # the labels the export left out are part of the count the inspector reads
        # and so are the ones the routing rules give to another version: the count alone ("reviewed so far:
        # crazing 1" of 11 labels) read as labels lost (a session-51 audit)
        raise too_few(f"{exc}{scope.empty_note(db, family)}", skipped) from None
    # what is still held out once the plan has moved what the new version learns from (an anomaly refit's defect
    # regions go to validation/): counted over all the exported ones, the line read "13 of 5 held-out labels are
    # its own answers" (a session-45 probe)
    left = {p.name for p in (root / "test").rglob("*") if p.is_file()} if family == "anomaly" else None
    held_ids = [i for name, i in held_files.items() if left is None or name in left]
    if parent is not None and held_ids:
        kept_classes = set(data["classes"]) if isinstance(data.get("classes"), Mapping) else None
        kept_answers = parents_answers_kept(db, parent.id, family, held_ids, kept_classes)
        if kept_answers:   # said only where there are some: the plan's data stays as it was otherwise
            data["held_out_parents_answers"] = kept_answers
    if skipped:  # they were dropped without a word, and "all 28 reviewed labels" said of 30 (a session-45 probe)
        notes = [left_out_note(skipped), *notes]
    notes = [*notes, *split_notes]  # what the export says its reader must know (how its held-out part was cut)
    from app.services.export import IMAGE_BY_IMAGE
    cut = [n for n in split_notes if IMAGE_BY_IMAGE in n]
    if cut:  # kept with the comparison: the card, the Models dialog and `models compare` say it beside the figures
        data["held_out_cut"] = cut[0]
    narrowed = scope.describe()
    if narrowed:
        notes = [narrowed, *notes]
    if fitted_parent and parent is not None:
        notes = [*notes, f"{parent.name} is a {parent_arch} "
                         "version (no network): --method train would start a network from scratch"]
    fine_tune = "--init" in args
    mode = "transfer" if "--init-head" in args else "fine-tune" if fine_tune else "scratch"
    n_epochs = epochs if epochs is not None else auto_epochs(family, mode, data)
    if n_epochs < 1:
        raise RetrainError("--epochs must be at least 1")
    args = ["--data", str(root), "--out", str(out_dir), "--epochs", str(n_epochs), "--device", device, *args]
    if threads:
        args += ["--threads", str(threads)]
    args += list(extra_args)  # last, so they override the plan's choices (argparse keeps the last value)
    # Scoring the parent needs held-out images it can read: the same classes for the classifier,
    # normal and anomalous images for the anomaly model's AUROC.
    # the same names in any order: the parent is scored by class name (a card listing them in another order was
    # said to be "trained on other classes" and left unscored; a session-45 probe)
    # the reviewed classes among the parent's own: it is scored on them (its answers in a class the labels do not use
    # count as misses, said); it was left unscored as "trained on other classes" when the line labelled 3 of its 6
    # (a session-48 probe)
    same_classes = parent is not None
    if parent is not None and family == "classifier":
        known = {str(c) for c in read_json(Path(parent.checkpoint_path) / "card.json").get("classes", [])}
        reviewed = {str(c) for c in data["classes"]}
        same_classes = reviewed <= known
        if not same_classes:
            data["parent_lacks_classes"] = sorted(reviewed - known)
        elif known - reviewed:
            data["parent_more_classes"] = sorted(known - reviewed)
    comparable = parent is not None and data.get("held_out", 0) > 0 and same_classes and not (
        family == "anomaly" and "--no-evaluate" in args)
    return RetrainPlan(family=family, name=name or version_name(family), data_dir=root, out_dir=out_dir,
                       train_args=tuple(args), parent=parent, start=start, data=data, notes=tuple(notes),
                       comparable=comparable, fitted_parent=fitted_parent, folder_id=_folder_id(db, folder),
                       skipped=skipped)


def _folder_id(db: Database, folder: str | int | None) -> int | None:
    """The id of the folder the labels were exported from (None: all folders)."""
    from app.services.export_source import FolderNotFound, resolve_folder

    try:
        chosen = resolve_folder(db, folder)
    except FolderNotFound as exc:
        raise RetrainError(str(exc)) from None
    return chosen.id if chosen else None


def _unreviewed_query(db: Database, folder: str | int | None) -> "ImageQuery":
    from database import ImageQuery, ReviewState

    return ImageQuery(folder_id=_folder_id(db, folder), states=(ReviewState.UNREVIEWED,), sort="id")


def unreviewed_count(db: Database, folder: str | int | None = None, within: AbstractSet[int] | None = None) -> int:
    """The unreviewed images of the folder the labels were exported from (all folders for None; ``within``: of
    these images only): with the reviewed labels, what the folder's class mix is made of
    (``retrain --class-mix acc-folder``)."""
    if within is not None:
        return sum(1 for i in db.images.ids(_unreviewed_query(db, folder)) if i in within)
    return db.images.count(_unreviewed_query(db, folder))


def chosen_by_label_next(db: Database, folder: str | int | None = None,
                         within: AbstractSet[int] | None = None) -> dict[str, int]:
    """Per class, the reviewed labels of the folder the labels were exported from (all folders for None) that were
    saved as "label next" proposals: the class-mix estimate does not read their out-of-fold errors as the folder's
    (``retrain --class-mix acc-folder``, ADR 0049). Keyed as the export names the class folders the trainer reads
    (``export_items.safe_name``), so a class name with characters a folder cannot hold still matches."""
    from app.services.export_items import safe_name

    counts: dict[str, int] = {}
    for name, n in db.labels.chosen_by_label_next(_folder_id(db, folder), within).items():
        key = safe_name(name)
        counts[key] = counts.get(key, 0) + n
    return counts


def unlabelled_pool(db: Database, folder: str | int | None = None, limit: int = 200, seed: int = 0,
                    within: AbstractSet[int] | None = None) -> list[Path]:
    """Up to ``limit`` random unreviewed images (not missing) of the folder the labels were exported from (all
    folders for None; ``within``: of these images only): the pool whose class mix a light classifier head is
    given (ADR 0043). Seeded, so a rerun on the same station reads the same images."""
    query = _unreviewed_query(db, folder)
    if within is not None:
        ids = [i for i in db.images.ids(query) if i in within]
        drawn = np.random.default_rng(seed).choice(len(ids), size=min(limit, len(ids)), replace=False)
        found = [db.images.path_of(ids[int(k)]) for k in sorted(drawn)]
        return [Path(p) for p in found if p]
    total = db.images.count(query)
    # A folder may hold a million images: read only the rows drawn, one page of one row each.
    picked = sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=min(limit, total), replace=False))
    rows = [row for i in picked for row in db.images.query(dataclasses.replace(query, limit=1, offset=i))]
    paths = [db.images.path_of(im.id) for im in rows]
    return [Path(p) for p in paths if p]


def headline_metrics(card: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a version list shows: the card's own metrics, else the segmenter trainer's on the tenth of its
    training frames it chose its epoch, threshold and flips on: a validation figure, not a held-out one (a
    session-46 probe: with no reviewed frame held out, `models list` read "held-out IoU 0.000 (2 images)")."""
    metrics = card.get("metrics")
    if isinstance(metrics, dict) and metrics:
        safe: dict[str, Any] = finite(metrics)
        return safe
    held = card.get("held_out_metrics")
    return {"validation": finite(held)} if isinstance(held, dict) else {}


# The split of the card's metrics where the trainer already scored the held-out part (the
# classifier's val/ is the export's val part, the anomaly test/ its MVTec test split); the
# segmenter's trainer scores only its own share of train.txt, so it is evaluated afterwards.
TRAINER_SCORED = families.table("trainer_scored")


def trainer_scores(plan: RetrainPlan) -> dict[str, Any] | None:
    """The new version's figures on the held-out labels, when its training already computed them."""
    split = TRAINER_SCORED.get(plan.family)
    block = read_json(plan.model_dir / "card.json").get("metrics", {}).get(split) if split else None
    return block if isinstance(block, dict) and block else None


def headline(family: str, metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """The few figures that say which version is better on the held-out labels."""
    return {k: finite(metrics.get(k)) for k in HEADLINE[family] if k in metrics} if metrics else {}


def over_reviewed_classes(report: Mapping[str, Any], classes: Sequence[str]) -> Mapping[str, Any]:
    """A classifier's report with its macro averages taken over ``classes`` (the reviewed ones) alone: a parent knowing
    more classes got an F1 of 0 averaged in for each it answered in (0.593 beside the new version's 0.956, with half
    its errors; the review of a session-48 fix). Its answers there still count against recall and accuracy."""
    per = report.get("per_class")
    rows = [per[c] for c in classes if isinstance(per, Mapping) and isinstance(per.get(c), Mapping)]
    if not rows or len(rows) != len(classes):
        return report
    out = dict(report)
    for key in ("precision", "recall", "f1"):
        values = [r.get(key) for r in rows]
        if all(isinstance(v, (int, float)) for v in values):
            out[key] = float(np.mean(values))
    return out


def comparison(plan: RetrainPlan, new: Mapping[str, Any] | None, parent: Mapping[str, Any] | None) -> dict[str, Any]:
    """Both versions on the same held-out reviewed images (``parent`` None: not comparable, with the reason)."""
    out: dict[str, Any] = {"held_out_images": plan.data.get("held_out", 0), "new": headline(plan.family, new)}
    if plan.data.get("held_out_cut"):
        out["held_out_cut"] = str(plan.data["held_out_cut"])
    unscorable = None
    if plan.family == "anomaly" and not plan.data.get("anomalous_test"):
        # seen (session 35): 12 reviewed good bottles gave "no held-out images it can be scored on" for the parent
        # and said nothing of why the new version had no figure either
        unscorable = ("the held-out reviewed images hold no anomalous part, and an AUROC needs normal and anomalous "
                      "ones (mark defective parts anomalous, D)")
    if not out["new"] and unscorable:
        out["new_not_scored"] = unscorable
    if plan.parent is not None and parent is not None:
        if plan.data.get("parent_more_classes"):
            parent = over_reviewed_classes(parent, [str(c) for c in plan.data.get("classes", {})])
        out["parent"] = headline(plan.family, parent)
        out["parent_name"] = plan.parent.name
        if refitted_here(plan.parent):
            out["parent_saw_held_out"] = True
        if plan.data.get("held_out_parents_answers"):
            out["parent_answers_held_out"] = int(plan.data["held_out_parents_answers"])
        if plan.data.get("parent_more_classes"):
            out["parent_more_classes"] = list(plan.data["parent_more_classes"])
    elif plan.parent is not None:
        lacks = plan.data.get("parent_lacks_classes")
        out["parent_not_scored"] = ((f"it does not know {', '.join(map(str, lacks))}" if lacks
                                     else "it was trained on other classes") if plan.family == "classifier"
                                    else unscorable or "no held-out images it can be scored on")
    return out


def refitted_here(version: ModelVersionInfo) -> bool:
    """Whether the version was retrained in this project and then refitted on all its reviewed labels, the held-out
    part included (its card's record says so)."""
    record = (version.card or {}).get("retraining")
    compared = record.get("held_out_comparison") if isinstance(record, Mapping) else None
    return isinstance(compared, Mapping) and bool(compared.get("refitted_on_all"))


def comparison_text(compared: Mapping[str, Any]) -> str:
    """One line for people: both versions' figures on the held-out reviewed images."""
    def figures(m: Mapping[str, Any]) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, (int, float)) else f"{k.replace('_', ' ')} —"
                         for k, v in m.items()) or "not scored"

    n = compared.get("held_out_images", 0)
    if not n:
        return "no held-out reviewed images: the new version was not scored on your labels"
    text = f"on {plural(n, 'held-out reviewed image')}: new {figures(compared.get('new', {}))}"
    if compared.get("new_not_scored") and "parent_not_scored" not in compared:
        text += f" ({compared['new_not_scored']})"
    if "parent" in compared:
        text += f"; {compared.get('parent_name', 'previous')} {figures(compared['parent'])}"
        text += "".join(f" ({note})" for note in parent_notes(compared))
    elif "parent_not_scored" in compared:
        text += f"; the previous version was not scored ({compared['parent_not_scored']})"
    simple = compared.get("simple_answers")
    if isinstance(simple, Mapping) and simple.get("best_simple") in simple.get("held_out", {}):
        text += f"; best simple answer ({simple['best_simple']}) {figures(simple['held_out'][simple['best_simple']])}"
    for note in (every_label_note(compared), lost_note(compared)):
        if note:
            text += f"; {note}"
    if compared.get("refitted_on_all"):
        text += f"; {REFIT_NOTE}"
    if compared.get("held_out_cut"):
        text += f"; {compared['held_out_cut']}"
    return text


def register_retrained(db: Database, plan: RetrainPlan, seconds: float,
                       compared: Mapping[str, Any] | None = None) -> ModelVersionInfo:
    """Record how the version was made beside its card, then register it with its parent as the
    family's challenger: inactive, reviewed beside the active version before promotion."""
    model_dir = plan.model_dir
    card = read_json(model_dir / "card.json")
    record = {
        "name": plan.name, "family": plan.family, "parent": plan.parent.name if plan.parent else None,
        "start": plan.start, "data": dict(plan.data), "left_out": list(plan.notes), "folder_id": plan.folder_id,
        "held_out_comparison": dict(compared or {}),
        "command": plan.command_line(), "seconds": round(seconds, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "trained on the station's reviewed (accepted or corrected) labels, exported as for "
                "`python main.py export`; the export itself is not kept",
    }
    write_json_atomic(model_dir / RECORD, record)
    card = {**card, "retraining": record}
    write_json_atomic(model_dir / "card.json", card)
    version = db.model_versions.register(plan.family, plan.name, str(model_dir.resolve()), card=card,
                                         metrics=headline_metrics(card),
                                         parent_id=plan.parent.id if plan.parent else None, challenger=True)
    try:  # every station and worker loads it, not only this one (ADR 0062)
        keep_in_database(db, version, model_dir)
    except (OSError, ModelFilesError) as exc:
        log.warning("%s runs only where %s is seen: %s", plan.name, model_dir, exc)
    return version


def safe_remove_tree(path: Path) -> None:
    """Remove a work folder this module made (its name ends in .work), nothing else."""
    if path.exists() and path.name.endswith(".work"):
        shutil.rmtree(path, ignore_errors=True)


def work_dir(root: Path, name: str) -> Path:
    return root / f".{name}.work"


WORK_OWNER = ".owner"         # in a work folder: "host pid" of the retraining it belongs to
STALE_WORK_S = 2 * 24 * 3600  # a work folder with no owner file (an older version's) this old is a dead run's


def claim_work(work: Path) -> None:
    """Make the run's work folder, naming its owner (``sweep_dead_work`` leaves a living run's alone)."""
    from app.services.child_command import owner_tag
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_OWNER).write_text(owner_tag(), encoding="utf-8")


def sweep_dead_work(root: Path, registered: Callable[[str], bool]) -> list[str]:
    """Remove what killed retrainings left in ``root``: work folders (a copy of every reviewed image) whose owner was
    a process of this host that is gone, or with no owner file and untouched for ``STALE_WORK_S``, and each one's
    model folder where no version of that name is registered (``registered(name)``). A ``kill -9``, a crash or a
    power loss left them for good, each run named anew (a session-48 probe: 91 files, 2 MB, per killed run).
    Returns what was removed."""
    from app.services.child_command import abandoned
    removed = list[str]()
    try:
        found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".") and p.name.endswith(".work")]
    except OSError:
        return removed
    for work in found:
        if not abandoned(work, WORK_OWNER, STALE_WORK_S):
            continue   # one still running, another machine's run (not known here), or an ownerless one not yet old
        name = work.name[1:-len(".work")]
        safe_remove_tree(work)
        removed.append(str(work))
        model = root / name
        if name and model.is_dir() and not registered(name):
            shutil.rmtree(model, ignore_errors=True)
            removed.append(str(model))
    return removed

