"""A classifier version from a few dozen labels: the active backbone, frozen, with a new linear head.

Full transfer training of MemoryMamba on 218 reviewed magnetic tiles scored 0.355 on independent
tiles, below a constant answer (benchmarks/RESULTS.md): a few hundred images do not hold enough
signal to move a whole network. A linear head fitted on the frozen backbone's pooled features
(class-balanced logistic regression, averaged over the flip views the card asks the engine for)
needs seconds and uses only what the backbone already computes. The head is written into the
model's own two-layer head (first layer an exact pass-through, see ``write_linear_head``), so the
result is an ordinary MemoryMamba directory that the station loads and runs unchanged.

The second candidate needs no backbone: the same class-balanced logistic regression on the
184 texture features of ``inference.texture_features`` (what "label next" embeds with), written
as a ``texture_linear`` model. On magnetic tiles those features carry the classes far better than
the NEU backbone's pooled features (benchmarks/results/texture-head.md). The third, ``defect``,
fits the same regression on the small-defect statistics of ``inference.texture_features`` (own
aspect, up to 256 px, ADR 0027), also written as a ``texture_linear`` model; on magnetic tiles it
beats both (benchmarks/results/tiles-classifier.md).

``compare_candidates`` scores the candidates and the simple answers (majority, kNN, logistic
regression on thumbnails and on plain embeddings) by group-aware cross-validation inside the
reviewed training labels, then once on the held-out reviewed labels. The texture regression is a
candidate, never a simple answer: it is what the station registers when it wins.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch

from inference.checkpoints import LoadedModel, save_model
from inference.classifier_predict import resize_to_model_input, tta_views
from inference.imageio import read_image
from inference.models.memory_mamba import MemoryMamba
from inference.models.texture_linear import TextureLinear, feature_config
from inference.texture_features import FEATURE_SETS
from inference.training.classifier_data import class_folders
from inference.training.simple_answers import (
    FOLDS,
    SIMPLE_MODELS,
    Estimator,
    Score,
    assign_groups,
    best_name,
    cross_validated,
    fit_predict,
    group_folds,
    score,
    thumbnails,
)

HEAD_VIEWS = "flips"        # the new version's test-time augmentation; its features are averaged over these views
HEAD_C = (0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried for the head (chosen by group CV)
PASS_THROUGH_FLOOR = 8.0    # GELU(z) = z to float precision for z >= 8: the head's first layer shifts features above it
ABSENT_CLASS_BIAS = -30.0   # a class with no training image in a fold/fit is never predicted
# texture first: on a tie the cheapest version wins (texture features, then defect statistics, then a network)
CANDIDATE_KINDS = ("texture", "defect", "backbone")
FEATURE_KINDS = {"texture": "texture_linear", "defect": "defect_linear"}  # feature set -> candidate name stem


def embed(loaded: LoadedModel, paths: Sequence[Path], views: str = HEAD_VIEWS, batch: int = 32) -> np.ndarray:
    """(n_views, n, C) pooled backbone features of each image under each test-time view (eval mode)."""
    model, cfg = cast(MemoryMamba, loaded.model.eval()), loaded.config  # the backbone: a classifier network
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.no_grad():
        for s in range(0, len(paths), batch):
            arr = np.stack([resize_to_model_input(read_image(p, cfg.color_mode), cfg.img_size, cfg.in_chans)
                            for p in paths[s:s + batch]])
            vs = tta_views(torch.from_numpy(arr).to(device), views)
            feats = model.features(torch.cat(vs))[0]
            out.append(feats.view(len(vs), len(arr), -1).float().cpu().numpy())
    return np.concatenate(out, axis=1) if out else np.zeros((1, 0, 0), np.float32)


def texture_matrix(paths: Sequence[Path], features: str = "texture") -> np.ndarray:
    """(n, dim) feature vectors (``FEATURE_SETS[features]``) of image files, decoded as the engine decodes them (gray)."""
    dim, fn = FEATURE_SETS[features]
    out = np.empty((len(paths), dim), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = fn(read_image(path, "gray"))
    return out


@dataclass(frozen=True)
class LinearHead:
    """Class logits = features @ coef.T + intercept, over all classes of the data."""
    coef: np.ndarray       # (k, C)
    intercept: np.ndarray  # (k,)
    c: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(features @ self.coef.T + self.intercept, axis=1)


def fit_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int, c: float) -> LinearHead:
    """Class-balanced logistic regression on standardised features, folded back into raw-feature weights."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = features.mean(0), features.std(0) + 1e-6
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_BIAS)
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return LinearHead(coef, intercept, c)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit((features - mu) / sd, labels)
    w, b = lr.coef_, lr.intercept_
    if len(present) == 2:  # scikit-learn gives one row (logit of the second class): split it symmetrically
        w, b = np.vstack([-w[0] / 2, w[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
    for row, cls in enumerate(lr.classes_):
        coef[cls] = w[row] / sd
        intercept[cls] = b[row] - coef[cls] @ mu
    return LinearHead(coef, intercept, c)


def write_linear_head(loaded: LoadedModel, head: LinearHead, features: np.ndarray, classes: Sequence[str],
                      out: Path, card: dict[str, Any]) -> Path:
    """A MemoryMamba directory: the parent's backbone, a head computing exactly ``head`` on pooled features.

    The model's head is Linear(C, H) → GELU → Dropout → Linear(H, k). The first layer becomes an
    identity on the first C units plus a per-feature shift that puts every training feature at or
    above PASS_THROUGH_FLOOR, where GELU is the identity to float precision; the last layer holds
    the fitted weights, its bias compensating the shift. Needs H >= C (true of every preset).
    """
    cfg = dataclasses.replace(loaded.config, num_classes=len(classes))
    width, hidden = features.shape[1], cfg.head_hidden
    if hidden < width:
        raise ValueError(f"the head's hidden width {hidden} is below the feature width {width}: no pass-through")
    model = MemoryMamba(cfg)
    backbone = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"backbone weights do not fit (missing {missing}, unexpected {unexpected})")
    lo, hi = features.min(0), features.max(0)
    shift = PASS_THROUGH_FLOOR - lo + (hi - lo)  # a margin of one training range below the lowest seen value
    first, last = cast(torch.nn.Linear, model.head[0]), cast(torch.nn.Linear, model.head[3])
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:width, :width] = torch.eye(width)
        first.bias.zero_()
        first.bias[:width] = torch.from_numpy(shift).float()
        last.weight.zero_()
        last.weight[:, :width] = torch.from_numpy(head.coef).float()
        last.bias.copy_(torch.from_numpy(head.intercept - head.coef @ shift).float())
    card = {**card, "classes": list(classes), "test_time_augmentation": HEAD_VIEWS,
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    return save_model(out, loaded.name, model, cfg, card)


def write_texture_linear(features: np.ndarray, labels: np.ndarray, classes: Sequence[str], c: float, out: Path,
                         card: dict[str, Any], feature_set: str = "texture") -> Path:
    """A ``texture_linear`` directory: the training features' mean and scale, then the fitted regression
    on the standardised features (the same fit ``fit_linear_head`` makes under cross-validation)."""
    mu, sd = features.mean(0), features.std(0) + 1e-6
    head = fit_linear_head((features - mu) / sd, labels, len(classes), c)
    cfg = feature_config(feature_set, len(classes))
    model = TextureLinear(cfg)
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(mu).float())
        model.scale.copy_(torch.from_numpy(sd).float())
        model.linear.weight.copy_(torch.from_numpy(head.coef).float())
        model.linear.bias.copy_(torch.from_numpy(head.intercept).float())
    card = {**card, "classes": list(classes), "test_time_augmentation": "none",
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    return save_model(out, "texture_linear", model, cfg, card)


@dataclass
class Comparison:
    """Every candidate's group-CV score, the chosen head and the best simple answer on the held-out part."""
    classes: list[str]
    groups: dict[str, Any]
    cv: dict[str, Score]
    chosen: str
    best_simple: str
    held_out: dict[str, Score] = field(default_factory=dict)  # chosen and best simple answer
    held_out_images: int = 0

    @property
    def wins(self) -> bool:
        """The chosen head is at least as good as the best simple answer in accuracy and macro F1 (held out)."""
        return self.chosen in self.held_out and self.held_out[self.chosen].beats_or_ties(self.held_out[self.best_simple])

    def as_dict(self) -> dict[str, Any]:
        return {"cv": {k: v.as_dict() for k, v in self.cv.items()}, "groups": self.groups, "chosen": self.chosen,
                "best_simple": self.best_simple, "held_out_images": self.held_out_images,
                "held_out": {k: v.as_dict() for k, v in self.held_out.items()}, "wins": self.wins}


def split_items(root: Path, part: str, classes: Sequence[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Paths, class indices and class names of one part (train/ or val/) of an exported class-folder tree."""
    folders = class_folders(root / part) if (root / part).is_dir() else {}
    names = list(classes) if classes is not None else sorted(folders)
    paths = [p for name in names for p in folders.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in folders.get(name, [])], dtype=np.int64)
    return paths, labels, names


def head_name(c: float) -> str:
    return f"linear_head_C{c:g}"


def texture_name(c: float, features: str = "texture") -> str:
    return f"{FEATURE_KINDS[features]}_C{c:g}"


def candidate_features(name: str) -> str | None:
    """The feature set of a texture_linear candidate (``defect_linear_C1`` → defect), None for a backbone head."""
    return next((k for k, stem in FEATURE_KINDS.items() if name.startswith(stem + "_C")), None)


def candidate_c(name: str) -> float:
    """The regularisation strength in a candidate's name (``linear_head_C10``, ``texture_linear_C0.1``)."""
    return float(name.rpartition("_C")[2])


def compare_candidates(loaded: LoadedModel | None, root: Path, group_rule: str = "auto", seed: int = 0,
                       progress: Callable[[str, int, int], None] | None = None,
                       kinds: Sequence[str] = CANDIDATE_KINDS) -> tuple[Comparison, dict[str, np.ndarray]]:
    """Group-CV of the simple answers and of the candidates of ``kinds`` on root/train; held-out on root/val.

    ``kinds``: "texture" (linear on texture features), "defect" (linear on the small-defect
    statistics) and/or "backbone" (linear head on the frozen
    backbone of ``loaded``; skipped when ``loaded`` has none, e.g. a texture_linear version); empty:
    only the simple answers. Returns the comparison and the arrays a caller needs to write the
    chosen candidate (``train_features``: its training features, ``labels``, ``head_c``).
    """
    def tick(done: int) -> None:
        if progress:
            progress("candidates", done, 4)

    backbone = loaded if loaded is not None and hasattr(loaded.model, "features") else None
    paths, y, classes = split_items(root, "train")
    val_paths, y_val, _ = split_items(root, "val", classes)
    names = [p.name for p in paths]
    groups, rule = assign_groups(names, [classes[i] for i in y], group_rule)
    folds = group_folds(y, groups, FOLDS, seed)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {"thumbnail": (thumbnails(paths), thumbnails(val_paths))}
    tick(1)
    if backbone is not None:
        views, val_views = embed(backbone, paths), embed(backbone, val_paths)
        features["embedding"] = (views[0], val_views[0])
        tick(2)
    cv: dict[str, Score] = {}
    for kind, (x, _xv) in features.items():
        for model_name, make in SIMPLE_MODELS.items():
            if kind == "embedding" and model_name == "majority":
                continue  # the same constant answer as on thumbnails
            key = f"{kind}_{model_name}" if model_name != "majority" else "majority"
            def simple(tr: np.ndarray, te: np.ndarray, x: np.ndarray = x, make: Callable[[int], Estimator] = make) -> np.ndarray:
                return fit_predict(make, x[tr], y[tr], x[te])

            cv[key] = cross_validated(simple, y, folds, classes)
    best_simple = best_name(cv)
    # candidate name -> (training features, held-out features)
    inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for feature_set in FEATURE_KINDS:
        if feature_set in kinds:
            tex = (texture_matrix(paths, feature_set), texture_matrix(val_paths, feature_set))
            inputs.update({texture_name(c, feature_set): tex for c in HEAD_C})
    if "backbone" in kinds and backbone is not None:
        avg = (views.mean(0), val_views.mean(0))
        inputs.update({head_name(c): avg for c in HEAD_C})
    heads: dict[str, Score] = {}
    for name, (x, _xv) in inputs.items():
        c = candidate_c(name)
        def linear(tr: np.ndarray, te: np.ndarray, x: np.ndarray = x, c: float = c) -> np.ndarray:
            return fit_linear_head(x[tr], y[tr], len(classes), c).predict(x[te])

        heads[name] = cross_validated(linear, y, folds, classes)
    cv.update(heads)
    tick(3)
    chosen = best_name(heads) if heads else ""  # the first of equals: texture before backbone
    held_out: dict[str, Score] = {}
    if len(y_val):
        kind, _, model_name = best_simple.partition("_")
        x, xv = features[kind if model_name else "thumbnail"]
        held_out[best_simple] = score(y_val, fit_predict(SIMPLE_MODELS[model_name or "majority"], x, y, xv), classes)
        if chosen:
            x, xv = inputs[chosen]
            held_out[chosen] = score(y_val, fit_linear_head(x, y, len(classes), candidate_c(chosen)).predict(xv), classes)
    arrays: dict[str, np.ndarray] = {}
    if chosen:
        arrays = {"train_features": inputs[chosen][0], "head_c": np.array(candidate_c(chosen)), "labels": y}
    tick(4)
    n_groups = len(set(groups))
    return Comparison(classes, {"rule": rule, "groups": n_groups, "folds": len(folds)}, cv, chosen, best_simple,
                      held_out, int(len(y_val))), arrays


def write_chosen_head(loaded: LoadedModel | None, comparison: Comparison, arrays: dict[str, np.ndarray], out: Path,
                      parent_card: dict[str, Any], command: str) -> Path:
    """Refit the chosen candidate on every training image and write it as a model directory with its card."""
    features, labels = arrays["train_features"], arrays["labels"]
    c = float(arrays["head_c"])
    feature_set = candidate_features(comparison.chosen)
    texture = feature_set is not None
    # a texture_linear version owes nothing to the parent's network: only the task's facts carry over
    keep = ("family", "task") if texture else (
        "model", "family", "task", "input_size", "color_mode", "normalisation", "preset", "ablation", "licence", "paper")
    held = comparison.held_out.get(comparison.chosen)
    if texture:
        training = {"initialisation": f"none: a linear layer on the {feature_set} features (inference.texture_features)",
                    "head": {"kind": "class-balanced logistic regression on standardised features", "C": c,
                             "features": f"{features.shape[1]} {feature_set} features of the gray image",
                             "selected_by": "group cross-validation"}, "seconds": None}
    else:
        training = {"initialisation": "frozen backbone of the parent, linear head fitted on its pooled features",
                    "head": {"kind": "class-balanced logistic regression", "C": c, "features": f"pooled backbone "
                             f"features averaged over the '{HEAD_VIEWS}' test-time views", "selected_by": "group cross-validation"},
                    "seconds": None}
    card = {
        **{k: parent_card[k] for k in keep if k in parent_card},
        "data": {"train_images": int(len(labels)), "val_images": comparison.held_out_images,
                 "train_counts": {c: int(n) for c, n in zip(comparison.classes, np.bincount(labels, minlength=len(comparison.classes)))}},
        "training": training,
        "command": command,
        "init_model": {"path": str(loaded.path) if loaded is not None and loaded.path else None,
                       "metrics": parent_card.get("metrics", {})},
        "metrics": {"val": {**held.as_dict(), "count": comparison.held_out_images}} if held else {},
    }
    if feature_set is not None:
        return write_texture_linear(features, labels, comparison.classes, c, out, card, feature_set)
    if loaded is None:
        raise ValueError("a frozen-backbone head needs the parent model")
    head = fit_linear_head(features, labels, len(comparison.classes), c)
    return write_linear_head(loaded, head, features, comparison.classes, out, card)
