"""The ``bank`` texture descriptors (LBP, Gabor, GLCM, band-pass) and the few-label candidates built on them."""
from __future__ import annotations

import numpy as np
import pytest

from inference.texture_bank import BANK_DIM, LBP_BINS, LBP_RADII, bank_vector
from inference.texture_features import FEATURE_SETS, image_defect_bank


def _noise(seed: int, h: int = 96, w: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.1 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)


def _stripes(seed: int, vertical: bool, h: int = 96, w: int = 120) -> np.ndarray:
    img = _noise(seed, h, w) * 0.3 + 0.35
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(img + 0.2 * np.sin(2 * np.pi * (xx if vertical else yy) / 8.0), 0, 1).astype(np.float32)


def test_bank_has_its_length_is_finite_and_ignores_exposure() -> None:
    img = _noise(0)
    v = bank_vector(img)
    assert v.shape == (BANK_DIM,) and np.isfinite(v).all()
    assert FEATURE_SETS["bank"][0] == BANK_DIM and FEATURE_SETS["defect_bank"][0] == BANK_DIM + FEATURE_SETS["defect"][0]
    # brighter and more contrasted: the image is standardised by its own median and spread first
    np.testing.assert_allclose(bank_vector(np.clip(img * 1.2 + 0.05, 0, 1)), v, atol=0.05)
    # a flat image and a large one are fine (no division by zero, the side is bounded)
    assert np.isfinite(bank_vector(np.full((40, 50), 0.3, np.float32))).all()
    assert bank_vector(_noise(1, 700, 300)).shape == (BANK_DIM,)
    assert image_defect_bank(np.stack([img] * 3, -1)).shape == (FEATURE_SETS["defect_bank"][0],)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 3), (3, 40), (40, 4), (1, 500)])
def test_a_tiny_or_thin_image_gets_a_finite_vector_instead_of_an_error(shape: tuple[int, int]) -> None:
    """A 3 x 3 image raised ValueError in the co-occurrence matrix (a slice past the image's side wrapped
    around), so "label next"'s counter, a retraining and the default NEU classifier stopped on it."""
    v = image_defect_bank(_noise(2, *shape))
    assert v.shape == (FEATURE_SETS["defect_bank"][0],) and np.isfinite(v).all()


def test_lbp_histograms_are_rotation_invariant_and_tell_textures_apart() -> None:
    img = _noise(2, 100, 100)
    lbp = slice(0, len(LBP_RADII) * (LBP_BINS + 3))
    a, b = bank_vector(img)[lbp], bank_vector(np.ascontiguousarray(np.rot90(img)))[lbp]
    np.testing.assert_allclose(a, b, atol=0.02)  # riu2 codes: a quarter turn only moves the neighbours round
    stripes = bank_vector(_stripes(3, vertical=True))[lbp]
    assert np.abs(stripes - a).max() > 0.05     # a periodic texture and noise differ


def test_gabor_energies_see_the_stripes_direction() -> None:
    """Vertical and horizontal stripes: same LBP (rotation-invariant), different Gabor orientation energies."""
    from inference.texture_bank import GABOR_ORIENTATIONS

    gabor = len(LBP_RADII) * (LBP_BINS + 3)
    v, h = bank_vector(_stripes(4, vertical=True)), bank_vector(_stripes(4, vertical=False))
    # the 8-px wavelength's orientation energies (second scale): theta 0 and 90 degrees swap
    second = gabor + GABOR_ORIENTATIONS + 4
    ev, eh = v[second:second + GABOR_ORIENTATIONS], h[second:second + GABOR_ORIENTATIONS]
    assert np.argmax(ev) != np.argmax(eh)
    assert abs(int(np.argmax(ev)) - int(np.argmax(eh))) == GABOR_ORIENTATIONS // 2


