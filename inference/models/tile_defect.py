"""Tile defect model: the texture kNN map + self-referenced local terms, with two linear heads
learned from the training split's labelled defects (issue 19 item 4, ADR 0032).

The texture kNN model (texture_knn.py) is trained on good tiles only and sits at image / pixel
AUROC ~0.76 / 0.67 on magnetic tiles: its image score competes with good tiles' border maxima,
and an ``uneven`` band (most defect pixels) is not a texture change. This model keeps that map and
adds what group cross-validation on the training split showed to carry the rest
(benchmarks/results/tile-anomaly.md):

- the self-referenced local terms of ``local_deviation`` (dark/bright spots at four scales,
  row-band deviation, edge strength), standardised per position by good-tile statistics;
- a **pixel head**: a logistic regression over, per map cell, those terms' positive parts and the
  standardised kNN distance, the same blurred at two context scales, their row means (a band spans
  the tile) and the distance to the borders; trained on the defect masks of the training split;
- an **image head**: a logistic regression over the image's ``defect`` vector
  (texture_features.image_defect) and the top-k means of the kNN map and of each term, and with
  ``image_bank`` the image's texture descriptors (texture_features.image_bank; ADR 0057); its logit
  is the image score;
- the map shown is the pixel logit plus ``map_image_weight`` times the image logit ("sum"), or
  times its negative part only ("veto": a tile the image head clears is dim everywhere, and the
  map of a tile it flags is the pixel head's own, so it localises); see ``map_offset``.

So this is *not* a good-images-only model: it needs labelled defect tiles with masks (the
``validation/`` folder of the training data) and learns a few hundred weights from them (~370, ~500 with the descriptors). Both heads are
fitted on out-of-fold maps (each training tile mapped by a kNN bank and term statistics that never
saw its capture session), so they see what a new session looks like. numpy/OpenCV per image.

``pixel_head`` picks the pixel head: "linear" (the logistic regression above, every card before
issue 19's brief W) or "net" (``tile_pixel_net.TilePixelNet``: a small encoder-decoder on the same
planes, ~108k weights; it beat the linear head under session and physical-tile cross-validation,
benchmarks/results/tile-pixel-net.md). The default stays "linear" so every saved card without the
field loads and predicts as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from ..texture_bank import BANK_DIM
from ..texture_features import DEFECT_DIM, image_defect, image_defect_bank
from .local_deviation import TERMS, coarse, raw_terms, standardised, term_names
from .registry import register
from .texture_knn import TextureKnn, TextureKnnConfig
from .tile_pixel_net import PixelNetConfig, TilePixelNet, three_widths

N_POSITION = 4  # |y|, |x|, y^2, x^2 with y, x in [-1, 1]


MAP_OFFSETS = ("sum", "veto", "gate")
PIXEL_HEADS = ("linear", "net")


def defect_probability(logit: Any) -> Any:
    """The image score: the image head's logit as a probability of a defect (0-1, the unit of the
    queue's score filter and of the card's image threshold), for a float or an array."""
    return 1.0 / (1.0 + np.exp(-logit))


def combined_map(pix: np.ndarray, logit: Any, weight: float, mode: str, gate: float = 0.0) -> np.ndarray:
    """The map shown: the pixel head's logits ``pix`` plus ``weight`` x the image logit's share.

    "sum" adds all of it to every pixel (a tile the image head is sure of clears the pixel
    threshold everywhere: its heatmap and Accept region cover the tile); "veto" adds only its
    negative side (a cleared tile is dimmed, a flagged one keeps the pixel head's own map);
    "gate" dims like "veto" and lifts a flagged tile only where the pixel head itself leans to a
    defect (by sigmoid(pix - gate)), so the lift ranks its defect above other tiles' without
    painting its background. ``logit`` is a float or broadcasts against ``pix`` (e.g. (n, 1, 1)).
    """
    logit = np.asarray(logit, np.float32)
    neg = weight * np.minimum(logit, 0.0)
    if mode == "sum":
        return pix + weight * logit
    if mode == "veto":
        return pix + neg
    lift = 1.0 / (1.0 + np.exp(-(pix - gate)))
    return pix + neg + weight * np.maximum(logit, 0.0) * lift


@dataclass(frozen=True)
class TileDefectConfig(TextureKnnConfig):
    smoothing_sigma: float = 12.0  # the kNN map's blur (texture_knn preset "tile")
    local_sigmas: tuple = (1.0, 2.0, 4.0, 8.0)
    local_terms: tuple = ("dark", "bright", "rows", "edge")  # of TERMS; "cols", "level": brief K
    level_sigmas: tuple = (16.0, 32.0)  # px of the image: the "level" term's scales
    destripe: bool = True
    grid: int = 16  # cells per side of the per-position term statistics
    map_size: int = 128  # side of the term planes and of the heads' map
    context_sigmas: tuple = (6.0, 16.0)  # blurs of the pixel head's context features (map_size pixels)
    col_means: bool = False  # the pixel head also gets each base plane's column means (beside the row means)
    topk: float = 0.005  # fraction of the map averaged for the image head's map features
    image_margin: int = 16  # border (map_size pixels) left out of those top-k means
    map_image_weight: float = 2.0
    # How the image logit enters the map: "sum" adds weight x logit to every pixel (a sure tile
    # clears the pixel threshold everywhere); "veto" adds weight x min(logit, 0), so the image
    # head can only dim a tile it clears and the map of an anomalous tile is the pixel head's own
    # (it localises). ADR 0032's amendment.
    map_offset: str = "sum"
    map_gate: float = 0.0  # "gate": the pixel logit at which a flagged tile's lift is half on
    # "linear": one logistic regression per cell (pixel_w, pixel_b); "net": a TilePixelNet on the
    # same planes (weights under "pixel_net." in model.safetensors). Brief W, tile-pixel-net.md.
    pixel_head: str = "linear"
    pixel_net_widths: tuple = (16, 32, 64)  # the net's encoder widths (used with pixel_head "net")
    # The image head also reads the tile's LBP / Gabor / co-occurrence / band-pass descriptors
    # (texture_features.image_bank, what the tile classifier reads): tile-image-bank.md.
    image_bank: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if set(self.local_terms) - set(TERMS) or not self.local_terms:
            raise ValueError(f"local_terms must be a non-empty subset of {TERMS}, got {self.local_terms}")
        if "level" in self.local_terms and not self.level_sigmas:
            raise ValueError("the 'level' local term needs level_sigmas")
        if not 0 < self.map_size <= self.image_size or not 0 < self.grid <= self.map_size:
            raise ValueError(f"need 0 < grid <= map_size <= image_size, got {self.grid}, {self.map_size}")
        if self.map_offset not in MAP_OFFSETS:
            raise ValueError(f"map_offset must be one of {MAP_OFFSETS}, got {self.map_offset!r}")
        if self.pixel_head not in PIXEL_HEADS:
            raise ValueError(f"pixel_head must be one of {PIXEL_HEADS}, got {self.pixel_head!r}")
        if len(self.pixel_net_widths) != 3 or any(int(w) < 1 for w in self.pixel_net_widths):
            raise ValueError(f"pixel_net_widths must be three positive widths, got {self.pixel_net_widths}")
        if self.pixel_head == "net" and self.map_size % 8:
            raise ValueError(f"pixel_head 'net' needs map_size divisible by 8 (half size, two poolings), got {self.map_size}")
        if not 0 <= self.image_margin < self.map_size // 2 or not 0 < self.topk <= 1:
            raise ValueError(f"image_margin must be in [0, map_size/2) and topk in (0, 1], got {self.image_margin}, {self.topk}")

    @property
    def n_terms(self) -> int:
        return len(term_names(self.local_sigmas, self.local_terms, self.level_sigmas))

    @property
    def pixel_dim(self) -> int:
        base = self.n_terms + 1
        return base * (2 + len(self.context_sigmas) + int(self.col_means)) + N_POSITION

    @property
    def image_dim(self) -> int:
        return DEFECT_DIM + self.n_terms + 1 + (BANK_DIM if self.image_bank else 0)


PRESETS = {
    "test_tiny": TileDefectConfig(image_size=32, sigmas=(1.0, 2.0), stride=4, bank_size=64, smoothing_sigma=1.0,
                                  local_sigmas=(1.0, 2.0), grid=4, map_size=16, context_sigmas=(2.0,), image_margin=2,
                                  topk=0.05),
    "test_tiny_net": TileDefectConfig(image_size=32, sigmas=(1.0, 2.0), stride=4, bank_size=64, smoothing_sigma=1.0,
                                      local_sigmas=(1.0, 2.0), grid=4, map_size=16, context_sigmas=(2.0,),
                                      image_margin=2, topk=0.05, pixel_head="net", pixel_net_widths=(4, 4, 4)),
    "test_tiny_bank": TileDefectConfig(image_size=32, sigmas=(1.0, 2.0), stride=4, bank_size=64, smoothing_sigma=1.0,
                                       local_sigmas=(1.0, 2.0), grid=4, map_size=16, context_sigmas=(2.0,),
                                       image_margin=2, topk=0.05, image_bank=True),
    # Magnetic tiles: every setting chosen by group cross-validation on the train split (tile-anomaly.md).
    "tile": TileDefectConfig(),
    # The same with the learned pixel head (brief W: adopted by tile-pixel-net.md's rule).
    "tile_net": TileDefectConfig(pixel_head="net"),
    # The same with the texture descriptors in the image head (adopted by tile-image-bank.md's rule), the image
    # logit only dimming a tile it clears ("veto": adopted by tile-map-rule.md's rule; ADR 0057).
    "tile_net_bank": TileDefectConfig(pixel_head="net", image_bank=True, map_offset="veto"),
}
# What `train anomaly --arch tile_defect` takes without --preset: the bundled anomaly-magnetic_tile's recipe
# (ADR 0057); it has no "cpu", the default of the other architectures, which refused it (a session-52 audit).
DEFAULT_PRESET = "tile_net_bank"


def _np(t: torch.Tensor) -> np.ndarray:
    """A buffer as float32 numpy, wherever the model lives (the heads run in numpy)."""
    return t.detach().float().cpu().numpy()


def _blur(p: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(p, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def pixel_features(z: np.ndarray, knn_z: np.ndarray, cfg: TileDefectConfig) -> np.ndarray:
    """Standardised terms (t, s, s) and the standardised kNN map (s, s) -> (pixel_dim, s, s)."""
    base = np.concatenate([np.maximum(z, 0), knn_z[None]]).astype(np.float32)
    s = base.shape[-1]
    planes = [base] + [np.stack([_blur(p, sig) for p in base]) for sig in cfg.context_sigmas]
    planes.append(np.repeat(base.mean(axis=2, keepdims=True), s, axis=2))
    if cfg.col_means:
        planes.append(np.repeat(base.mean(axis=1, keepdims=True), s, axis=1))
    y = np.abs(np.linspace(-1.0, 1.0, s, dtype=np.float32))[:, None] * np.ones((1, s), np.float32)
    planes.append(np.stack([y, y.T, y * y, (y * y).T]))
    return np.concatenate(planes)


def top_mean(m: np.ndarray, frac: float, margin: int) -> np.ndarray:
    """Mean of the top ``frac`` of each map (..., s, s) inside ``margin`` -> (...)."""
    s = m.shape[-1]
    inner = m[..., margin:s - margin, margin:s - margin] if margin else m
    flat = inner.reshape(*m.shape[:-2], -1)
    k = max(1, int(frac * flat.shape[-1]))
    return np.sort(flat, axis=-1)[..., -k:].mean(-1)


def image_features(img: np.ndarray, z: np.ndarray, knn_z: np.ndarray, cfg: TileDefectConfig) -> np.ndarray:
    """(image_dim,): the image's defect vector, then top-k means of the kNN map and each term, then (with
    ``image_bank``) the image's texture descriptors."""
    maps = np.concatenate([knn_z[None], np.maximum(z, 0)])
    top = top_mean(maps, cfg.topk, cfg.image_margin)
    if not cfg.image_bank:
        return np.concatenate([image_defect(img), top]).astype(np.float32)
    both = image_defect_bank(img)  # the two vectors from one shrink of the tile (a tile's hot path)
    return np.concatenate([both[:DEFECT_DIM], top, both[DEFECT_DIM:]]).astype(np.float32)


