"""The retrained feature head's dominant class learnt from the unreviewed pool too (inference.training.unreviewed_fit,
benchmarks/results/pu.md): the gradient agrees with a numerical one, weight 0 is the plain fit, no dominant class
changes nothing, and a free surface shown only by the pool moves the decision where the labels alone could not."""
from __future__ import annotations

import numpy as np
import pytest

from inference.training.classifier_head import ABSENT_CLASS_BIAS, fit_linear_head
from inference.training.unreviewed_fit import dominant_class, fit_with_unreviewed


def _toy(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 0 "free" labelled only near (0, 0); the pool holds free parts spread far along the first axis (a lighting
    the labels do not cover) and a few of class 1, labelled near (0, 3)."""
    rng = np.random.default_rng(seed)
    free = rng.normal(0, 0.3, (12, 2))
    defect = rng.normal(0, 0.3, (12, 2)) + [0.0, 3.0]
    x = np.vstack([free, defect])
    y = np.repeat([0, 1], 12)
    pool = np.vstack([rng.normal(0, 0.3, (90, 2)) + np.c_[rng.uniform(2, 6, 90), np.full(90, 2.1)],
                      rng.normal(0, 0.3, (10, 2)) + [0.0, 3.0]])
    return x, y, pool


def test_dominant_class_needs_half_the_pool_and_a_label() -> None:
    labels = np.array([0, 1, 2])
    assert dominant_class(np.array([0.6, 0.3, 0.1]), labels) == 0
    assert dominant_class(np.array([0.4, 0.35, 0.25]), labels) is None   # six even NEU classes: none dominates
    assert dominant_class(np.array([0.1, 0.1, 0.1, 0.7]), labels) is None   # the dominant class has no label
    # only a class the project calls not a defect: a weak head's estimate named `break` (pu.md, 10 per class)
    assert dominant_class(np.array([0.6, 0.3, 0.1]), labels, allowed={1}) is None
    assert dominant_class(np.array([0.3, 0.6, 0.1]), labels, allowed={1}) == 1


def test_weight_zero_or_no_dominant_class_is_the_plain_fit() -> None:
    x, y, pool = _toy()
    plain = fit_linear_head(x, y, 3, 10.0)
    # weight 0 (label next chose every label); a pool mostly of a class without labels
    for shares, weight in ((np.array([0.9, 0.05, 0.05]), 0.0), (np.array([0.2, 0.2, 0.6]), 0.5)):
        head, d = fit_with_unreviewed(x, y, 3, 10.0, pool, shares, weight)
        assert d is None
        np.testing.assert_array_equal(head.coef, plain.coef)
        np.testing.assert_array_equal(head.intercept, plain.intercept)


def test_a_surface_only_the_pool_shows_is_learnt_as_the_dominant_class() -> None:
    x, y, pool = _toy()
    far_free = np.c_[np.linspace(2, 6, 20), np.full(20, 2.1)]
    plain = fit_linear_head(x, y, 2, 10.0)
    head, d = fit_with_unreviewed(x, y, 2, 10.0, pool, np.array([0.9, 0.1]), 0.5)
    assert d == 0
    assert (plain.predict(far_free) == 1).mean() > 0.9          # the labels alone call that surface a defect
    assert (head.predict(far_free) == 0).mean() > 0.9           # the pool taught it is free
    assert (head.predict(x) == y).mean() == 1.0                 # and the labelled parts are still right


def test_a_class_without_labels_stays_absent_and_the_gradient_is_right() -> None:
    from scipy import optimize

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 3], 8)
    x = rng.normal(size=(24, 4)) + y[:, None] * 0.4
    pool = rng.normal(size=(30, 4))
    captured = {}
    original = optimize.minimize

    def spy(fun, x0, *args, **kwargs):  # noqa: ANN001, ANN202 - scipy's signature
        if kwargs.get("method") == "L-BFGS-B" and not args and "args" not in kwargs:
            captured["risk"] = fun
        return original(fun, x0, *args, **kwargs)

    optimize.minimize = spy
    try:
        head, d = fit_with_unreviewed(x, y, 4, 10.0, pool, np.array([0.7, 0.2, 0.0, 0.1]), 0.5)
    finally:
        optimize.minimize = original
    assert d == 0 and head.intercept[2] == ABSENT_CLASS_BIAS and not head.coef[2].any()
    risk = captured["risk"]
    live = np.ones(4 * 5, bool)
    live[2 * 4:3 * 4] = False
    live[4 * 4 + 2] = False
    for seed in range(3):
        p = np.random.default_rng(seed).normal(0, 0.3, 4 * 5)
        p[~live] = 0.0
        value, grad = risk(p)
        numeric = optimize.approx_fprime(p, lambda q: risk(q)[0], 1e-6)
        assert np.abs(numeric - grad)[live].max() == pytest.approx(0.0, abs=1e-5)
        assert np.isfinite(value)


def test_a_mix_head_and_a_balanced_head_register_the_same_decisions(tmp_path) -> None:  # noqa: ANN001
    """Under the folder's mix a ``mix`` candidate is the same balanced fit (its labels' mix leaves with the prior):
    with the unreviewed pool in the fit both write the same class for every image, and the card says it was used."""
    import json

    from inference.checkpoints import load_model
    from inference.training.classifier_head import FolderMix, write_texture_linear

    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0, 1, (30, 184)), rng.normal(0.8, 1, (10, 184))]).astype(np.float32)
    y = np.repeat([0, 1], [30, 10])
    pool = np.vstack([rng.normal(0, 1.5, (70, 184)), rng.normal(0.8, 1, (10, 184))]).astype(np.float32)
    folder = FolderMix(y, y.copy(), np.bincount(y), 80)
    decisions = []
    for mix in (False, True):
        out = write_texture_linear(x, y, ["free", "crack"], 1.0, tmp_path / f"mix{mix}", {}, "texture", mix,
                                   pool_features=pool, folder=folder)
        card = json.loads((out / "card.json").read_text())
        assert card["training"]["pool_prior"]["folder"]["unreviewed_in_fit"]["class"] == "free"
        model = load_model(out, family="classifier").model
        import torch
        with torch.no_grad():
            decisions.append(model.linear(((torch.from_numpy(pool) - model.mean) / model.scale)).argmax(1).numpy())
    np.testing.assert_array_equal(decisions[0], decisions[1])


def test_the_card_says_when_the_pools_largest_class_is_a_defect(tmp_path) -> None:  # noqa: ANN001
    import json

    from inference.training.classifier_head import FolderMix, write_texture_linear

    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(0, 1, (20, 184)), rng.normal(0.8, 1, (20, 184))]).astype(np.float32)
    y = np.repeat([0, 1], 20)
    pool = rng.normal(0, 1, (60, 184)).astype(np.float32)   # mostly "crack" by any estimate
    folder = FolderMix(y, y.copy(), np.bincount(y), 60)
    out = write_texture_linear(x, y, ["crack", "free"], 1.0, tmp_path / "m", {}, "texture", pool_features=pool,
                               folder=folder, normal=("free", "good"))
    said = json.loads((out / "card.json").read_text())["training"]["pool_prior"]["folder"]["unreviewed_in_fit"]
    assert said["class"] is None and "'crack', is not one the project calls not a defect (free, good)" in said["note"]
