"""The tile defect model (texture kNN + self-referenced local terms + linear heads; ADR 0032):
the local terms, the model's save/load round trip and its training command's card."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from app.cli import main
from inference.anomaly_predict import predict_images
from inference.checkpoints import load_model
from inference.models.local_deviation import coarse, position_stats, raw_terms, standardised, term_names
from inference.models.tile_defect import (
    PRESETS,
    TileDefectConfig,
    combined_map,
    image_features,
    pixel_features,
    top_mean,
)
from inference.texture_bank import BANK_DIM
from inference.texture_features import image_bank
from inference.training.convert_magnetic_tile import convert
from tests.inference.test_texture_knn import _mk, _tiles
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def test_terms_ignore_exposure_and_find_a_dark_spot():
    rng = np.random.default_rng(0)
    img = _tiles(1, rng, s=64)[0, 0]
    a = raw_terms(img, (1.0, 2.0), ("dark", "bright", "rows", "edge"))
    b = raw_terms(img * 1.3 + 0.05, (1.0, 2.0), ("dark", "bright", "rows", "edge"))
    assert a.shape == (len(term_names((1.0, 2.0), ("dark", "bright", "rows", "edge"))), 64, 64)
    assert np.allclose(a, b, atol=1e-3)
    spot = img.copy()
    spot[30:34, 40:44] = 0.02
    dark = raw_terms(spot, (2.0,), ("dark",))[0]
    y, x = np.unravel_index(np.argmax(dark), dark.shape)
    assert 28 <= y <= 36 and 38 <= x <= 46


def test_how_the_image_logit_enters_the_map():
    pix = np.array([[-6.0, 0.0, 6.0]], np.float32)  # background, undecided, defect
    assert np.allclose(combined_map(pix, 3.0, 2.0, "sum"), pix + 6.0)  # lifts the background too
    assert np.allclose(combined_map(pix, 3.0, 2.0, "veto"), pix)  # a flagged tile keeps the pixel head's map
    assert np.allclose(combined_map(pix, -1.0, 2.0, "veto"), pix - 2.0)  # a cleared tile is dimmed
    gated = combined_map(pix, 3.0, 2.0, "gate", gate=0.0)
    assert gated[0, 0] - pix[0, 0] < 0.02  # the background of a flagged tile stays where the pixel head put it
    assert abs(gated[0, 1] - pix[0, 1] - 3.0) < 1e-5  # half the lift at the gate
    assert gated[0, 2] - pix[0, 2] > 5.9  # the defect is lifted almost fully
    assert np.allclose(combined_map(pix, -1.0, 2.0, "gate"), pix - 2.0)  # dims like veto
    logits = np.array([-1.0, 2.0])[:, None, None]
    assert combined_map(np.zeros((2, 4, 4), np.float32), logits, 1.0, "sum").shape == (2, 4, 4)
    with pytest.raises(ValueError, match="map_offset"):
        TileDefectConfig(map_offset="max")


def test_a_band_lights_the_rows_term():
    img = _tiles(1, np.random.default_rng(1), s=64)[0, 0]
    band = img.copy()
    band[:16] *= 0.6
    assert raw_terms(band, (1.0,), ("rows",))[0][:16].mean() > 3 * raw_terms(img, (1.0,), ("rows",))[0][:16].mean()


BAND_TERMS = ("rows", "cols", "level")


def test_band_terms_shape_and_exposure():
    img = _tiles(1, np.random.default_rng(3), s=64)[0, 0]
    a = raw_terms(img, (1.0,), BAND_TERMS, level_sigmas=(4.0, 8.0))
    assert a.shape == (len(term_names((1.0,), BAND_TERMS, (4.0, 8.0))), 64, 64) == (4, 64, 64)
    assert term_names((1.0,), BAND_TERMS, (4.0, 8.0)) == ["rows", "cols", "level_4", "level_8"]
    assert np.allclose(a, raw_terms(img * 1.3 + 0.05, (1.0,), BAND_TERMS, level_sigmas=(4.0, 8.0)), atol=1e-3)
    assert np.allclose(a[1], a[1][:1])  # a column profile: the same down every column
    with pytest.raises(ValueError, match="level_sigmas"):
        raw_terms(img, (1.0,), ("level",))


def test_a_vertical_band_lights_cols_and_level_where_rows_is_blind():
    """A vertical band of other brightness (``uneven``) is removed with the column medians the
    other terms are computed after; ``cols`` and ``level`` keep the column medians and see it."""
    img = _tiles(1, np.random.default_rng(1), s=64)[0, 0]
    band = img.copy()
    band[:, :16] *= 0.6

    def terms(x):
        return raw_terms(x, (1.0,), BAND_TERMS, level_sigmas=(4.0,))

    plain, banded = terms(img), terms(band)
    for t in (1, 2):  # cols, level_4: inside the band, well above the plain tile and above the rest of the tile
        assert banded[t][:, 2:14].mean() > 3 * plain[t][:, 2:14].mean()
        assert banded[t][:, 2:14].mean() > 3 * banded[t][:, 30:].mean()
    assert banded[0].mean() < 2 * plain[0].mean() + 0.05  # rows does not see a vertical band
    across = band.T.copy()  # the same band across the tile: rows and level see it
    assert terms(across)[0][2:14].mean() > 3 * plain[0][2:14].mean()
    assert terms(across)[2][2:14].mean() > 3 * plain[2][2:14].mean()


def test_band_terms_are_standardised_per_position_by_good_tiles():
    """Out-of-fold statistics of good tiles centre the new terms on good tiles and leave a band high."""
    from inference.models.tile_defect import TileDefect
    from inference.training.tile_defect_fit import fold_term_planes

    cfg = TileDefectConfig(**{**PRESETS["test_tiny"].__dict__, "local_terms": BAND_TERMS, "level_sigmas": (4.0,)})
    rng = np.random.default_rng(4)
    good = _tiles(40, rng)[:, 0]
    band = _tiles(1, rng)[0, 0]
    band[:, :8] *= 0.5
    images = np.concatenate([good, band[None]])
    z = fold_term_planes(TileDefect(cfg), images, [(np.arange(40), list(range(41)))])
    assert z.shape == (41, cfg.n_terms, cfg.map_size, cfg.map_size) and cfg.n_terms == 3
    assert abs(float(z[:40].mean())) < 0.1 and 0.6 < float(z[:40].std()) < 1.4
    m = cfg.map_size
    assert z[40, 1, :, : m // 4 - 1].mean() > 3.0 and z[40, 2, :, : m // 4 - 1].mean() > 3.0  # cols, level
    assert z[40, 1, :, : m // 4 - 1].mean() > z[:40, 1, :, : m // 4 - 1].max(axis=(1, 2)).max()


def test_position_statistics_standardise_good_planes():
    rng = np.random.default_rng(2)
    planes = rng.normal(3.0, 2.0, (50, 1, 16, 16)).astype(np.float32)
    mean, std = position_stats(coarse(planes, 4).sum(0), coarse(planes * planes, 4).sum(0), 50)
    z = np.stack([standardised(p, mean, std) for p in planes])
    assert abs(float(z.mean())) < 0.1 and 0.8 < float(z.std()) < 1.2


def test_config_checks_and_feature_sizes():
    cfg = PRESETS["test_tiny"]
    z = np.zeros((cfg.n_terms, cfg.map_size, cfg.map_size), np.float32)
    assert pixel_features(z, z[0], cfg).shape == (cfg.pixel_dim, cfg.map_size, cfg.map_size)
    assert top_mean(np.arange(16.0).reshape(1, 4, 4), 0.25, 0)[0] == pytest.approx(13.5)
    wide = TileDefectConfig(**{**cfg.__dict__, "local_terms": ("dark", "cols", "level"), "col_means": True})
    zw = np.random.default_rng(0).normal(size=(wide.n_terms, wide.map_size, wide.map_size)).astype(np.float32)
    f = pixel_features(zw, zw[0], wide)
    assert wide.n_terms == 2 + 1 + 2 and f.shape == (wide.pixel_dim, wide.map_size, wide.map_size)
    base = wide.n_terms + 1
    cols = f[base * (2 + len(wide.context_sigmas)) + base - 1]  # the kNN plane's column means
    assert np.allclose(cols, zw[0].mean(axis=0, keepdims=True))
    with pytest.raises(ValueError):
        TileDefectConfig(local_terms=("dark", "colour"))
    with pytest.raises(ValueError):
        TileDefectConfig(map_size=512)


def _source(root):
    """A magnetic-tile-like source: striated free tiles in six sessions, dark-spot and band defects."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1)):
        for s in range(1, 7):
            for i in range(n):
                img = (_tiles(1, rng)[0, 0] * 255).astype(np.uint8)
                name = f"exp{s}_num_{s * 100 + i}.png"
                assert cv2.imwrite(str(_mk(root / split / "free" / name)), img)
                assert cv2.imwrite(str(_mk(root / "masks" / split / "free" / name)), np.zeros((32, 32), np.uint8))
                for cls in ("blowhole", "uneven"):
                    img = _tiles(1, rng)[0, 0]
                    m = np.zeros((32, 32), np.uint8)
                    if cls == "blowhole":
                        y, x = rng.integers(8, 24, 2)
                        img[y - 2:y + 2, x - 2:x + 2] = 0.02
                        m[y - 2:y + 2, x - 2:x + 2] = 255
                    else:
                        img[:10] *= 0.5
                        m[:10] = 255
                    nm = f"exp{s}_num_{s * 100 + 50 + i}.png"
                    assert cv2.imwrite(str(_mk(root / split / cls / nm)), (img * 255).astype(np.uint8))
                    assert cv2.imwrite(str(_mk(root / "masks" / split / cls / nm)), m)
    return root


