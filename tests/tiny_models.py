"""Randomly initialised ``test_tiny`` models of each family, saved as real model directories.

Tests of the engine and the worker run the real registered architectures at their tiniest
preset, so they exercise loading and prediction end to end without bundled checkpoints.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from inference.checkpoints import save_model
from inference.models import registry

MODELS = {"classifier": "memory_mamba", "segmenter": "mim_istd", "anomaly": "pattern_anomaly"}
CLASSES = ("free", "crack")
ANOMALY_THRESHOLD = 0.5


def tiny_config(name: str):
    spec = registry.spec(name)
    cfg = sys.modules[spec.model_cls.__module__].PRESETS["test_tiny"]
    if spec.family == "classifier":
        cfg = dataclasses.replace(cfg, num_classes=len(CLASSES))
    return cfg


def save_tiny_models(root: Path, seed: int = 0) -> dict[str, Path]:
    """One model directory per family under ``root``; returns family -> directory."""
    torch.manual_seed(seed)
    out = {}
    for family, name in MODELS.items():
        cfg = tiny_config(name)
        model = registry.build(name, cfg)
        card = {"classes": list(CLASSES)} if family == "classifier" else {}
        if family == "anomaly":
            card = {"threshold": {"image": ANOMALY_THRESHOLD}}
        out[family] = save_model(root / f"{family}-tiny", name, model, cfg, card)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared 2-core machine.

    Autouse wherever it is imported: ``from tests.tiny_models import one_thread``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
