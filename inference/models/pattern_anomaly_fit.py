"""Fitting the pattern anomaly detector's scoring terms on good images, and copies with other terms.

Training (``inference.training.anomaly_train`` / ``anomaly_bank`` / ``anomaly_stats``) fits the
per-position statistics that standardise each term (``pattern_anomaly_terms``) and builds copies
of a trained network carrying a memory bank or other term settings; nothing here runs when a
station predicts. ``load_pretrained_backbone`` starts the cell encoders from a local ViT file.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .anomaly_maps import (
    appearance_features,
    edge_profiles,
    fit_appearance,
    gaussian_smooth,
    leave_one_out_deviation,
    profile_map,
    set_position_statistics,
)
from .pattern_anomaly_terms import PatternState

if TYPE_CHECKING:
    from .pattern_anomaly import PatternAnomaly


class TermFitting(PatternState):
    """Mixin of ``PatternAnomaly``: fits the scoring terms' statistics on normalised good images."""

    @torch.no_grad()
    def fit_stats_statistics(self, images: torch.Tensor, map_images: int) -> None:
        """Fit the appearance statistics on normalised good images (n, c, s, s), and the stats
        map's per-position statistics on the first ``map_images`` of them, each scored against
        the other images' statistics (as the bank map leaves out each image's own rows)."""
        cfg = self.config
        if cfg.stats_fusion == "none":
            raise RuntimeError("this model has no appearance-statistics term (stats_fusion 'none')")
        feats = appearance_features(images, cfg.stats_blur, cfg.stats_window)
        mean, std = fit_appearance(feats, cfg.stats_floor)
        self.stats_mean.copy_(mean)
        self.stats_std.copy_(std)
        maps = gaussian_smooth(leave_one_out_deviation(feats, cfg.stats_floor, map_images), cfg.smoothing_sigma)
        set_position_statistics(maps, self.stats_map_mean, self.stats_map_std)

    @torch.no_grad()
    def fit_band_statistics(self, images: torch.Tensor, map_images: int) -> None:
        """As ``fit_stats_statistics``, for the row and column profiles of normalised good images."""
        cfg = self.config
        if cfg.band_fusion == "none":
            raise RuntimeError("this model has no edge-band term (band_fusion 'none')")
        rows, cols = edge_profiles(appearance_features(images, cfg.stats_blur, cfg.stats_window))
        for name, prof in (("row", rows), ("col", cols)):
            mean, std = fit_appearance(prof, cfg.stats_floor)
            getattr(self, f"band_{name}_mean").copy_(mean)
            getattr(self, f"band_{name}_std").copy_(std)
        maps = profile_map(leave_one_out_deviation(rows, cfg.stats_floor, map_images),
                           leave_one_out_deviation(cols, cfg.stats_floor, map_images))
        set_position_statistics(gaussian_smooth(maps, cfg.smoothing_sigma), self.band_map_mean, self.band_map_std)

    @torch.no_grad()
    def fit_map_statistics(self, batches) -> None:
        """Standardise the map per position with its mean/std over good images.

        Some places of a normal part are simply harder to predict (rims, edges, highlights);
        dividing by how much the score varies there on good parts removes those systematic
        false alarms. The std is floored by a tenth of the global std so flat regions do not
        turn tiny fluctuations into alarms. Textures give near-constant statistics (no effect).
        """
        set_position_statistics(torch.cat([self.raw_anomaly_map(b) for b in batches]), self.map_mean, self.map_std)

    @torch.no_grad()
    def fit_bank_statistics(self, batches, bank_ids: torch.Tensor) -> None:
        """Per-position statistics of the bank map over good images, as for the prediction map.

        ``batches`` yields (images, image ids); ``bank_ids`` names the image each bank row came
        from, so every image is scored against the bank without its own rows (otherwise the
        training images would match themselves and the statistics would be those of distance 0).
        """
        maps = torch.cat([self.raw_bank_map(x, ids, bank_ids) for x, ids in batches])
        set_position_statistics(maps, self.bank_map_mean, self.bank_map_std)


def with_memory_bank(model: PatternAnomaly, bank: torch.Tensor, **settings: Any) -> PatternAnomaly:
    """A copy of ``model`` carrying ``bank`` (rows [unit feature | y, x]) and bank ``settings``
    (config fields ``bank_k``, ``bank_position``, ``bank_weight``, ``bank_fusion``).

    The bank map statistics start neutral (mean 0, std 1): call ``fit_bank_statistics``.
    """
    from .pattern_anomaly import PatternAnomaly

    cfg = replace(model.config, bank_size=len(bank), **settings)
    out = PatternAnomaly(cfg).to(bank.device)
    state = {k: v for k, v in model.state_dict().items() if k not in ("memory_bank", "bank_map_mean", "bank_map_std")}
    missing, unexpected = out.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"memory_bank", "bank_map_mean", "bank_map_std"}:
        raise RuntimeError(f"model does not match its config (missing {missing}, unexpected {unexpected})")
    out.memory_bank.copy_(bank)
    return out.eval()


def with_terms(model: PatternAnomaly, **settings: Any) -> PatternAnomaly:
    """A copy of ``model`` with other settings of the statistics and edge-band terms (config
    fields ``stats_fusion``, ``stats_weight``, ``band_fusion``, ...; fusion "none" drops a term).
    Statistics a copy gains start neutral: call ``fit_stats_statistics`` / ``fit_band_statistics``;
    a copy that keeps a term keeps them."""
    from .pattern_anomaly import BAND_BUFFERS, STATS_BUFFERS, PatternAnomaly

    cfg = replace(model.config, **settings)
    out = PatternAnomaly(cfg).to(model.map_mean.device)
    own = out.state_dict()
    missing, unexpected = out.load_state_dict({k: v for k, v in model.state_dict().items() if k in own}, strict=False)
    if set(missing) - set(STATS_BUFFERS) - set(BAND_BUFFERS):
        raise RuntimeError(f"model does not match its config (missing {missing})")
    return out.eval()


def load_pretrained_backbone(model: PatternAnomaly, path: str | Path) -> dict[str, int]:
    """Copy timm-style ViT tensors from a local safetensors file into the three cell encoders.

    Only tensors whose name maps and whose shape matches are copied (``patch_embed.proj.*``,
    ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``). Returns the
    number copied per encoder; raises ValueError when nothing matches (wrong file or width).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: cannot read pretrained backbone ({exc})") from None
    counts: dict[str, int] = {}
    for name in ("encoder1", "encoder2", "comparer"):
        enc: torch.nn.Module = getattr(model, name)
        own = enc.state_dict()
        take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        enc.load_state_dict(take, strict=False)
        counts[name] = len(take)
    if not any(counts.values()):
        raise ValueError(f"{path}: no tensor matches this model's ViT (names/widths differ; dim={model.config.dim})")
    return counts