def test_candidates_choose_by_group_cv_and_augmented_ones_train_on_the_views() -> None:
    from inference.training.classifier_head import (
        AUGMENT_VIEWS,
        candidate_augmented,
        candidate_c,
        candidate_features,
        choose_candidate,
        fit_candidate,
        light_candidates,
    )
    from inference.training.simple_answers import group_folds

    rng = np.random.default_rng(0)
    n = 40
    y = np.arange(n) % 2
    informative = rng.standard_normal((n, 5)) + 3.0 * y[:, None]  # separates the classes
    useless = rng.standard_normal((n, 5))
    sets = {"texture": {"none": useless}, "bank": {"none": informative, **{v: informative + 0.01 for v in AUGMENT_VIEWS}}}
    cands = light_candidates(sets, (1.0,), ("none", "flips"), ("balanced",))
    assert list(cands) == ["texture_linear_C1", "bank_linear_C1", "bank_linear_flips_C1"]  # texture has no views
    flips = cands["bank_linear_flips_C1"]
    assert candidate_features(flips.name) == "bank" and candidate_augmented(flips.name) and candidate_c(flips.name) == 1.0
    assert not candidate_augmented("bank_linear_C1") and candidate_features("defect_bank_linear_C10") == "defect_bank"
    x, labels = flips.rows(np.array([0, 1, 2]), y)
    assert x.shape == (12, 5) and labels.tolist() == [0, 1, 0] * 4
    folds = group_folds(y, [f"g{i % 5}" for i in range(n)], 5, 0)
    out_of_fold: dict[str, np.ndarray] = {}
    second = group_folds(y, [f"g{i % 5}" for i in range(n)], 5, 1)
    chosen, cv = choose_candidate(cands, y, [folds, second], ["a", "b"], out_of_fold)
    assert chosen == "bank_linear_C1"  # informative beats useless; the tie with its augmented twin keeps the cheaper
    for name, cand in cands.items():  # the first fold set's predictions, as a fresh fit per fold gives them (ACC)
        want = np.empty(n, np.int64)
        for tr, te in folds:
            want[te] = fit_candidate(cand, y, 2, tr).predict(cand.views["none"][te])
        np.testing.assert_array_equal(out_of_fold[name], want)
    assert cv["bank_linear_C1"].accuracy > 0.9 and cv["texture_linear_C1"].accuracy < 0.8
    assert (fit_candidate(flips, y, 2).predict(informative) == y).mean() > 0.9


def test_a_mix_candidate_carries_the_labels_class_mix_in_its_biases() -> None:
    from inference.training.classifier_head import candidate_mix, fit_candidate, light_candidates

    rng = np.random.default_rng(1)
    y = np.array([0] * 30 + [1] * 10)
    x = rng.standard_normal((40, 3))  # nothing to learn: the biases decide
    cands = light_candidates({"bank": {"none": x}}, (1.0,), ("none",))
    assert list(cands) == ["bank_linear_C1", "bank_linear_mix_C1"] and candidate_mix("bank_linear_mix_C1")
    plain, mix = fit_candidate(cands["bank_linear_C1"], y, 2), fit_candidate(cands["bank_linear_mix_C1"], y, 2)
    np.testing.assert_allclose(plain.coef, mix.coef)
    shift = (mix.intercept - plain.intercept)
    np.testing.assert_allclose(shift[0] - shift[1], np.log(3.0), atol=1e-9)  # 30 vs 10 labels
    assert (mix.predict(x) == 0).mean() > (plain.predict(x) == 0).mean()


def test_a_shrinkage_discriminant_is_a_candidate_named_without_a_c_and_predicts_as_sklearn() -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from inference.training.classifier_head import (
        candidate_c,
        candidate_features,
        candidate_head,
        candidate_mix,
        fit_candidate,
        fit_lda_head,
        light_candidates,
    )

    rng = np.random.default_rng(2)
    y = np.arange(60) % 3
    x = rng.standard_normal((60, 40)) * rng.uniform(0.5, 20.0, 40) + 2.0 * np.eye(3)[y] @ rng.standard_normal((3, 40))
    cands = light_candidates({"defect_bank": {"none": x}}, (0.01, 1.0), ("none",), ("balanced", "mix"), ("lr", "lda"))
    assert list(cands) == ["defect_bank_linear_C0.01", "defect_bank_linear_C1", "defect_bank_linear_lda",
                           "defect_bank_linear_mix_C0.01", "defect_bank_linear_mix_C1", "defect_bank_linear_mix_lda"]
    lda = cands["defect_bank_linear_mix_lda"]
    assert candidate_head(lda.name) == "lda" and candidate_mix(lda.name) and candidate_c(lda.name) == 0.0
    assert candidate_features(lda.name) == "defect_bank" and candidate_head("defect_bank_linear_C1") == "lr"
    head = fit_lda_head(x, y, 4)  # a fourth class without images is never predicted
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=np.full(3, 1 / 3)).fit(z, y)
    np.testing.assert_allclose((x @ head.coef.T + head.intercept)[:, :3], ref.decision_function(z), rtol=1e-6, atol=1e-6)
    assert head.intercept[3] < -10 and (head.predict(x) == ref.predict(z)).all()
    assert (fit_candidate(cands["defect_bank_linear_lda"], y, 3).predict(x) == y).mean() > 0.9
    two = fit_lda_head(x[y < 2], y[y < 2], 2)  # two classes: sklearn's single row split symmetrically
    ref2 = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=[0.5, 0.5]).fit(z[y < 2], y[y < 2])
    np.testing.assert_array_equal(two.predict(x[y < 2]), ref2.predict(z[y < 2]))


