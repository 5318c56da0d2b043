"""Appearance-statistics term of the pattern anomaly model: agreement with the baseline,
leave-one-out statistics, checkpoints, a planted defect, the commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from app.cli import main
from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models.anomaly_maps import (
    appearance_deviation,
    appearance_features,
    fit_appearance,
    leave_one_out_deviation,
)
from inference.models.pattern_anomaly import PatternAnomaly, preset
from inference.models.pattern_anomaly_fit import with_terms
from inference.models.pixel_gaussian import PixelGaussian, PixelGaussianConfig
from inference.training.anomaly_stats import add_stats
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _tiny(**kw) -> PatternAnomaly:
    torch.manual_seed(0)
    return PatternAnomaly(preset("test_tiny", **kw)).eval()


def _parts(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    """Aligned 'parts': a fixed bright disc on a dark background, with mild noise (normalised, 3 channels)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float() * 2.0 - 1.0
    return disc.expand(n, 3, size, size) + 0.1 * torch.randn(n, 3, size, size, generator=g)


def _statted(model: PatternAnomaly, good: torch.Tensor, **settings) -> PatternAnomaly:
    out = with_terms(model, stats_fusion=settings.pop("stats_fusion", "sum"), **settings)
    out.fit_stats_statistics(good, 8)
    return out


def test_raw_term_is_the_baseline_map():
    good, x = _parts(6), _parts(2, seed=3)
    m = _statted(_tiny(), good)
    base = PixelGaussian(PixelGaussianConfig(image_size=24))
    base.fit(good)
    torch.testing.assert_close(m.raw_stats_map(x), base.anomaly_map(x))


def test_leave_one_out_matches_refitting_without_the_image():
    feats = appearance_features(_parts(5), 1.0, 5)
    loo = leave_one_out_deviation(feats, 0.02, 3)
    for i in range(3):
        mean, std = fit_appearance(torch.cat([feats[:i], feats[i + 1:]]), 0.02)
        torch.testing.assert_close(loo[i], appearance_deviation(feats[i:i + 1], mean, std)[0], rtol=1e-4, atol=1e-4)
    assert loo.shape == (3, 24, 24)


def test_stats_term_saved_and_loaded_identically(tmp_path):
    m = _statted(_tiny(), _parts(6), stats_fusion="max", stats_weight=2.0)
    x = _parts(2, seed=5)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    loaded = load_model(tmp_path / "m")
    assert loaded.config == m.config and loaded.config.stats_fusion == "max"
    for k in ("stats_mean", "stats_std", "stats_map_mean", "stats_map_std"):
        torch.testing.assert_close(getattr(loaded.model, k), getattr(m, k), rtol=0, atol=0)
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    torch.testing.assert_close(m.anomaly_map(x), torch.maximum(m.pattern_map(x), 2.0 * m.stats_map(x)))
    alone = with_terms(m, stats_fusion="stats")
    torch.testing.assert_close(alone.anomaly_map(x), m.stats_map(x), rtol=0, atol=0)


def test_model_without_stats_is_unchanged(tmp_path):
    m = _tiny()
    assert not any(k.startswith("stats_") for k in m.state_dict())
    x = _parts(2, seed=5)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in [k for k in meta["config"] if k.startswith("stats_")]:  # a config written before the term existed
        del meta["config"][key]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    loaded = load_model(tmp_path / "m")
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    statted = _statted(m, _parts(6))
    torch.testing.assert_close(statted.pattern_map(x), m.anomaly_map(x), rtol=0, atol=0)
    dropped = with_terms(statted, stats_fusion="none")
    torch.testing.assert_close(dropped.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="no appearance-statistics term"):
        m.raw_stats_map(x)


def test_planted_defect_lights_up_in_place():
    """A dark notch cut out of the bright disc (a missing piece of an aligned part): the
    statistics term, alone and fused, peaks on the notch, in the image's own frame."""
    m = _statted(_tiny(), _parts(12), stats_fusion="sum")
    bad = _parts(1, seed=9)
    bad[:, :, 6:11, 13:18] = -1.0
    for amap in (m.stats_map(bad)[0], with_terms(m, stats_fusion="stats").anomaly_map(bad)[0]):
        assert amap.shape == (24, 24)
        y, x = divmod(int(amap.argmax()), 24)
        assert 5 <= y <= 11 and 12 <= x <= 18
        assert float(amap[6:11, 13:18].mean()) > float(m.stats_map(_parts(3, seed=4)).max())
    fused = m.anomaly_map(bad)
    assert fused.shape == (1, 24, 24)
    torch.testing.assert_close(fused, m.pattern_map(bad) + m.stats_map(bad))