@register("tile_defect", "anomaly", TileDefectConfig)
class TileDefect(TextureKnn):
    config: TileDefectConfig
    term_mean: torch.Tensor  # (t, grid, grid) per-position mean of each term on good tiles
    term_std: torch.Tensor
    knn_stats: torch.Tensor  # (2,)
    pixel_w: torch.Tensor  # (pixel_dim,) pixel head, on raw features
    pixel_b: torch.Tensor
    image_mean: torch.Tensor  # (image_dim,) image head: standardisation, weights, bias
    image_scale: torch.Tensor
    image_w: torch.Tensor
    image_b: torch.Tensor
    pixel_net: TilePixelNet | None  # pixel_head "net" only

    def __init__(self, config: TileDefectConfig | None = None) -> None:
        cfg = config or TileDefectConfig()
        super().__init__(cfg)
        t, g = cfg.n_terms, cfg.grid
        self.register_buffer("term_mean", torch.zeros(t, g, g))
        self.register_buffer("term_std", torch.ones(t, g, g))
        self.register_buffer("knn_stats", torch.tensor([0.0, 1.0]))  # mean, std of good tiles' kNN map values
        self.register_buffer("pixel_w", torch.zeros(cfg.pixel_dim))
        self.register_buffer("pixel_b", torch.zeros(1))
        self.register_buffer("image_mean", torch.zeros(cfg.image_dim))
        self.register_buffer("image_scale", torch.ones(cfg.image_dim))
        self.register_buffer("image_w", torch.zeros(cfg.image_dim))
        self.register_buffer("image_b", torch.zeros(1))
        # Only with "net", so a "linear" model's tensors (and every saved card's) stay as they were.
        self.pixel_net = (TilePixelNet(PixelNetConfig(cfg.pixel_dim, three_widths(cfg.pixel_net_widths)))
                          if cfg.pixel_head == "net" else None)

    # -- pieces the fitter reuses ------------------------------------------------------------
    def coarse_terms(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One [0, 1] image (s, s) -> raw terms at map_size (t, m, m), and their per-cell sums of
        values and squares at ``grid`` (t, g, g) each (what the position statistics are made of)."""
        cfg = self.config
        raw = raw_terms(img, cfg.local_sigmas, cfg.local_terms, cfg.destripe, cfg.level_sigmas)
        return coarse(raw, cfg.map_size), coarse(raw, cfg.grid), coarse(raw * raw, cfg.grid)

    def knn_small(self, maps: np.ndarray) -> np.ndarray:
        """kNN maps (n, s, s) -> (n, m, m) at map_size (area), not yet standardised."""
        m = self.config.map_size
        return np.stack([cv2.resize(k, (m, m), interpolation=cv2.INTER_AREA) for k in maps]).astype(np.float32)

    def heads(self, img: np.ndarray, z: np.ndarray, knn_z: np.ndarray) -> tuple[np.ndarray, float]:
        """(pixel head's logits at map_size, image logit) from one image's standardised planes."""
        f = pixel_features(z, knn_z, self.config)
        pix = self.net_logits(f) if self.pixel_net is not None else np.tensordot(_np(self.pixel_w), f, axes=(0, 0)) + float(self.pixel_b)
        fi = image_features(img, z, knn_z, self.config)
        logit = float(((fi - _np(self.image_mean)) / _np(self.image_scale)) @ _np(self.image_w) + float(self.image_b))
        return pix.astype(np.float32), logit

    @torch.no_grad()
    def net_logits(self, f: np.ndarray) -> np.ndarray:
        """The pixel net's logits (m, m) from one image's pixel features (pixel_dim, m, m). Run in
        eval mode whatever the module's mode (batch statistics of one tile would be noise)."""
        net = self.pixel_net
        assert net is not None
        was = net.training
        net.eval()
        try:
            p = next(net.parameters())
            out = net(torch.from_numpy(np.ascontiguousarray(f))[None].to(p.device, p.dtype))[0]
        finally:
            net.train(was)
        return out.float().cpu().numpy()

    def standardise_knn(self, small: np.ndarray) -> np.ndarray:
        mean, std = (float(v) for v in self.knn_stats)
        return (small - mean) / max(std, 1e-6)

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def head_outputs(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Normalised images (b, c, s, s) -> the pixel head's logits (b, m, m) at map_size and the
        image head's logits (b,): the two parts ``combined_map`` joins (kept apart for tools that
        look at each)."""
        cfg = self.config
        knn = self.knn_small(super().anomaly_map(x).float().cpu().numpy())
        imgs = (x[:, 0] * cfg.std[0] + cfg.mean[0]).clamp(0, 1).float().cpu().numpy()
        mean, std = _np(self.term_mean), _np(self.term_std)
        pix, logits = [], []
        for img, k in zip(imgs, knn):
            small, _, _ = self.coarse_terms(img)
            p, s = self.heads(img, standardised(small, mean, std), self.standardise_knn(k))
            pix.append(p)
            logits.append(s)
        return np.stack(pix), np.asarray(logits, np.float32)

    @torch.no_grad()
    def maps_and_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (b, c, s, s) -> maps (b, s, s) and image scores (b,): the image head's
        probability of a defect (the sigmoid of its logit; the map is ``combined_map``, in logits)."""
        cfg = self.config
        pix, logits = self.head_outputs(x)
        maps = combined_map(pix, logits[:, None, None], cfg.map_image_weight, cfg.map_offset, cfg.map_gate)
        full = [cv2.resize(m.astype(np.float32), (x.shape[-1], x.shape[-2]), interpolation=cv2.INTER_LINEAR) for m in maps]
        return (torch.from_numpy(np.stack(full)).to(x.device),
                torch.from_numpy(defect_probability(logits).astype(np.float32)).to(x.device))

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps_and_scores(x)[0]

    @torch.no_grad()
    def score(self, maps: torch.Tensor) -> torch.Tensor:
        """Image scores come from the image head (``maps_and_scores``); from a map alone, its
        top-k mean is the nearest stand-in (used only by code that has nothing else)."""
        return torch.from_numpy(top_mean(maps.float().cpu().numpy(), self.config.topk, 0)).to(maps.device)
