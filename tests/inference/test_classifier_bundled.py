"""The bundled NEU classifiers: load, have complete cards, and classify the shipped samples.

The default (ADR 0039) is ``classifier-neu-texture`` (a linear layer on texture features);
MemoryMamba (``classifier-neu``) stays bundled for a project that activates it. The demo steel
samples are NEU *validation* images (never trained on), so they are a fair smoke check of the
shipped weights, not a memorisation test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.bundled import bundled_model_dir
from inference.checkpoints import load_model
from inference.classifier_predict import predict_images
from inference.imageio import read_image

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples" / "demo" / "steel"
MAX_BYTES = 15 * 2**20


def test_the_default_classifier_is_the_texture_model_and_names_the_demo_steel():
    """ADR 0039: its card holds the CV estimate beside the once-scored val figure (named val, not test:
    val was in view when the descriptors were designed) and the recipe's frozen-test figure."""
    d = bundled_model_dir("classifier")
    assert d.name == "classifier-neu-texture"
    loaded = load_model(d)
    assert loaded.name == "texture_linear" and loaded.config.features == "defect_bank"
    metrics = loaded.card["metrics"]
    assert metrics["cv"]["accuracy"] > 0.99 and metrics["val"]["accuracy"] > 0.99
    assert metrics["recipe_frozen_test"]["accuracy"] > 0.99  # the recipe on a split nothing had seen
    assert loaded.card.get("licence") and loaded.card.get("command") and loaded.card["test_time_augmentation"] == "none"
    files = sorted(SAMPLES.glob("*.png"))
    preds = predict_images(loaded, [read_image(f, "rgb") for f in files])
    truth = [next(c for c in loaded.card["classes"] if f.stem.startswith(c + "_")) for f in files]
    assert [p.label for p in preds] == truth
    assert all(np.isclose(p.scores.sum(), 1.0, atol=1e-5) for p in preds)


def test_bundled_classifier_loads_with_card():
    d = bundled_model_dir("classifier", "classifier-neu")
    assert sum(f.stat().st_size for f in d.iterdir() if f.is_file()) <= MAX_BYTES
    loaded = load_model(d)
    assert loaded.name == "memory_mamba" and loaded.family == "classifier"
    card = loaded.card
    assert len(card["classes"]) == loaded.config.num_classes
    assert card["input_size"] == [loaded.config.img_size] * 2
    for key in ("normalisation", "data", "command", "metrics", "licence"):
        assert card.get(key), key
    assert card["metrics"]["val"]["accuracy"] > 0.9


def test_bundled_classifier_on_demo_steel_samples():
    loaded = load_model(bundled_model_dir("classifier", "classifier-neu"))
    files = sorted(SAMPLES.glob("*.png"))
    assert files, f"no samples in {SAMPLES}"
    preds = predict_images(loaded, [read_image(f, "rgb") for f in files])  # RGB in, gray model
    truth = [next(c for c in loaded.card["classes"] if f.stem.startswith(c + "_")) for f in files]
    correct = sum(p.label == t for p, t in zip(preds, truth))
    assert correct >= int(0.8 * len(files)), [(f.name, p.label) for f, p in zip(files, preds)]
    assert all(np.isclose(p.scores.sum(), 1.0, atol=1e-5) for p in preds)


TILES = SAMPLES.parent / "tiles"


def test_bundled_tile_classifier_has_its_protocol_figures_and_names_the_demo_tiles():
    """The magnetic-tile classifier (texture_linear on small-defect statistics and texture descriptors,
    ADRs 0027 and 0042): its card holds
    the grouped-CV estimates beside the once-scored frozen test, and it names the demo tiles (frozen-test
    images, so a smoke check, not a figure). A classifier at the class prior names 4 of the 14."""
    d = bundled_model_dir("classifier", "classifier-magnetic_tile")
    assert sum(f.stat().st_size for f in d.iterdir() if f.is_file()) <= MAX_BYTES
    loaded = load_model(d)
    assert loaded.name == "texture_linear" and loaded.config.features == "defect_bank"
    metrics = loaded.card["metrics"]
    assert {"cv", "cv_new_tiles", "test"} <= set(metrics) and metrics["test"]["times_recorded"] == 1
    assert metrics["cv"]["accuracy"] > 0.95 and metrics["cv_new_tiles"]["accuracy"] > 0.75
    assert loaded.card.get("licence") and loaded.card.get("command")
    files = sorted(TILES.glob("*.png"))
    assert len(files) == 14, f"demo tiles missing in {TILES}"
    preds = predict_images(loaded, [read_image(f, "rgb") for f in files])
    truth = [f.stem.split("_")[0] for f in files]
    correct = sum(p.label == t for p, t in zip(preds, truth))
    assert correct >= 11, [(f.name, p.label) for f, p in zip(files, preds)]
    defects = [(p.label, t) for p, t in zip(preds, truth) if t != "free"]
    assert sum(label == t for label, t in defects) >= 8  # of 10 defective tiles, not only the free ones