def test_broken_stats_tensor_is_refused_clearly(tmp_path):
    m = _statted(_tiny(), _parts(6))
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    save_file(state | {"stats_std": state["stats_std"][:2].contiguous()}, str(weights))
    with pytest.raises(CheckpointError, match=r"wrong shapes: stats_std \(2, 24, 24\) \(model expects \(6, 24, 24\)\)"):
        load_model(tmp_path / "m")
    bad = state["stats_map_mean"].clone()
    bad[3, 4] = float("inf")
    save_file(state | {"stats_map_mean": bad}, str(weights))
    with pytest.raises(CheckpointError, match="non-finite values in stats_map_mean"):
        load_model(tmp_path / "m")
    save_file({k: v for k, v in state.items() if k != "stats_mean"}, str(weights))
    with pytest.raises(CheckpointError, match="missing tensors: stats_mean"):
        load_model(tmp_path / "m")


def test_config_rejects_unknown_fusion():
    with pytest.raises(ValueError, match="stats_fusion"):
        preset("test_tiny", stats_fusion="mean")
    with pytest.raises(ValueError, match="stats_window"):
        preset("test_tiny", stats_window=4)


def test_train_with_stats_and_add_stats(tmp_path, capsys):
    from tests.inference.test_anomaly_workflow import train_tiny_card

    cat, out, card = train_tiny_card(tmp_path, capsys, "model", "--appearance-stats", "--edge-band", "--no-evaluate")
    info, band = card["appearance_stats"], card["edge_band"]
    assert [r["stats_fusion"] for r in info["validation"]] == [None, "none", "stats", "sum", "sum", "sum", "max"]
    assert [r["band_fusion"] for r in band["validation"]] == [None, "none", "band", "sum", "sum", "sum", "max"]
    assert all("pixel_band" in r for r in band["validation"]) and not any("pixel_band" in r for r in info["validation"])
    loaded = load_model(out)
    assert loaded.config.stats_fusion == info["chosen"]["stats_fusion"]
    assert loaded.config.stats_weight == info["chosen"]["stats_weight"]
    assert loaded.config.band_fusion == band["chosen"]["band_fusion"]
    # The statistics step re-chosen: it starts from the map without the statistics and band terms.
    out_stats = tmp_path / "m1"
    add_stats(out, cat, out_stats, log=lambda s: None)
    assert load_model(out_stats).config.band_fusion == "none"
    # The command on an existing model: rebuilt from the map without the term, recorded in the card.
    card2 = add_stats(out, cat, tmp_path / "m2", log=lambda s: None, term="band")
    again = load_model(tmp_path / "m2")
    assert again.card["recalibrations"][-1]["before"]["edge_band"] == band
    assert card2["edge_band"]["chosen"] == band["chosen"] and again.config == loaded.config
    assert card2["threshold"]["image"] == again.card["threshold"]["image"]
    forced = add_stats(out, cat, tmp_path / "m3", log=lambda s: None, force=("max", 2.0))["appearance_stats"]
    assert forced["forced"] and forced["rule_choice"] == info["chosen"]
    assert load_model(tmp_path / "m3").config.stats_fusion == "max" and load_model(tmp_path / "m3").config.stats_weight == 2.0
    # evaluate --record writes the test figures into the card, beside its other figures, and counts each recording
    # (a session-45 probe: it replaced the card's metrics whole, its cross-validation figures gone, and no count)
    from inference.checkpoints import save_card
    save_card(tmp_path / "m2", {**again.card, "metrics": {**(again.card.get("metrics") or {}), "cv": {"folds": 3}}})
    for times in (1, 2):
        rc = main(["evaluate", "anomaly", "--data", str(cat), "--model", str(tmp_path / "m2"), "--threads", "1",
                   "--record"])
        assert rc == 0, capsys.readouterr().err
        metrics = load_model(tmp_path / "m2").card["metrics"]
        rec = metrics["test"]
        assert 0.0 <= rec["image_auroc"] <= 1.0 and rec["n_images"] == 5
        assert np.isfinite(rec["pixel_auroc"])
        assert rec["times_recorded"] == times and metrics["cv"] == {"folds": 3}


