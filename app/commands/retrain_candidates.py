"""The retrain command's classifier candidates and the simple answers they must beat (runs in the retrain process).

A retrained classifier is registered only if it is at least as good in accuracy and macro F1 as the
best simple answer fitted on the same labels (the simple answer chosen by group-aware cross-validation),
on every reviewed label: nested out-of-fold on the training part, pooled with the held-out part (ADR 0072;
the held-out part alone where the nesting cannot be made). See docs/retraining.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from app.services.retraining import RetrainError, RetrainPlan, read_json
from app.services.wording import plural
from inference.training.groups import cv_said

Progress = Callable[[str, int, int], None]
TRAINED = "trained_network"


# light method -> the candidate kinds it cross-validates (inference.training.classifier_head.CANDIDATE_KINDS)
LIGHT_KINDS = {"head": ("backbone",), "texture": ("texture",), "defect": ("defect",),
               "bank": ("bank", "defect_bank"),
               "auto": ("texture", "defect", "bank", "defect_bank", "backbone")}


def classifier_method(plan: RetrainPlan, asked: str) -> str:
    """'head' (frozen backbone + linear head), 'texture' (linear layer on texture features), 'defect'
    (linear layer on small-defect statistics), 'bank' (linear layer on LBP / Gabor / GLCM descriptors,
    alone or beside the defect statistics), 'auto' (the best of them all by group CV) or 'train';
    auto trains only when no active version starts the run."""
    if plan.family != "classifier" or asked == "train":
        return "train"
    has_parent = "--init" in plan.train_args or plan.fitted_parent
    if asked == "head" and plan.fitted_parent:
        raise RetrainError(f"--method head: the active classifier {plan.parent.name if plan.parent else ''} has no "
                           "backbone to freeze (a linear layer on texture features); use --method texture, defect, bank or train")
    if asked == "head" and "--init" not in plan.train_args:
        raise RetrainError("--method head needs an active classifier version to take the backbone from "
                           "(and no --from-scratch), or --train-args \"--init DIR\"")
    if asked == "auto" and not has_parent:
        return "train"
    return asked


def method_start(method: str, parent_name: str, chosen: str = "", with_backbone: bool = True) -> str:
    """How the new version starts, for the plan and the record (``chosen``: the candidate picked). ``with_backbone``
    False: no network to freeze (the active version is a fitted one and no ``--init`` names one), so the candidates
    said are the feature heads only (the plan promised a backbone head never tried: a session-48 audit)."""
    from inference.training.classifier_head import candidate_features

    texture = "a linear layer on texture features (no network)"
    defect = "a linear layer on small-defect statistics (no network)"
    bank = "a linear layer on LBP, Gabor and co-occurrence texture descriptors (no network)"
    defect_bank = "a linear layer on small-defect statistics and texture descriptors (no network)"
    backbone = f"linear head on the frozen backbone of {parent_name}"
    if chosen:
        picked = {"texture": texture, "defect": defect, "bank": bank, "defect_bank": defect_bank}.get(
            candidate_features(chosen) or "", backbone)
        return picked + (", chosen by group cross-validation over all candidates" if method == "auto" else "")
    heads = f"{texture}, {defect}, {bank} and {defect_bank}"
    return {"head": backbone, "texture": texture, "defect": defect,
            "bank": "the better of " + bank + " and " + defect_bank + ", by group cross-validation"}.get(
        method, f"the best of {'a ' + backbone + ', ' if with_backbone else ''}{heads}, by group cross-validation")


def backbone_dir(plan: RetrainPlan) -> Path | None:
    """The model directory the run starts from: the last ``--init`` of its train arguments.

    That is the active version's, unless ``--train-args "--init DIR"`` names another one (a
    pretrained backbone, docs/pretraining.md): argparse lets the last one win, and so does this.
    """
    args = list(plan.train_args)
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--init"]
    return Path(found[-1]) if found else None


def _backbone(plan: RetrainPlan):
    """The model whose backbone the light heads and the embedding simple answers use: the last
    ``--init``, else the active version (which may be a fitted model without a backbone), else None."""
    from inference.checkpoints import CheckpointError, load_model

    start = backbone_dir(plan) or (Path(plan.parent.checkpoint_path) if plan.parent is not None else None)
    if start is None:
        return None
    try:
        return load_model(start, family="classifier")
    except CheckpointError as exc:
        raise RetrainError(f"the backbone to start from cannot be read: {exc}") from None


def head_version(plan: RetrainPlan, groups: str, progress: Progress, method: str = "head",
                 pool: Sequence[Path] = (), unreviewed: int | None = None,
                 chosen: Mapping[str, int] | None = None, temper: bool = True,
                 unreviewed_in_fit: bool = True,
                 normal: Sequence[str] | None = None) -> tuple[Any, Callable[[], None] | None]:
    """Compare the light heads of ``method`` and the simple answers, then write the chosen one into ``plan.model_dir``.

    ``pool``: unreviewed images of the reviewed folder; a chosen feature head takes their class mix, as it
    predicts them, for its prior (ADR 0043; the held-out check scores it without); with ``unreviewed`` (the folder's
    unreviewed images) the whole folder's mix by adjusted classify-and-count, not reading the out-of-fold errors of
    the labels "label next" chose (``chosen``, per class, ADR 0049) as the folder's, and tempered as far as they were
    (``temper``, benchmarks/results/temper.md); the pool joins the dominant class's loss as far as they were not
    (``unreviewed_in_fit``, benchmarks/results/pu.md) when that class is one of ``normal``. Returns the comparison
    and, when there are held-out labels, the refit: it rewrites ``plan.model_dir`` with the chosen candidate
    fitted on all reviewed labels (training and held-out parts, ``--refit-all``), to be called once the
    held-out check is over; None when there is nothing to add.
    """
    from inference.training.classifier_head import (
        can_refit_on_all,
        candidate_features,
        compare_candidates,
        pool_matrix,
        write_chosen_head,
    )

    kinds = LIGHT_KINDS[method]
    loaded = _backbone(plan) if "backbone" in kinds else None
    if "backbone" in kinds and loaded is None:
        raise RetrainError("the linear head needs an active classifier (or --train-args \"--init DIR\") to start from")
    if kinds == ("backbone",) and loaded is not None and not hasattr(loaded.model, "features"):
        raise RetrainError(f"--method head: the active classifier ({loaded.name}) has no backbone to freeze; "
                           "use --method texture, defect, bank or train")
    try:
        candidates, arrays = compare_candidates(loaded, plan.data_dir, groups, progress=progress, kinds=kinds)
    except ValueError as exc:
        raise RetrainError(f"cannot cross-validate the reviewed labels: {exc}") from None
    if not candidates.chosen:
        raise RetrainError("no candidate could be fitted on the reviewed labels")
    if loaded is not None:
        # a pretrained backbone's card describes a backbone ("task", "kind"): the new version is a classifier
        card = {k: v for k, v in loaded.card.items() if k != "task"} if loaded.card.get("kind") else loaded.card
    else:
        card = read_json(Path(plan.parent.checkpoint_path) / "card.json") if plan.parent is not None else {}
    feature_set = candidate_features(candidates.chosen)
    pool_features = pool_matrix(pool, feature_set, progress) if feature_set and pool else None
    write_chosen_head(loaded, candidates, arrays, plan.model_dir, card, plan.command_line(), pool_features=pool_features,
                      unreviewed=unreviewed, chosen=chosen, temper=temper,
                      unreviewed_in_fit=unreviewed_in_fit, normal=normal)
    if not can_refit_on_all(arrays):
        return candidates, None

    def refit() -> None:
        write_chosen_head(loaded, candidates, arrays, plan.model_dir, card, plan.command_line(), all_labels=True,
                          pool_features=pool_features, unreviewed=unreviewed, chosen=chosen, temper=temper,
                          unreviewed_in_fit=unreviewed_in_fit, normal=normal)

    return candidates, refit


def simple_answers_only(plan: RetrainPlan, groups: str, new_scores: Mapping[str, Any] | None, progress: Progress):
    """The simple answers' comparison for a trained network, whose held-out figures the trainer computed."""
    from inference.training.classifier_head import compare_candidates
    from inference.training.simple_answers import Score

    try:
        candidates, _ = compare_candidates(_backbone(plan), plan.data_dir, groups, progress=progress, kinds=())
    except ValueError as exc:
        raise RetrainError(f"cannot cross-validate the reviewed labels: {exc}") from None
    candidates.chosen = TRAINED
    if new_scores and isinstance(new_scores.get("accuracy"), (int, float)) and isinstance(new_scores.get("f1"), (int, float)):
        candidates.held_out[TRAINED] = Score(float(new_scores["accuracy"]), float(new_scores["f1"]))
    return candidates