def test_train_tile_defect_learns_the_defects_and_round_trips(tmp_path, capsys):
    convert(_source(tmp_path / "mt"), tmp_path / "out", defects_by_split=True)
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "out"), "--out", str(out), "--arch", "tile_defect",
               "--preset", "test_tiny", "--threads", "1", "--cv-folds", "3"])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text())
    cv = card["cross_validation"]
    assert set(cv["by_grouping"]) == {"prefix", "series"}
    assert cv["image_auroc"] > 0.8  # obvious synthetic defects, sessions the heads never saw
    assert "Youden" in card["threshold"]["method"]
    assert card["metrics"]["test"]["image_auroc"] > 0.8
    loaded = load_model(out, family="anomaly")
    assert loaded.name == "tile_defect"
    img = cv2.imread(str(next((tmp_path / "out" / "test" / "blowhole").iterdir())), cv2.IMREAD_GRAYSCALE) / 255.0
    pred = predict_images(loaded, [img.astype(np.float32)])[0]
    assert pred.anomaly_map.shape == img.shape and np.isfinite(pred.score)
    # the image score is a probability (the queue's score filter and the label panel read 0-1),
    # and the card's threshold is in the same unit
    assert 0.0 <= pred.score <= 1.0 and 0.0 < card["threshold"]["image"] < 1.0