def test_the_pool_prior_is_the_heads_predicted_class_mix_add_one_smoothed() -> None:
    from inference.training.classifier_head import (
        ABSENT_CLASS_BIAS,
        fit_linear_head,
        pool_prior_head,
        pool_shares,
        with_label_mix,
    )

    rng = np.random.default_rng(3)
    y = np.arange(30) % 3              # classes 0, 1, 2 with ten images each; class 3 has none
    centres = 4.0 * np.eye(4)[:, :3]
    x = rng.standard_normal((30, 3)) + centres[y]
    head = fit_linear_head(x, y, 4, 1.0)
    pool = rng.standard_normal((16, 3)) + centres[[0] * 12 + [1] * 4]   # a pool of mostly class 0, no class 2
    q = pool_shares(head, pool)
    np.testing.assert_allclose(q, (np.bincount(head.predict(pool), minlength=4) + 1) / 20)
    assert q.sum() == pytest.approx(1.0) and (q > 0).all() and q[0] > q[1] > q[2]
    shifted = pool_prior_head(head, pool)
    np.testing.assert_allclose(shifted.coef, head.coef)
    shift = shifted.intercept - head.intercept
    np.testing.assert_allclose(shift[:3], np.log(q[:3]) - np.log(1 / 3))  # a balanced fit's prior was equal shares
    assert shift[3] == 0.0 and shifted.intercept[3] == ABSENT_CLASS_BIAS  # a class never fitted stays never predicted
    labels = np.array([0] * 20 + [1] * 5 + [2] * 5)  # a mix head: its fitted prior (label shares) is what q replaces
    skewed = with_label_mix(head, labels)
    np.testing.assert_allclose(pool_prior_head(skewed, pool, labels).intercept, shifted.intercept, atol=1e-9)
    empty = pool_prior_head(head, pool[:0]).intercept - head.intercept  # no pool: equal shares, nothing moves
    assert np.ptp(empty[:3]) == pytest.approx(0.0) and empty[3] == 0.0


def test_adjusted_classify_and_count_undoes_the_heads_confusion_and_the_folder_counts_the_labels() -> None:
    """``--class-mix acc-folder`` (accmix.md): a head that calls 30 % of class 0 class 1 over-counts class 1 in
    the pool; its out-of-fold confusion undoes that, and the folder's mix adds the reviewed labels back."""
    from inference.training.classifier_head import (
        FolderMix,
        adjusted_shares,
        fit_linear_head,
        folder_shares,
        pool_shares,
    )

    y = np.array([0] * 50 + [1] * 50)
    oof = np.array([0] * 35 + [1] * 15 + [1] * 50)
    q = adjusted_shares(np.array([0.63, 0.37]), y, oof, 200)   # a pool of 90 / 10 seen through that confusion
    np.testing.assert_allclose(q, [0.9, 0.1], atol=0.01)   # (the confusion rows are add-one smoothed)
    perfect = adjusted_shares(np.array([0.63, 0.37]), y, y, 200)   # a head without errors: the count itself
    assert perfect[0] == pytest.approx(0.63, abs=0.02)
    # a class without labels maps to itself; no class is driven to zero (add-one over the pool)
    three = adjusted_shares(np.array([0.5, 0.5, 0.0]), y, oof, 100)
    assert (three > 0).all() and three.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(folder_shares(np.array([0.9, 0.1]), np.array([50, 50]), 200), [230 / 300, 70 / 300])
    np.testing.assert_allclose(folder_shares(np.array([0.9, 0.1]), np.array([4]), 0), [1.0, 0.0])

    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 2)) + 3.0 * np.eye(2)[y]
    head = fit_linear_head(x, y, 2, 1.0)
    pool = rng.standard_normal((40, 2)) + 3.0 * np.eye(2)[[0] * 36 + [1] * 4]
    mix = FolderMix(y, head.predict(x), np.bincount(y, minlength=2), 40)
    want = folder_shares(adjusted_shares(pool_shares(head, pool), y, head.predict(x), 40), np.array([50, 50]), 40)
    np.testing.assert_allclose(mix.estimate(head, pool), want)


