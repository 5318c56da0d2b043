"""Small model directories as ``save_model`` writes them (config, card, safetensors weights of the shapes the config
asks for, zeros): enough for every check the model catalog makes before registering one, the weights' shapes against
the config included. An architecture the registry does not know gets two stand-in tensors (it is refused before
its weights are read)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def _config_and_weights(arch: str) -> tuple[dict, dict[str, np.ndarray]]:
    import torch

    from inference.models import registry
    try:
        spec = registry.spec(arch)
    except KeyError:
        return {}, {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    presets = getattr(sys.modules[spec.model_cls.__module__], "PRESETS", {})
    config = json.loads(json.dumps(dataclasses.asdict(presets["test_tiny"]))) if "test_tiny" in presets else {}
    with torch.device("meta"):
        state = registry.build(arch, registry.config_from_dict(arch, config)).state_dict()
    return config, {k: np.zeros(tuple(v.shape), np.float32 if v.is_floating_point() else np.int64)
                    for k, v in state.items()}


def make_model_dir(root: Path, family: str = "classifier", arch: str = "memory_mamba",
                   card: dict | None = None) -> Path:
    root.mkdir(parents=True)
    config, weights = _config_and_weights(arch)
    (root / "config.json").write_text(json.dumps({"family": family, "format": 1, "model": arch, "config": config}))
    (root / "card.json").write_text(json.dumps(card if card is not None else
                                               {"family": family, "model": arch,
                                                "metrics": {"val": {"accuracy": 0.9}}}))
    save_file(weights, str(root / "model.safetensors"))
    return root
