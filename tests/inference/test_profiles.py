"""Speed profiles named by a model card (inference/profiles.py, ADR 0025): what each runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference import segmenter_predict as segmentation
from inference.checkpoints import CheckpointError, load_model, save_card, save_model
from inference.engine import InspectionEngine
from inference.models.mim_istd import NAME, MiMISTD, preset
from inference.profiles import ProfileError, apply_profile, card_profiles, profile_card, resolve_profile
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

PROFILES = {"accurate": {"settings": {}}, "fast": {"settings": {"ensemble": [], "test_time_flips": False}}}


def _tiny(seed: int) -> MiMISTD:
    torch.manual_seed(seed)
    return MiMISTD(preset("test_tiny")).eval()


def ensemble_dir(root: Path, **card) -> Path:
    """A tiny segmenter directory: a main network and one member, flips on, profiles as given."""
    main, member = _tiny(0), _tiny(1)
    d = save_model(root / "seg", NAME, main, main.config, {"family": "segmenter"})
    save_model(d / "members" / "1", NAME, member, member.config, {"family": "segmenter"})
    save_card(d, {"family": "segmenter", "threshold": 0.5, "test_time_flips": True, "ensemble": ["member1"],
                  "parts": {"member1": "members/1"}, **card})
    return d


def test_a_card_without_profiles_runs_as_it_is_whatever_is_asked():
    card = {"test_time_flips": True}
    assert card_profiles(card) == {} and resolve_profile(card, "fast") is None
    assert profile_card(card, "segmenter", "fast") == (card, None)


def test_a_profile_overrides_the_cards_keys_and_a_missing_one_falls_back_to_the_default():
    card = {"ensemble": ["member1"], "test_time_flips": True, "profiles": PROFILES, "default_profile": "accurate"}
    fast, name = profile_card(card, "segmenter", "fast")
    assert name == "fast" and fast["ensemble"] == [] and fast["test_time_flips"] is False
    same, name = profile_card(card, "segmenter", "turbo")  # not named by this card: its default
    assert name == "accurate" and same["ensemble"] == ["member1"] and same["test_time_flips"] is True
    assert resolve_profile(card, None) == "accurate"


def test_a_null_setting_removes_the_key_and_the_part_of_that_name(tmp_path):
    d = ensemble_dir(tmp_path, verifier={"threshold": 0.3},
                     profiles={"bare": {"settings": {"verifier": None}}}, default_profile="bare")
    loaded = load_model(d, family="segmenter")
    loaded.parts["verifier"] = loaded.parts["member1"]  # stands in for a verifier part: only its removal matters
    bare = apply_profile(loaded, None)
    assert "verifier" not in bare.card and "verifier" not in bare.parts and "member1" in bare.parts
    assert "verifier" in loaded.card  # the loaded model itself is not changed


def test_profiles_may_set_only_the_keys_the_family_allows_and_must_be_well_formed():
    with pytest.raises(ProfileError, match="threshold"):
        profile_card({"profiles": {"fast": {"settings": {"threshold": 0.1}}}}, "segmenter", "fast")
    with pytest.raises(ProfileError, match="default_profile"):
        card_profiles({"profiles": PROFILES, "default_profile": "quick"})
    with pytest.raises(ProfileError, match="map names"):
        card_profiles({"profiles": ["fast"]})


def test_the_fast_profile_runs_the_main_network_alone_without_flips(tmp_path):
    d = ensemble_dir(tmp_path, profiles=PROFILES, default_profile="accurate")
    image = np.random.default_rng(0).random((40, 52), dtype=np.float32)
    loaded = load_model(d, family="segmenter")
    fast = segmentation.predict_masks(apply_profile(loaded, "fast"), [image])[0]
    accurate = segmentation.predict_masks(apply_profile(loaded, "accurate"), [image])[0]
    main, member = segmentation.model_members(loaded)
    want_fast = segmentation.predict_probabilities(main, [image], "cpu", flips=False)[0]
    want_accurate = segmentation.predict_probabilities([main, member], [image], "cpu", flips=True)[0]
    assert np.allclose(fast.probability, want_fast, atol=1e-6)
    assert np.allclose(accurate.probability, want_accurate, atol=1e-6)
    assert not np.allclose(want_fast, want_accurate, atol=1e-3)  # else the test could not tell them apart


def test_the_engine_runs_the_profile_asked_for_and_says_which(tmp_path):
    d = ensemble_dir(tmp_path, profiles=PROFILES, default_profile="accurate")
    image = np.random.default_rng(1).random((36, 36), dtype=np.float32)
    with InspectionEngine({"segmenter": d}, device="cpu", profile="fast") as engine:
        assert engine.loaded()["segmenter"].profile == "fast"
        [got] = engine.model("segmenter").predict([image], [(36, 36)])
    loaded = load_model(d, family="segmenter")
    want = segmentation.predict_masks(apply_profile(loaded, "fast"), [image])[0]
    assert np.array_equal(got.mask, want.mask)
    with InspectionEngine({"segmenter": d}, device="cpu") as engine:
        assert engine.loaded()["segmenter"].profile == "accurate"


def test_a_broken_profile_is_a_broken_model_directory(tmp_path):
    d = ensemble_dir(tmp_path, profiles={"fast": {"settings": {"threshold": 0.9}}})
    with pytest.raises(CheckpointError, match="may set only"):
        InspectionEngine({"segmenter": d}, device="cpu", profile="fast")


@pytest.mark.parametrize("family, model", [("segmenter", None), ("classifier", "classifier-neu")])
def test_the_bundled_cards_name_an_accurate_default_and_a_fast_profile(family, model):
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import read_json

    d = bundled_model_dir(family, model)
    if not (d / "card.json").is_file():
        pytest.skip("no bundled model in this checkout")
    card = read_json(d / "card.json")
    assert resolve_profile(card, None) == "accurate"
    assert profile_card(card, family, "accurate")[0] == card
    fast, name = profile_card(card, family, "fast")
    assert name == "fast" and fast != card


def test_the_default_classifier_has_no_profiles_so_fast_and_accurate_run_it_as_it_is():
    """The texture model (ADR 0039) has no test-time views to drop: a project's profile leaves it alone."""
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import read_json

    card = read_json(bundled_model_dir("classifier") / "card.json")
    assert card_profiles(card) == {} and card["test_time_augmentation"] == "none"
    for wanted in (None, "fast", "accurate"):
        assert resolve_profile(card, wanted) is None and profile_card(card, "classifier", wanted) == (card, None)
