"""The retrain command's classifier candidates and the simple answers they must beat (runs in the retrain process).

A retrained classifier is registered only if, on the held-out reviewed labels, it is at least as
good in accuracy and macro F1 as the best simple answer fitted on the same training labels (the
simple answer chosen by group-aware cross-validation). See docs/retraining.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from app.services.retraining import RetrainError, RetrainPlan

Progress = Callable[[str, int, int], None]
TRAINED = "trained_network"


def classifier_method(plan: RetrainPlan, asked: str) -> str:
    """'head' (frozen backbone + linear head) or 'train'; auto takes the head when an active version starts the run."""
    if plan.family != "classifier":
        return "train"
    has_backbone = "--init" in plan.train_args
    if asked == "head" and not has_backbone:
        raise RetrainError("--method head needs an active classifier version to take the backbone from "
                           "(and no --from-scratch), or --train-args \"--init DIR\"")
    return "head" if asked == "head" or (asked == "auto" and has_backbone) else "train"


def _parent(plan: RetrainPlan):
    from inference.checkpoints import CheckpointError, load_model

    if plan.parent is None:
        return None
    try:
        return load_model(plan.parent.checkpoint_path, family="classifier")
    except CheckpointError as exc:
        raise RetrainError(f"the active classifier cannot be read: {exc}") from None


def backbone_dir(plan: RetrainPlan) -> Path | None:
    """The model directory the run starts from: the last ``--init`` of its train arguments.

    That is the active version's, unless ``--train-args "--init DIR"`` names another one (a
    pretrained backbone, docs/pretraining.md): argparse lets the last one win, and so does this.
    """
    args = list(plan.train_args)
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--init"]
    return Path(found[-1]) if found else None


def head_version(plan: RetrainPlan, groups: str, progress: Progress):
    """Compare the heads and simple answers, then write the chosen head into ``plan.model_dir``."""
    from inference.checkpoints import CheckpointError, load_model
    from inference.training.classifier_head import compare_candidates, write_chosen_head

    start = backbone_dir(plan)
    if start is None:
        raise RetrainError("the linear head needs an active classifier (or --train-args \"--init DIR\") to start from")
    try:
        loaded = load_model(start, family="classifier")
    except CheckpointError as exc:
        raise RetrainError(f"the backbone to start from cannot be read: {exc}") from None
    try:
        candidates, arrays = compare_candidates(loaded, plan.data_dir, groups, progress=progress)
    except ValueError as exc:
        raise RetrainError(f"cannot cross-validate the reviewed labels: {exc}") from None
    # a pretrained backbone's card describes a backbone ("task", "kind"): the new version is a classifier
    card = {k: v for k, v in loaded.card.items() if k != "task"} if loaded.card.get("kind") else loaded.card
    write_chosen_head(loaded, candidates, arrays, plan.model_dir, card, plan.command_line())
    return candidates


def simple_answers_only(plan: RetrainPlan, groups: str, new_scores: Mapping[str, Any] | None, progress: Progress):
    """The simple answers' comparison for a trained network, whose held-out figures the trainer computed."""
    from inference.training.classifier_head import compare_candidates
    from inference.training.simple_answers import Score

    try:
        candidates, _ = compare_candidates(_parent(plan), plan.data_dir, groups, progress=progress)
    except ValueError as exc:
        raise RetrainError(f"cannot cross-validate the reviewed labels: {exc}") from None
    candidates.cv = {k: v for k, v in candidates.cv.items() if not k.startswith("linear_head")}
    candidates.held_out = {k: v for k, v in candidates.held_out.items() if k == candidates.best_simple}
    candidates.chosen = TRAINED
    if new_scores and isinstance(new_scores.get("accuracy"), (int, float)) and isinstance(new_scores.get("f1"), (int, float)):
        candidates.held_out[TRAINED] = Score(float(new_scores["accuracy"]), float(new_scores["f1"]))
    return candidates


def verdict_text(candidates) -> str:
    """One line: the chosen candidate against the best simple answer, cross-validated and held out."""
    def fig(scores: Mapping[str, Any], key: str) -> str:
        s = scores.get(key)
        return f"accuracy {s.accuracy:.3f}, macro F1 {s.f1:.3f}" if s is not None else "not scored"

    g = candidates.groups
    text = (f"{candidates.chosen} {fig(candidates.held_out, candidates.chosen)} vs best simple answer "
            f"{candidates.best_simple} {fig(candidates.held_out, candidates.best_simple)} on "
            f"{candidates.held_out_images} held-out reviewed image(s)")
    cv_chosen = fig(candidates.cv, candidates.chosen) if candidates.chosen in candidates.cv else None
    text += (f"; group cross-validation ({g['folds']} folds over {g['groups']} groups by {g['rule']}): "
             + (f"{candidates.chosen} {cv_chosen}, " if cv_chosen else "")
             + f"{candidates.best_simple} {fig(candidates.cv, candidates.best_simple)}")
    return ("the new version beats or ties the best simple answer: " if candidates.wins
            else "the new version loses to the best simple answer: ") + text
