"""The pattern anomaly detector's scoring terms: how its maps become one anomaly map and a score.

The network (``pattern_anomaly.PatternAnomaly``) predicts each cell from its neighbours and
compares; that prediction map is one term. The others describe good parts without the
network's prediction: the memory bank (distance of each token to its nearest good tokens), the
appearance statistics (per-position colour and contrast, the pixel-Gaussian baseline's map) and
the edge band (row and column profiles). Each is standardised per position with statistics
fitted on good images (``pattern_anomaly_fit``) and fused as the config says. Kept apart from
the network so a term can be read, tested and changed without the generator and comparer around it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .anomaly_maps import (
    ALONE_FUSIONS,
    appearance_deviation,
    appearance_features,
    edge_profiles,
    fuse_maps,
    gaussian_smooth,
    profile_map,
)
from .memory_bank import knn_distance, weighted

if TYPE_CHECKING:
    from .pattern_anomaly import PatternAnomalyConfig


class PatternState:
    """What the term mixins read from ``PatternAnomaly`` (declared for the type checker only)."""

    if TYPE_CHECKING:  # provided by PatternAnomaly (its config, buffers and network passes)
        config: PatternAnomalyConfig
        map_mean: torch.Tensor
        map_std: torch.Tensor
        memory_bank: torch.Tensor
        bank_map_mean: torch.Tensor
        bank_map_std: torch.Tensor
        stats_mean: torch.Tensor
        stats_std: torch.Tensor
        stats_map_mean: torch.Tensor
        stats_map_std: torch.Tensor
        band_row_mean: torch.Tensor
        band_row_std: torch.Tensor
        band_col_mean: torch.Tensor
        band_col_std: torch.Tensor
        band_map_mean: torch.Tensor
        band_map_std: torch.Tensor

        def raw_anomaly_map(self, x: torch.Tensor) -> torch.Tensor: ...
        def token_features(self, x: torch.Tensor, oy: int = 0, ox: int = 0) -> torch.Tensor: ...
        def raw_bank_map(self, x: torch.Tensor, image_ids: torch.Tensor | None = None,
                         bank_ids: torch.Tensor | None = None) -> torch.Tensor: ...
        def _paste(self, tokens: torch.Tensor, oy: int, ox: int, h: int, w: int) -> torch.Tensor: ...


class ScoringTerms(PatternState):
    """Mixin of ``PatternAnomaly``: the term maps, their fusion and the image score."""

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (b, c, s, s) -> anomaly maps (b, s, s), per-position standardised.

        With a memory bank the bank map (standardised the same way) is fused in, then the
        appearance-statistics map and the edge-band map when the model carries them, in that
        order; a term fused "alone" replaces everything before it.
        """
        cfg = self.config
        extras = [(f, w, fn) for f, w, fn in ((cfg.stats_fusion, cfg.stats_weight, self.stats_map),
                                              (cfg.band_fusion, cfg.band_weight, self.band_map)) if f != "none"]
        alone = [i for i, (f, _, _) in enumerate(extras) if f in ALONE_FUSIONS]
        # start from the last term fused alone (nothing before it counts), else from the pattern map
        out = extras[alone[-1]][2](x) if alone else self.pattern_map(x)
        for fusion, w, fn in extras[alone[-1] + 1 if alone else 0:]:
            out = fuse_maps(out, fn(x), fusion, w)
        return out

    @torch.no_grad()
    def pattern_map(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction map, fused with the memory-bank map as configured (no statistics term)."""
        cfg = self.config
        if cfg.bank_size and cfg.bank_fusion == "bank":
            return self.bank_map(x)
        z = self.prediction_map(x)
        return fuse_maps(z, self.bank_map(x), cfg.bank_fusion, cfg.bank_weight) if cfg.bank_size else z

    def _standardised(self, raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """A term's raw map, per-position standardised with its fitted statistics when configured."""
        return (raw - mean) / std if self.config.normalise_map else raw

    @torch.no_grad()
    def prediction_map(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction-comparison term alone (per-position standardised when configured)."""
        return self._standardised(self.raw_anomaly_map(x), self.map_mean, self.map_std)

    @torch.no_grad()
    def bank_map(self, x: torch.Tensor) -> torch.Tensor:
        """The memory-bank term alone (per-position standardised when configured)."""
        return self._standardised(self.raw_bank_map(x), self.bank_map_mean, self.bank_map_std)

    @torch.no_grad()
    def stats_map(self, x: torch.Tensor) -> torch.Tensor:
        """The appearance-statistics term alone (per-position standardised when configured)."""
        return self._standardised(self.raw_stats_map(x), self.stats_map_mean, self.stats_map_std)

    @torch.no_grad()
    def raw_stats_map(self, x: torch.Tensor) -> torch.Tensor:
        """RMS z-score of blurred colour and local contrast against the fit images, smoothed (b, s, s):
        the pixel-Gaussian baseline's map."""
        cfg = self.config
        if cfg.stats_fusion == "none":
            raise RuntimeError("this model has no appearance-statistics term (stats_fusion 'none')")
        dev = appearance_deviation(appearance_features(x, cfg.stats_blur, cfg.stats_window), self.stats_mean, self.stats_std)
        return gaussian_smooth(dev, cfg.smoothing_sigma)

    @torch.no_grad()
    def band_map(self, x: torch.Tensor) -> torch.Tensor:
        """The edge-band term alone (per-position standardised when configured)."""
        return self._standardised(self.raw_band_map(x), self.band_map_mean, self.band_map_std)

    @torch.no_grad()
    def raw_band_map(self, x: torch.Tensor) -> torch.Tensor:
        """RMS z-score of each row's and each column's mean features (minus the image's median)
        against the fit images; a pixel takes the larger of its row's and column's; smoothed (b, s, s)."""
        cfg = self.config
        if cfg.band_fusion == "none":
            raise RuntimeError("this model has no edge-band term (band_fusion 'none')")
        rows, cols = edge_profiles(appearance_features(x, cfg.stats_blur, cfg.stats_window))
        dev = profile_map(appearance_deviation(rows, self.band_row_mean, self.band_row_std),
                          appearance_deviation(cols, self.band_col_mean, self.band_col_std))
        return gaussian_smooth(dev, cfg.smoothing_sigma)

    @torch.no_grad()
    def raw_bank_map(self, x: torch.Tensor, image_ids: torch.Tensor | None = None,
                     bank_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Distance of each real token to its nearest bank rows, as maps (b, s, s) (all shifted grids).

        ``image_ids`` (b,) with ``bank_ids`` leave each image's own rows out (fit_bank_statistics).
        """
        cfg = self.config
        if not cfg.bank_size:
            raise RuntimeError("this model has no memory bank (bank_size 0)")
        b, _, h, w = x.shape
        p, t = cfg.patch_size, cfg.tokens_per_side
        step = p // cfg.shifts
        bank = weighted(self.memory_bank, cfg.bank_position)
        total = x.new_zeros(b, h, w)
        for oy in range(0, p, step):
            for ox in range(0, p, step):
                rows = self.token_features(x, oy, ox)
                ny, nx = rows.shape[1:3]
                qids = None if image_ids is None else image_ids.repeat_interleave(ny * nx * t * t)
                d = knn_distance(weighted(rows.reshape(-1, rows.shape[-1]), cfg.bank_position), bank, cfg.bank_k,
                                 query_ids=qids, bank_ids=bank_ids)
                total += self._paste(d.view(b, ny, nx, t, t), oy, ox, h, w)
        return gaussian_smooth(total / cfg.shifts**2, cfg.smoothing_sigma)

    @torch.no_grad()
    def score(self, maps: torch.Tensor) -> torch.Tensor:
        """Image score: the map's maximum, leaving out ``score_margin`` pixels at each border.

        Parts that are not aligned in the frame (tiles of many aspect ratios, squashed to a
        square) put their edges at the image border, where the grid's padded cells make the
        map's maxima on good parts; the map itself still covers the border.
        """
        m = self.config.score_margin
        if m and min(maps.shape[-2:]) > 2 * m:
            maps = maps[..., m:-m, m:-m]
        return maps.flatten(1).amax(1)