def test_stats_command_reports_a_missing_model(tmp_path, capsys):
    from inference.training.anomaly_stats import main as stats_main

    assert stats_main(["--model", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "model directory not found" in err


def test_evaluate_table_lists_pixel_auroc_by_type():
    from inference.training.anomaly_eval import format_table

    row = {"image_auroc": 0.9, "pixel_auroc": 0.8, "pro": 0.7, "n_images": 4, "pixel_auroc_by_type": {"crack": 0.8126}}
    assert format_table({"m": row}).splitlines()[-1] == "pixel AUROC by type, m: crack 0.813"


def _stripes(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Vertical stripes with a random phase and mild noise, like a tile's texture (normalised, 3 channels)."""
    g = torch.Generator().manual_seed(seed)
    xx = torch.arange(size, dtype=torch.float32)
    phase = torch.rand(n, 1, 1, 1, generator=g) * 6.28
    return (torch.sin(xx * 6.28 / 5 + phase) + 0.1 * torch.randn(n, 3, size, size, generator=g)).expand(n, 3, size, size)


def _banded(model: PatternAnomaly, good: torch.Tensor, **settings) -> PatternAnomaly:
    out = with_terms(model, band_fusion=settings.pop("band_fusion", "sum"), **settings)
    out.fit_band_statistics(good, 8)
    return out


def test_band_term_lights_a_band_along_an_edge():
    """Stripes at random phase (no per-position template can hold them): a brightened band along
    the top edge shifts the row profile of those rows, and the band term lights them across the width."""
    m = _banded(_tiny(image_size=32), _stripes(12))
    bad = _stripes(1, seed=9).clone()
    bad[:, :, :8] += 1.0
    amap = m.band_map(bad)[0]
    assert amap.shape == (32, 32)
    assert float(amap[:6].min()) > float(amap[14:].max())
    assert float(amap[:6].min()) > float(m.band_map(_stripes(3, seed=4)).max())


def test_band_term_saved_loaded_and_fused_in_order(tmp_path):
    good, x = _stripes(6), _stripes(2, seed=5)
    m = _banded(_statted(_tiny(image_size=32), good, stats_fusion="sum", stats_weight=2.0), good, band_weight=0.5)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {})
    loaded = load_model(tmp_path / "m")
    assert loaded.config == m.config
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    torch.testing.assert_close(m.anomaly_map(x), m.pattern_map(x) + 2.0 * m.stats_map(x) + 0.5 * m.band_map(x))
    alone = with_terms(m, band_fusion="band")
    torch.testing.assert_close(alone.anomaly_map(x), m.band_map(x), rtol=0, atol=0)
    stats_alone = with_terms(m, stats_fusion="stats", band_fusion="max", band_weight=1.0)
    torch.testing.assert_close(stats_alone.anomaly_map(x), torch.maximum(m.stats_map(x), m.band_map(x)))
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    save_file(state | {"band_row_std": state["band_row_std"][:, :5].contiguous()}, str(weights))
    with pytest.raises(CheckpointError, match=r"wrong shapes: band_row_std \(6, 5, 1\)"):
        load_model(tmp_path / "m")
    with pytest.raises(RuntimeError, match="no edge-band term"):
        _tiny().raw_band_map(x)


def test_synthetic_bands_run_along_an_edge():
    from inference.training.anomaly_data import synthesize_bands

    batch = np.full((6, 1, 40, 40), 0.5, np.float32)
    out, masks = synthesize_bands(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and masks.shape == (6, 40, 40)
    changed = np.abs(out - batch).max(axis=1) > 0.02
    assert (changed == masks).all()
    for m in masks:
        assert 0.05 < m.mean() < 0.5
        touches = [m[0].all(), m[-1].all(), m[:, 0].all(), m[:, -1].all()]
        assert sum(touches) == 1  # a band covers exactly one whole edge
