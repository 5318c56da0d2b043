"""Small model directories as ``save_model`` writes them (config, card, real safetensors weights),
without torch: enough for every check the model catalog makes before registering one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def make_model_dir(root: Path, family: str = "classifier", arch: str = "memory_mamba",
                   card: dict | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"family": family, "format": 1, "model": arch, "config": {}}))
    (root / "card.json").write_text(json.dumps(card if card is not None else
                                               {"family": family, "model": arch,
                                                "metrics": {"val": {"accuracy": 0.9}}}))
    save_file({"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}, str(root / "model.safetensors"))
    return root
