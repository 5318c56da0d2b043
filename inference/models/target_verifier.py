"""Target verifier: the segmenter's second stage, a small CNN that accepts or rejects each
predicted component from the frame around it.

Why a second stage: the segmenter's remaining false alarms on SIRST are small bright blobs that
look like targets at the scale of a few pixels (a lamp on a crane, the top of a pole, a cloud
fragment, sensor noise). What tells them apart is the context a few tens of pixels out — is
the blob attached to a structure, sitting on a cloud edge, one of many specks? The verifier
reads exactly that: two views centred on the component's centroid, ``patch`` pixels at full
resolution and ``context`` × ``patch`` pixels shrunk to the same size, taken from the frame
after the segmenter's own standardisation. It is trained on the training frames' ground-truth
targets (positives) against the segmenter's own false components and bright top-hat blobs
(negatives); see ``inference/training/segmenter_verifier.py``.

The score is averaged over the eight flips and quarter turns (an infrared scene has no "up").

With ``map_channel`` the segmenter's probability map is read too, in the same two views (four
channels): how far and how evenly the segmenter's belief spreads around a component is evidence
the image views hold only implicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from inference.models.registry import register

NAME = "target_verifier"


@dataclass(frozen=True)
class TargetVerifierConfig:
    patch: int = 40  # side of each view in pixels (even)
    context: int = 2  # the second view covers context x patch pixels, shrunk to patch
    widths: tuple[int, ...] = (12, 32, 64, 64)
    map_channel: bool = False  # also read the segmenter's probability map (two more channels)

    def __post_init__(self) -> None:
        if self.patch < 8 or self.patch % 2:
            raise ValueError(f"patch must be an even number of pixels >= 8, got {self.patch}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if not self.widths:
            raise ValueError("widths must not be empty")

    @property
    def in_chans(self) -> int:
        return 4 if self.map_channel else 2


def _block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return layers + ([nn.MaxPool2d(2)] if pool else [])


@register(NAME, "segmenter", TargetVerifierConfig, part_only=True)
class TargetVerifier(nn.Module):
    """(n, in_chans, patch, patch) views -> (n,) logits that the component is a real target."""

    def __init__(self, config: TargetVerifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or TargetVerifierConfig()
        layers: list[nn.Module] = []
        cin = self.config.in_chans
        for i, w in enumerate(self.config.widths):
            layers += _block(cin, w, pool=i < len(self.config.widths) - 1)
            cin = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, 1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(views))[:, 0]


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) element of the square's symmetry group applied to the last two dims."""
    x = torch.rot90(x, k % 4, (-2, -1))
    return x.flip(-1) if k >= 4 else x


def _plane_views(plane: np.ndarray, centres: np.ndarray, config: TargetVerifierConfig) -> np.ndarray:
    """One (h, w) plane + (n, 2) centres as (y, x) -> (n, 2, patch, patch): full resolution and shrunk context."""
    half = config.patch // 2
    big = half * config.context
    pad = big + 2
    padded = np.pad(np.asarray(plane, np.float32), pad, mode="reflect" if min(plane.shape) > pad else "edge")
    out = np.empty((len(centres), 2, config.patch, config.patch), np.float32)
    for i, (cy, cx) in enumerate(np.asarray(centres, np.float64).reshape(-1, 2)):
        y, x = int(round(cy)) + pad, int(round(cx)) + pad
        out[i, 0] = padded[y - half:y + half, x - half:x + half]
        wide = padded[y - big:y + big, x - big:x + big]
        out[i, 1] = wide if config.context == 1 else cv2.resize(wide, (config.patch, config.patch), interpolation=cv2.INTER_AREA)
    return out


def views(frame: np.ndarray, centres: np.ndarray, config: TargetVerifierConfig,
          probability: np.ndarray | None = None) -> np.ndarray:
    """Standardised (h, w) frame + (n, 2) centres as (y, x) [+ the segmenter's (h, w) map] -> (n, in_chans, patch, patch).

    The planes are mirrored at their borders so a component at the edge gets full views.
    """
    out = _plane_views(frame, centres, config)
    if not config.map_channel:
        return out
    if probability is None or np.shape(probability) != np.shape(frame):
        raise ValueError("this verifier reads the segmenter's probability map: pass one of the frame's size")
    return np.concatenate([out, _plane_views(probability, centres, config)], axis=1)


@torch.no_grad()
def score_views(model: TargetVerifier, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, 2, patch, patch) views -> probability of a target, logits averaged over the 8 symmetries."""
    if len(x) == 0:
        return np.zeros(0, np.float32)
    was_training = model.training
    model.eval()
    try:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(next(model.parameters()).device)
        out = []
        for s in range(0, len(xt), batch):
            xb = xt[s:s + batch]
            out.append(torch.sigmoid(torch.stack([model(d4(xb, k)) for k in range(8)]).mean(0)).float().cpu())
        return torch.cat(out).numpy()
    finally:
        model.train(was_training)


def verify(model: TargetVerifier, frame: np.ndarray, centres: np.ndarray, probability: np.ndarray | None = None) -> np.ndarray:
    """Probability that each component centred at ``centres`` ((n, 2) as (y, x)) of ``frame`` is a target."""
    return score_views(model, views(frame, centres, model.config, probability))
