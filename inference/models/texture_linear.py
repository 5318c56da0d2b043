"""``texture_linear``: a classifier that is a linear layer on standardised texture features.

Why a model this small: from a few dozen labels per class the frozen NEU backbone's linear head
scored 0.33 on independent magnetic tiles, logistic regression on 12 x 12 thumbnails 0.58 and on
the texture features of ``inference.texture_features`` more still (benchmarks/results/). The
retrain command fits the class-balanced logistic regression; this module only holds it as an
ordinary station model (safetensors + JSON, bounded loading, the normal engine path), so the
worker pre-labels with it like with any other classifier version.

The forward pass takes the precomputed feature vectors, not pixels: ``image_input`` turns one
decoded image into its vector, and ``inference.classifier_predict`` asks the model for it.
``features`` names the vector (``inference.texture_features.FEATURE_SETS``): ``texture`` (the
label-next embedding) or ``defect`` (small-defect statistics at the image's own aspect, ADR 0027);
versions written before the name existed read ``texture``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inference.texture_features import DEFECT_SIDE, FEATURE_SETS, TEXTURE_DIM, WORK_SIDE

from .registry import register


def feature_config(features: str, num_classes: int) -> "TextureLinearConfig":
    """The config of a version on ``features``; the engine hands it images of at most twice img_size."""
    side = DEFECT_SIDE // 2 if features != "texture" else WORK_SIDE  # defect, bank: own aspect, up to 256 px
    return TextureLinearConfig(num_classes=num_classes, feature_dim=FEATURE_SETS[features][0], img_size=side,
                               features=features)


@dataclass(frozen=True)
class TextureLinearConfig:
    num_classes: int = 2
    feature_dim: int = TEXTURE_DIM
    in_chans: int = 1          # the engine decodes gray for it
    img_size: int = WORK_SIDE  # the features' working side; the engine hands over at most twice this
    features: str = "texture"  # which vector of inference.texture_features.FEATURE_SETS

    def __post_init__(self) -> None:
        if self.features not in FEATURE_SETS:
            raise ValueError(f"unknown features {self.features!r}; choose from {', '.join(FEATURE_SETS)}")
        dim = FEATURE_SETS[self.features][0]
        if self.feature_dim != dim:
            raise ValueError(f"feature_dim must be {dim} (the {self.features} features of this version), "
                             f"not {self.feature_dim}")
        if self.num_classes < 1 or self.in_chans != 1:
            raise ValueError("texture_linear needs num_classes >= 1 and in_chans 1")


@register("texture_linear", "classifier", TextureLinearConfig)
class TextureLinear(nn.Module):
    """logits = linear((features - mean) / scale)."""

    mean: torch.Tensor   # buffers registered in __init__, typed for mypy
    scale: torch.Tensor

    def __init__(self, config: TextureLinearConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = config or TextureLinearConfig()
        self.register_buffer("mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("scale", torch.ones(cfg.feature_dim))
        self.linear = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def image_input(self, image: np.ndarray) -> np.ndarray:
        """What ``forward`` takes for one decoded float image in [0, 1]: its feature vector."""
        return FEATURE_SETS[self.cfg.features][1](image)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.scale)
