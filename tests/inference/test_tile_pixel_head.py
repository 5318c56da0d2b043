"""The tile defect model's pixel head choice (brief W): "linear" (every card before it) or "net".

Why these tests: old cards have no ``pixel_head`` field and no ``pixel_net.*`` tensors, so the
default must keep loading and predicting them exactly; a "net" model must save its net beside the
other tensors, be refused when they do not fit, and its fit must write the card fields that say
how the net and its figures were made.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from app.cli import main
from inference.anomaly_predict import predict_images
from inference.checkpoints import load_model, save_model
from inference.models.tile_defect import PRESETS, TileDefect, TileDefectConfig, pixel_features
from inference.training.convert_magnetic_tile import convert
from tests.conftest import ROOT
from tests.inference.test_tile_defect import _source
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

BUNDLED = ROOT / "resources" / "models" / "anomaly-magnetic_tile"
DEMO = ROOT / "resources" / "samples" / "demo" / "tiles"
LINEAR_REFERENCE = Path(__file__).parent / "data" / "tile_bundled_linear_maps.json"


def _demo_maps(model_dir: Path, tile: str) -> tuple[float, np.ndarray]:
    img = cv2.imread(str(DEMO / tile), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    pred = predict_images(load_model(model_dir, family="anomaly"), [img])[0]
    return float(pred.score), pred.anomaly_map


def _as_old_linear_card(src: Path, dst: Path) -> Path:
    """A copy of a tile_defect model as a card from before brief W: no pixel_head fields in its
    config, no pixel_net tensors."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    meta = json.loads((dst / "config.json").read_text())
    for key in ("pixel_head", "pixel_net_widths"):
        meta["config"].pop(key, None)
    (dst / "config.json").write_text(json.dumps(meta))
    tensors = {k: v for k, v in load_file(str(dst / "model.safetensors")).items() if not k.startswith("pixel_net.")}
    save_file(tensors, str(dst / "model.safetensors"), metadata={"model": "tile_defect", "format": str(meta["format"])})
    return dst


def test_default_pixel_head_is_linear_and_adds_no_tensors():
    assert TileDefectConfig().pixel_head == "linear" and PRESETS["tile"].pixel_head == "linear"
    assert PRESETS["tile_net"] == TileDefectConfig(pixel_head="net")
    assert not any(k.startswith("pixel_net.") for k in TileDefect(PRESETS["test_tiny"]).state_dict())
    with pytest.raises(ValueError, match="pixel_head"):
        TileDefectConfig(pixel_head="mlp")
    with pytest.raises(ValueError, match="divisible by 8"):
        TileDefectConfig(pixel_head="net", map_size=100, grid=10)


def test_bundled_linear_card_maps_unchanged(tmp_path):
    """The bundled model's maps on a demo tile as main's code made them before the net existed
    (reference written by that code). While the bundled model is linear it is read directly; once
    a net model is bundled, the same weights read as an old linear card must give the tensordot map."""
    ref = json.loads(LINEAR_REFERENCE.read_text())
    cfg = json.loads((BUNDLED / "config.json").read_text())["config"]
    if cfg.get("pixel_head", "linear") == "linear":
        score, m = _demo_maps(BUNDLED, ref["tile"])
        assert list(m.shape) == ref["map_shape"]
        assert score == pytest.approx(ref["score"], abs=1e-5)
        assert np.allclose(m[::16, ::16], np.array(ref["map_every_16"]), atol=1e-3)
        return
    old = _as_old_linear_card(BUNDLED, tmp_path / "old")
    loaded = load_model(old, family="anomaly")
    model = loaded.model
    assert model.config.pixel_head == "linear" and model.pixel_net is None
    rng = np.random.default_rng(0)
    z = rng.normal(size=(model.config.n_terms, 128, 128)).astype(np.float32)
    k = rng.normal(size=(128, 128)).astype(np.float32)
    img = rng.random((256, 256)).astype(np.float32)
    pix, _ = model.heads(img, z, k)
    f = pixel_features(z, k, model.config)
    assert np.allclose(pix, np.tensordot(model.pixel_w.numpy(), f, axes=(0, 0)) + float(model.pixel_b), atol=1e-4)
    _demo_maps(old, ref["tile"])  # predicts


def test_net_model_round_trips_and_checks_shapes(tmp_path):
    cfg = PRESETS["test_tiny_net"]
    torch.manual_seed(0)
    model = TileDefect(cfg).eval()
    with torch.no_grad():
        for p in model.pixel_net.parameters():
            p.normal_(0, 0.3)
        model.pixel_net.in_scale.fill_(2.0)
    x = torch.rand(2, 1, cfg.image_size, cfg.image_size)
    before = model.head_outputs(x)[0]
    save_model(tmp_path / "m", "tile_defect", model, cfg)
    assert any(k.startswith("pixel_net.") for k in load_file(str(tmp_path / "m" / "model.safetensors")))
    loaded = load_model(tmp_path / "m", family="anomaly").model
    assert loaded.pixel_net is not None and not loaded.pixel_net.training
    assert np.allclose(loaded.head_outputs(x)[0], before, atol=1e-6)
    loaded.train()  # a module left in training mode still maps with the net's running statistics
    assert np.allclose(loaded.head_outputs(x)[0], before, atol=1e-6)
    # a net of other widths than the config says is refused, with the tensor named
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["pixel_net_widths"] = [8, 8, 8]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="pixel_net"):
        load_model(tmp_path / "m", family="anomaly")


def test_fit_with_the_net_writes_its_card_fields(tmp_path, capsys):
    convert(_source(tmp_path / "mt"), tmp_path / "out", defects_by_split=True)
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "out"), "--out", str(out), "--arch", "tile_defect",
               "--preset", "test_tiny_net", "--threads", "1", "--cv-folds", "3", "--no-evaluate"])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["pixel_head"] == "net" and config["pixel_net_widths"] == [4, 4, 4]
    net = card["training"]["pixel_net"]
    assert net["epochs"] == 15 and net["seed"] == 0 and net["tiles"] > net["good_tiles"] > 0
    cv = card["cross_validation"]
    assert cv["pixel_head"].startswith("net") and "pixel_net_training" not in cv
    assert set(cv["by_grouping"]) == {"prefix", "series"} and cv["pixel_auroc"] > 0.8
    assert "net trained without its fold" in card["threshold"]["pixel_method"]
    assert "pixel net" in card["task"]
