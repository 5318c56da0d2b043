"""Segmenter ensembles: members stored inside the model directory, maps averaged, calibrated together."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import segmenter_predict as segmentation
from inference.checkpoints import load_model, save_model
from inference.models.mim_istd import NAME, MiMISTD, preset
from inference.training.segmenter_calibrate import main as calibrate_main
from inference.training.segmenter_calibrate import recalibrate
from tests.inference.test_segmenter_data import write_tree
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _tiny(seed: int, in_chans: int = 1) -> MiMISTD:
    torch.manual_seed(seed)
    cfg = preset("test_tiny")
    if in_chans != cfg.in_chans:
        import dataclasses

        cfg = dataclasses.replace(cfg, in_chans=in_chans)
    return MiMISTD(cfg).eval()


def test_the_ensemble_map_is_the_mean_of_its_members_maps():
    a, b = _tiny(0), _tiny(1)
    image = np.random.default_rng(0).random((29, 45), dtype=np.float32)
    pa = segmentation.predict_probabilities(a, [image], "cpu", flips=True)[0]
    pb = segmentation.predict_probabilities(b, [image], "cpu", flips=True)[0]
    both = segmentation.predict_probabilities([a, b], [image], "cpu", flips=True)[0]
    assert np.allclose(both, (pa + pb) / 2, atol=1e-6)
    assert not np.allclose(pa, pb)  # the test would pass trivially for identical members
    with pytest.raises(ValueError, match="channels"):
        segmentation.predict_probabilities([a, _tiny(2, in_chans=3)], [image], "cpu")


def test_adding_a_member_copies_it_in_averages_and_recalibrates(tmp_path):
    root = write_tree(tmp_path / "d", n=30)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(26)))
    main_model, other = _tiny(0), _tiny(1)
    main_dir = save_model(tmp_path / "m", NAME, main_model, main_model.config, {"family": "segmenter", "threshold": 0.5,
                                                                                "verifier": {"threshold": 0.3}})
    other_dir = save_model(tmp_path / "o", NAME, other, other.config, {"family": "segmenter"})
    card = recalibrate(main_dir, root, members=[other_dir])
    assert card["ensemble"] == ["member1"] and card["parts"] == {"member1": "members/1"}
    assert "verifier" not in card  # a verifier fitted to the old map does not survive a new member
    assert (main_dir / "members" / "1" / "model.safetensors").is_file()
    loaded = load_model(main_dir, family="segmenter")
    members = segmentation.model_members(loaded)
    assert len(members) == 2
    assert all(torch.equal(members[1].state_dict()[k], v) for k, v in other.state_dict().items())
    image = np.random.default_rng(1).random((33, 40), dtype=np.float32)
    got = segmentation.predict_masks(loaded, [image])[0]
    want = segmentation.predict_probabilities([main_model, other], [image], "cpu", flips=segmentation.model_flips(loaded))[0]
    assert np.allclose(got.probability, want, atol=1e-6)
    assert got.threshold == card["threshold"]


def test_a_member_of_another_kind_is_refused_with_one_line(tmp_path, capsys):
    root = write_tree(tmp_path / "d", n=30)
    m = _tiny(0)
    main_dir = save_model(tmp_path / "m", NAME, m, m.config, {"family": "segmenter"})
    rgb = _tiny(1, in_chans=3)
    rgb_dir = save_model(tmp_path / "rgb", NAME, rgb, rgb.config, {})
    assert calibrate_main(["--model", str(main_dir), "--data", str(root), "--add-member", str(rgb_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "input channel" in err
    assert not (main_dir / "members").exists()