def test_labels_chosen_by_label_next_do_not_correct_their_class_count() -> None:
    """ADR 0049: the out-of-fold errors of labels "label next" chose (the ones the head was unsure of) are not the
    folder's: a class whose labels it all chose is counted as predicted, one it chose none of as before, and a
    class with half of them halfway."""
    from inference.training.classifier_head import FolderMix, adjusted_shares

    y = np.array([0] * 50 + [1] * 50)
    oof = np.array([0] * 35 + [1] * 15 + [1] * 50)
    seen = np.array([0.63, 0.37])
    np.testing.assert_array_equal(adjusted_shares(seen, y, oof, 200, np.ones(2)), adjusted_shares(seen, y, oof, 200))
    plain = adjusted_shares(seen, y, oof, 200, np.zeros(2))
    np.testing.assert_allclose(plain, (seen * 200 + 1) / 202)   # no correction: the count, add-one smoothed
    half = adjusted_shares(seen, y, oof, 200, np.array([0.5, 1.0]))
    assert plain[0] < half[0] < adjusted_shares(seen, y, oof, 200)[0]

    mix = FolderMix(y, oof, np.array([50, 50]), 40, chosen=np.array([50, 0]))
    np.testing.assert_allclose(mix.trust, [0.0, 1.0])
    np.testing.assert_allclose(FolderMix(y, oof, np.array([50, 0]), 40, chosen=np.array([80, 3])).trust, [0.0, 1.0])
    assert FolderMix(y, oof, np.array([50, 50]), 40).trust is None


def test_the_folder_mix_is_tempered_as_far_as_label_next_chose_the_labels() -> None:
    """benchmarks/results/temper.md: q ** (1 - 0.5 x the share of labels "label next" chose), renormalised; untouched
    (to the bit) where it chose none, where the sources are unknown, or with ``--class-mix acc-folder-full``."""
    from inference.training.classifier_head import FolderMix, fit_linear_head

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (60, 3)), rng.normal(2, 1, (20, 3))])
    y = np.array([0] * 60 + [1] * 20)
    head = fit_linear_head(x, y, 2, 1.0)
    pool = np.concatenate([rng.normal(0, 1, (90, 3)), rng.normal(2, 1, (10, 3))])
    counts, oof = np.bincount(y, minlength=2), head.predict(x)

    def given(mix: FolderMix) -> np.ndarray:   # the shares the head is given: the estimate, tempered
        return mix.tempered(mix.estimate(head, pool))
    full = given(FolderMix(y, oof, counts, 100))
    assert FolderMix(y, oof, counts, 100).temper == 1.0
    np.testing.assert_array_equal(given(FolderMix(y, oof, counts, 100, chosen=np.zeros(2, int))), full)
    all_chosen = FolderMix(y, oof, counts, 100, chosen=counts)
    assert all_chosen.temper == 0.5
    q = given(all_chosen)
    untempered = FolderMix(y, oof, counts, 100, chosen=counts, temper_max=0.0)
    assert untempered.temper == 1.0
    np.testing.assert_allclose(q, np.sqrt(given(untempered)) / np.sqrt(given(untempered)).sum())
    assert q.sum() == pytest.approx(1.0) and q[0] < given(untempered)[0]   # towards equal classes
    assert FolderMix(y, oof, counts, 100, chosen=np.array([40, 0])).temper == pytest.approx(0.75)   # half the labels