def test_the_image_head_can_read_the_texture_descriptors(tmp_path, capsys):
    """``image_bank`` (tile-image-bank.md): the image head's rows end with the tile's descriptors, and
    a model trained with them saves, loads and scores like any other (older cards keep their size)."""
    plain, bank = PRESETS["test_tiny"], PRESETS["test_tiny_bank"]
    assert bank.image_dim == plain.image_dim + BANK_DIM
    img = _tiles(1, np.random.default_rng(3))[0, 0]
    z = np.zeros((bank.n_terms, bank.map_size, bank.map_size), np.float32)
    rows = image_features(img, z, z[0], bank)
    assert rows.shape == (bank.image_dim,)
    assert np.allclose(rows[:plain.image_dim], image_features(img, z, z[0], plain))
    assert np.allclose(rows[plain.image_dim:], image_bank(img))
    convert(_source(tmp_path / "mt"), tmp_path / "out", defects_by_split=True)
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "out"), "--out", str(out), "--arch", "tile_defect",
               "--preset", "test_tiny_bank", "--threads", "1", "--no-evaluate"])
    assert rc == 0, capsys.readouterr().err
    loaded = load_model(out, family="anomaly")
    assert loaded.model.config.image_bank and loaded.model.image_w.shape == (bank.image_dim,)
    assert np.abs(loaded.model.image_w[plain.image_dim:].numpy()).sum() > 0  # the descriptors were fitted
    tile = cv2.imread(str(next((tmp_path / "out" / "test" / "blowhole").iterdir())), cv2.IMREAD_GRAYSCALE) / 255.0
    assert 0.0 <= predict_images(loaded, [tile.astype(np.float32)])[0].score <= 1.0


def test_tile_defect_refuses_data_without_labelled_defects(tmp_path, capsys):
    root = tmp_path / "cat"
    for s in range(1, 4):
        img = (_tiles(1, np.random.default_rng(s))[0, 0] * 255).astype(np.uint8)
        for i in range(2):
            assert cv2.imwrite(str(_mk(root / "train" / "good" / f"exp{s}_num_{i}.png")), img)
    rc = main(["train", "anomaly", "--data", str(root), "--out", str(tmp_path / "m"), "--arch", "tile_defect",
               "--preset", "test_tiny", "--threads", "1", "--no-evaluate"])
    assert rc != 0 and "labelled defects" in capsys.readouterr().err


def test_defects_outside_every_good_group_still_teach_the_heads(tmp_path, capsys):
    """``--group-by none`` (a station's names without sessions): every image is its own group, so no
    defect shares a good tile's group; each joins one by a hash of its name instead of being left out
    (before: all left out, and the fit stopped on a one-class regression)."""
    convert(_source(tmp_path / "mt"), tmp_path / "out", defects_by_split=True)
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "out"), "--out", str(out), "--arch", "tile_defect",
               "--preset", "test_tiny", "--threads", "1", "--cv-folds", "3", "--group-by", "none", "--no-evaluate"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "left out" not in printed.out
    assert json.loads((out / "card.json").read_text())["cross_validation"]["image_auroc"] > 0.8
