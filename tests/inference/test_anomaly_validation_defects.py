"""The validation-only structural defects: they change the image only inside their mask, the mask
covers only what visibly changed, and they remove or move structure rather than add a new texture."""
import numpy as np

from inference.training.anomaly_data import synthesize_missing, synthesize_shifted


def _rings(n: int = 4, s: int = 64) -> np.ndarray:
    """Aligned parts: bright concentric rings on a dark disc, like a bottle seen from above."""
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
    r = np.hypot(yy, xx)
    img = 0.15 + 0.7 * (np.abs(np.sin(r / 3.0)) > 0.8)
    return np.repeat(img[None, None].astype(np.float32), n, 0).repeat(3, 1)


def test_missing_changes_only_masked_pixels_and_flattens_structure():
    batch = _rings()
    out, masks = synthesize_missing(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and masks.shape == (4, 64, 64)
    changed = np.abs(out - batch).max(1) > 0.02
    assert np.array_equal(changed, masks)
    assert masks.any(axis=(1, 2)).all()
    # structure removed: inside the mask the fill is smoother than the rings it replaced
    for i in range(len(batch)):
        m = masks[i]
        assert out[i][:, m].std() < batch[i][:, m].std()


def test_missing_on_a_flat_image_changes_nothing():
    flat = np.full((2, 1, 32, 32), 0.4, np.float32)
    out, masks = synthesize_missing(flat, np.random.default_rng(1))
    assert not masks.any()
    assert np.abs(out - flat).max() <= 0.02  # below what the mask counts as a change


def test_shifted_moves_the_image_own_content():
    batch = _rings(3)
    out, masks = synthesize_shifted(batch, np.random.default_rng(2))
    changed = np.abs(out - batch).max(1) > 0.02
    assert np.array_equal(changed, masks) and masks.any(axis=(1, 2)).all()
    # no new values: every output pixel is a value of the part itself
    assert set(np.unique(out)) <= set(np.unique(batch))


def test_same_seed_same_defects():
    batch = _rings(2)
    a = synthesize_shifted(batch, np.random.default_rng(5))
    b = synthesize_shifted(batch, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_validation_set_adds_kinds_without_changing_the_others():
    from inference.training.anomaly_bank import validation_set

    held = _rings(3)
    base = validation_set(held, seed=0)
    more = validation_set(held, seed=0, extra=("band", "missing", "shifted"))
    assert set(base) == {"good", "small", "large"}
    assert set(more) == {"good", "small", "large", "band", "missing", "shifted"}
    for kind in ("small", "large"):
        assert np.array_equal(base[kind][0], more[kind][0]) and np.array_equal(base[kind][1], more[kind][1])
    for kind in ("missing", "shifted"):
        imgs, masks = more[kind]
        assert len(imgs) == len(masks) > 0 and masks.any(axis=(1, 2)).all()


def test_the_statistics_term_is_chosen_on_structural_kinds_too():
    from inference.training.anomaly_stats import TERMS

    for term in TERMS.values():
        assert {"small", "large", "missing", "shifted"} <= set(term.kinds)


def test_a_kind_that_changed_no_held_out_image_is_left_out_and_said():
    """A session-49 audit: an empty kind reached ``validation_maps`` and training ended in torch.cat's "expected a
    non-empty list of Tensors"; it is left out of the set, skipped with a line, and with no kind left a ValueError."""
    import pytest

    from inference.training.anomaly_bank import validation_kinds, validation_set

    flat = np.full((1, 1, 32, 32), 0.4, np.float32)
    val = validation_set(flat, seed=0, extra=("missing", "shifted"))
    assert {"good", "small", "large"} <= set(val) and not {"missing", "shifted"} & set(val)
    said: list[str] = []
    assert validation_kinds(val, ("small", "missing"), said.append) == ("small",)
    assert said == ["validation: a synthetic 'missing' defect changed none of the 1 held-out good image(s); "
                    "the rule averages over small"]
    with pytest.raises(ValueError, match="no synthetic defect changed any of the 1 held-out good image"):
        validation_kinds(val, ("missing", "shifted"), said.append)