def verdict_text(candidates) -> str:
    """One line: the chosen candidate against the best simple answer on every label (what decides, ADR 0072), held
    out and cross-validated."""
    def said(score: Any) -> str:
        return f"accuracy {score.accuracy:.3f}, macro F1 {score.f1:.3f}" if score is not None else "not scored"

    def fig(scores: Mapping[str, Any], key: str) -> str:
        return said(scores.get(key))

    g = candidates.groups
    pooled = getattr(candidates, "pooled", None)
    text = ""
    if pooled is not None and pooled.made:
        nested = "nested cross-validation, image by image," if g["rule"] == "none" else "nested group cross-validation"
        text = (f"on all {pooled.images} reviewed labels ({nested} on "
                f"{pooled.images - candidates.held_out_images}, the {candidates.held_out_images} held out): "
                f"{candidates.chosen} {said(pooled.new)} vs the best simple answer {said(pooled.simple)}; ")
    text += (f"{candidates.chosen} {fig(candidates.held_out, candidates.chosen)} vs best simple answer "
             f"{candidates.best_simple} {fig(candidates.held_out, candidates.best_simple)} on "
             f"{plural(candidates.held_out_images, 'held-out reviewed image')}")
    if pooled is not None and pooled.note:
        text += f" ({pooled.note})"
    cv_chosen = fig(candidates.cv, candidates.chosen) if candidates.chosen in candidates.cv else None
    text += (f"; {cv_said(g['folds'], g['groups'], g['rule'])}: "
             + (f"{candidates.chosen} {cv_chosen}, " if cv_chosen else "")
             + f"{candidates.best_simple} {fig(candidates.cv, candidates.best_simple)}")
    return ("the new version beats or ties the best simple answer: " if candidates.wins
            else "the new version loses to the best simple answer: ") + text
