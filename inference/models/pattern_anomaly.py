"""Pattern generative + contrastive anomaly detector (docs/design/models.md §3), trained on good parts only.

Idea (paper: "Unsupervised Industrial Anomaly Detection via Pattern Generative and Contrastive
Networks"): cut the image into a grid of cells; along each row two consecutive cells (patch1,
patch2) are read by two ViT encoders and a ViT decoder predicts the next cell (patch3'), the
"what a normal part would show here" guess. A Siamese ViT (shared weights) embeds patch3' and
the real patch3; low similarity means anomaly. Prediction runs both ways along the row
(patch1, patch2 -> patch3 and patch3, patch2 -> patch1) so border cells get a guess too, and
both guesses are averaged.

Choices the paper leaves open, and ours:
- Cells are ``patch_size`` pixels, each read as a small grid of ``token_size`` tokens, so the
  comparison gives one similarity per token (finer than one per cell). The heatmap is built
  from several grids shifted by ``patch_size / shifts`` (overlapping windows), averaged and
  Gaussian-smoothed; the image score is the maximum of that map.
- Cell positions enter as Fourier features of the cell centre in image coordinates (not a
  grid-index table), so shifted grids and any grid size share one embedding.
- The comparison head is trained as a discriminator: DRAEM-style synthetic defects (cut-paste,
  noise and intensity blobs) and swapped cells are the negatives, untouched cells the
  positives; the generator learns to predict the clean cell from a possibly corrupted
  context. ``similarity`` is ``w * (1 - cos) + b`` per token, read through a sigmoid.
- From scratch by default; ``load_pretrained_backbone`` copies timm-style ViT tensors
  (``patch_embed.proj``, ``blocks.N.*``) from a local safetensors file where shapes match.
- Selective scan: ``mixer="ss2d"`` replaces self-attention in every block with
  ``inference.ssm.SS2D`` over the token grid (cells are 2-D token grids; the decoder sees
  [patch1 | patch2 | query] side by side as one grid, so the scan runs in reading order).
  Attention stays the default because every sequence here is short (16-48 tokens), where
  attention is cheap and exact: measured on the CPU preset (batch 8, 1 thread, numba scan),
  a training step costs 0.49 CPU-s with attention and 7-8.6 CPU-s with SS2D, which would
  break the 15-minute on-the-spot training budget. The SS2D switch is the family's shared
  core for stations with the CUDA scan, and an ablation.
- ``normalise_map`` standardises the map per position with statistics over good training
  images (``fit_map_statistics``): it removes systematic alarms at hard-to-predict places of
  aligned parts (bottle: image AUROC 0.86 -> 0.98 for the same weights).
- Optional memory bank (``bank_size`` > 0, built after training by
  ``inference.training.anomaly_bank``): the Siamese comparer's embeddings of real tokens of
  good training images; each test token's distance to its nearest bank rows is a second map,
  standardised like the first and fused with it (``bank_fusion``). It catches large defects
  whose context is anomalous too, where the prediction follows the context (see memory_bank.py).
- Optional appearance-statistics term (``stats_fusion`` other than "none", added after
  training by ``inference.training.anomaly_stats``): the pixel-Gaussian baseline's per-position
  statistics of blurred colour and local contrast over the fit images (anomaly_maps.py),
  standardised like the other terms and fused last. On aligned parts it outlines the whole
  extent of large structural defects that the learned terms light only in part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..ssm import SS2D
from .anomaly_maps import gaussian_smooth
from .pattern_anomaly_fit import TermFitting
from .pattern_anomaly_terms import ScoringTerms
from .registry import register

MIXERS = ("attention", "ss2d")
FUSIONS = ("sum", "max", "bank")
STATS_FUSIONS = ("none", "sum", "max", "stats")
STATS_BUFFERS = ("stats_mean", "stats_std", "stats_map_mean", "stats_map_std")
BAND_FUSIONS = ("none", "sum", "max", "band")
BAND_BUFFERS = ("band_row_mean", "band_row_std", "band_col_mean", "band_col_std", "band_map_mean", "band_map_std")


@dataclass(frozen=True)
class PatternAnomalyConfig:
    image_size: int = 128
    in_channels: int = 3
    patch_size: int = 16
    token_size: int = 4
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 2.0
    encoder_depth: int = 2
    decoder_depth: int = 2
    compare_depth: int = 2
    mixer: str = "attention"
    bidirectional: bool = True
    axes: int = 1
    position_features: int = 8
    shifts: int = 2
    smoothing_sigma: float = 2.0
    normalise_map: bool = True
    score_margin: int = 0
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    # Memory bank term (0 rows = none): k nearest rows, weight of the token position in the
    # distance, and fusion with the prediction map: "sum" z + w*zb, "max" max(z, w*zb), "bank" zb.
    bank_size: int = 0
    bank_k: int = 1
    bank_position: float = 0.0
    bank_weight: float = 1.0
    bank_fusion: str = "sum"
    # Appearance-statistics term ("none" = no term): fused with the map above as "sum"
    # map + w*zs, "max" max(map, w*zs), or "stats" zs alone. Features and std floor as the
    # pixel-Gaussian baseline's (anomaly_maps.py).
    stats_fusion: str = "none"
    stats_weight: float = 1.0
    stats_blur: float = 1.0
    stats_window: int = 5
    stats_floor: float = 0.02
    # Edge-band term ("none" = no term): the same features averaged along rows and columns
    # (anomaly_maps.edge_profiles), for broad bands along an edge; fused after the statistics
    # term as "sum", "max" or "band" (alone).
    band_fusion: str = "none"
    band_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.stats_fusion not in STATS_FUSIONS or self.stats_weight < 0:
            raise ValueError(f"stats_fusion must be one of {STATS_FUSIONS} with stats_weight >= 0, got "
                             f"{self.stats_fusion!r}, {self.stats_weight}")
        if self.band_fusion not in BAND_FUSIONS or self.band_weight < 0:
            raise ValueError(f"band_fusion must be one of {BAND_FUSIONS} with band_weight >= 0, got "
                             f"{self.band_fusion!r}, {self.band_weight}")
        if self.stats_window < 1 or self.stats_window % 2 == 0 or self.stats_blur < 0 or self.stats_floor <= 0:
            raise ValueError(f"stats_window must be odd, stats_blur >= 0 and stats_floor > 0, got "
                             f"{self.stats_window}, {self.stats_blur}, {self.stats_floor}")
        if self.bank_size < 0 or (self.bank_size and not 1 <= self.bank_k <= self.bank_size):
            raise ValueError(f"bank_size must be >= 0 and bank_k in [1, bank_size], got {self.bank_size}, {self.bank_k}")
        if self.bank_fusion not in FUSIONS or self.bank_weight < 0 or self.bank_position < 0:
            raise ValueError(f"bank_fusion must be one of {FUSIONS} with bank_weight, bank_position >= 0, got "
                             f"{self.bank_fusion!r}, {self.bank_weight}, {self.bank_position}")
        if not 0 <= self.score_margin < self.image_size // 2:
            raise ValueError(f"score_margin must be in [0, image_size/2), got {self.score_margin}")
        if self.axes not in (1, 2):
            raise ValueError(f"axes must be 1 (predict along rows) or 2 (rows and columns), got {self.axes!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.patch_size % self.token_size:
            raise ValueError("patch_size must be a multiple of token_size")
        if self.image_size % self.patch_size or self.image_size // self.patch_size < 3:
            raise ValueError("image_size must be a multiple of patch_size with at least 3 cells per row")
        if self.patch_size % self.shifts:
            raise ValueError("patch_size must be divisible by shifts")
        if self.dim % self.heads:
            raise ValueError("dim must be divisible by heads")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError("mean/std need one value per input channel")

    @property
    def tokens_per_side(self) -> int:
        return self.patch_size // self.token_size


PRESETS: dict[str, PatternAnomalyConfig] = {
    # Unit tests: a forward in well under a second.
    "test_tiny": PatternAnomalyConfig(image_size=24, patch_size=8, token_size=4, dim=16, heads=2,
                                      encoder_depth=1, decoder_depth=1, compare_depth=1, position_features=2),
    # Trains ~200 good images in minutes on a 2-core CPU (the default).
    "cpu": PatternAnomalyConfig(),
    # Closer to the paper's ViT scale (ViT-Tiny width; pretrained weights fit here).
    "paper": PatternAnomalyConfig(image_size=256, patch_size=64, token_size=16, dim=192, heads=3,
                                  mlp_ratio=4.0, encoder_depth=6, decoder_depth=4, compare_depth=6, shifts=4,
                                  smoothing_sigma=4.0),
}
# What `train anomaly --arch pattern_anomaly` takes without --preset.
DEFAULT_PRESET = "cpu"


def preset(name: str, **overrides) -> PatternAnomalyConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class Attention(nn.Module):
    """timm-compatible naming (qkv, proj) so a pretrained ViT's tensors load by name."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class ScanMixer(nn.Module):
    """SS2D over the token grid, as a drop-in for attention."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ss2d = SS2D(dim, d_state=8, expand=1.0)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, d = x.shape
        h, w = grid
        return self.ss2d(x.view(b, h, w, d)).reshape(b, n, d)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: PatternAnomalyConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads) if cfg.mixer == "attention" else ScanMixer(cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class CellEncoder(nn.Module):
    """A small ViT reading one cell as a (t, t) grid of tokens."""

    def __init__(self, cfg: PatternAnomalyConfig, depth: int) -> None:
        super().__init__()
        t = cfg.tokens_per_side
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.token_size, stride=cfg.token_size)
        self.pos_embed = nn.Parameter(torch.randn(1, t * t, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.grid = (t, t)

    def forward(self, cells: torch.Tensor, cell_pos: torch.Tensor) -> torch.Tensor:
        """cells (n, c, p, p), cell_pos (n, dim) -> tokens (n, t*t, dim)."""
        x = cast(nn.Conv2d, self.patch_embed.proj)(cells).flatten(2).transpose(1, 2)  # a bare Module's child
        x = x + self.pos_embed + cell_pos[:, None, :]
        for blk in self.blocks:
            x = blk(x, self.grid)
        return self.norm(x)


@register("pattern_anomaly", "anomaly", PatternAnomalyConfig)
class PatternAnomaly(TermFitting, ScoringTerms, nn.Module):
    pos_freqs: torch.Tensor  # the other buffers are declared on PatternState (pattern_anomaly_terms)

    def __init__(self, config: PatternAnomalyConfig | None = None) -> None:
        super().__init__()
        cfg = config or PatternAnomalyConfig()
        self.config = cfg
        t, d = cfg.tokens_per_side, cfg.dim
        self.register_buffer("pos_freqs", 2.0 ** torch.arange(cfg.position_features, dtype=torch.float32) * math.pi,
                             persistent=False)
        self.pos_proj = nn.Linear(4 * cfg.position_features, d)
        self.encoder1 = CellEncoder(cfg, cfg.encoder_depth)  # reads the far context cell (patch1)
        self.encoder2 = CellEncoder(cfg, cfg.encoder_depth)  # reads the near context cell (patch2)
        self.segment = nn.Parameter(torch.randn(3, d) * 0.02)  # far / near / query token roles
        self.direction = nn.Parameter(torch.randn(2 * cfg.axes, d) * 0.02)  # forward / backward (per axis)
        self.queries = nn.Parameter(torch.randn(1, t * t, d) * 0.02)
        self.decoder = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d)
        self.to_pixels = nn.Linear(d, cfg.in_channels * cfg.token_size**2)
        self.comparer = CellEncoder(cfg, cfg.compare_depth)  # Siamese: same weights for both inputs
        self.sim_scale = nn.Parameter(torch.tensor(2.0))
        self.sim_bias = nn.Parameter(torch.tensor(-2.0))
        # Per-position statistics of the raw map over good images (see fit_map_statistics).
        self.register_buffer("map_mean", torch.zeros(cfg.image_size, cfg.image_size))
        self.register_buffer("map_std", torch.ones(cfg.image_size, cfg.image_size))
        if cfg.bank_size:
            # Rows [unit feature | y, x] (memory_bank.py) and the bank map's per-position statistics.
            self.register_buffer("memory_bank", torch.zeros(cfg.bank_size, d + 2))
            self.register_buffer("bank_map_mean", torch.zeros(cfg.image_size, cfg.image_size))
            self.register_buffer("bank_map_std", torch.ones(cfg.image_size, cfg.image_size))
        if cfg.stats_fusion != "none":
            # Appearance features' per-position mean/std over the fit images, and the stats map's.
            nf, s = 2 * cfg.in_channels, cfg.image_size
            self.register_buffer("stats_mean", torch.zeros(nf, s, s))
            self.register_buffer("stats_std", torch.ones(nf, s, s))
            self.register_buffer("stats_map_mean", torch.zeros(s, s))
            self.register_buffer("stats_map_std", torch.ones(s, s))
        if cfg.band_fusion != "none":
            # Row and column profiles' per-position mean/std over the fit images (f, s, 1), and the band map's.
            nf, s = 2 * cfg.in_channels, cfg.image_size
            for name in ("row", "col"):
                self.register_buffer(f"band_{name}_mean", torch.zeros(nf, s, 1))
                self.register_buffer(f"band_{name}_std", torch.ones(nf, s, 1))
            self.register_buffer("band_map_mean", torch.zeros(s, s))
            self.register_buffer("band_map_std", torch.ones(s, s))

    # ---- geometry -------------------------------------------------------------------------
    def cell_grid(self, x: torch.Tensor, oy: int, ox: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells of a grid whose origin is shifted by (-oy, -ox) pixels (reflect padding).

        Returns cells (b, ny, nx, c, p, p) and cell centres (ny, nx, 2) in image units [0, 1].
        """
        p = self.config.patch_size
        _, _, h, w = x.shape
        ny, nx = math.ceil((h + oy) / p), math.ceil((w + ox) / p)
        pad = (ox, nx * p - w - ox, oy, ny * p - h - oy)
        if any(pad):
            x = F.pad(x, pad, mode="reflect") if max(pad) < min(h, w) else F.pad(x, pad, mode="replicate")
        b, c = x.shape[:2]
        cells = x.reshape(b, c, ny, p, nx, p).permute(0, 2, 4, 1, 3, 5)
        cy = (torch.arange(ny, device=x.device, dtype=x.dtype) * p - oy + p / 2) / h
        cx = (torch.arange(nx, device=x.device, dtype=x.dtype) * p - ox + p / 2) / w
        centres = torch.stack(torch.meshgrid(cy, cx, indexing="ij"), dim=-1)
        return cells, centres

    def position(self, centres: torch.Tensor) -> torch.Tensor:
        ang = centres[..., None] * self.pos_freqs  # (..., 2, f)
        feats = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)
        return self.pos_proj(feats)

    @staticmethod
    def triples(ny: int, nx: int, bidirectional: bool, device=None, axis: int = 0) -> torch.Tensor:
        """(k, 5) long rows of (row, far_col, near_col, target_col, direction).

        Forward (direction 0): (j, j+1) -> j+2; backward (direction 1): (j+2, j+1) -> j.
        ``axis`` 1 (columns) runs on the transposed image and offsets the direction by 2, so
        the decoder knows which way it is predicting.
        """
        rows = []
        for r in range(ny):
            for j in range(nx - 2):
                rows.append((r, j, j + 1, j + 2, 2 * axis))
                if bidirectional:
                    rows.append((r, j + 2, j + 1, j, 2 * axis + 1))
        return torch.tensor(rows, dtype=torch.long, device=device)

    # ---- networks -------------------------------------------------------------------------
    def encode_cells(self, cells: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, ny, nx = cells.shape[:3]
        flat = cells.reshape(b * ny * nx, *cells.shape[3:])
        pos_flat = pos.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * ny * nx, -1)
        e1 = self.encoder1(flat, pos_flat).view(b, ny, nx, -1, self.config.dim)
        e2 = self.encoder2(flat, pos_flat).view(b, ny, nx, -1, self.config.dim)
        return e1, e2

    def generate(self, e1: torch.Tensor, e2: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Predict target cells. idx (k, 6): (image, row, far, near, target, direction) -> (k, c, p, p)."""
        cfg = self.config
        t, p = cfg.tokens_per_side, cfg.patch_size
        bi, r, far, near, tgt, dirn = idx.unbind(1)
        dvec = self.direction[dirn][:, None, :]
        q = self.queries + pos[r, tgt][:, None, :] + self.segment[2] + dvec
        x = torch.cat([e1[bi, r, far] + self.segment[0] + dvec, e2[bi, r, near] + self.segment[1] + dvec, q], dim=1)
        for blk in self.decoder:
            x = blk(x, (t, 3 * t))
        out = self.to_pixels(self.decoder_norm(x[:, 2 * t * t:]))  # (k, t*t, c*s*s)
        s, c = cfg.token_size, cfg.in_channels
        return out.view(-1, t, t, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(-1, c, p, p)

    def compare(self, predicted: torch.Tensor, real: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Siamese comparison -> per-token anomaly logits (k, t, t)."""
        t = self.config.tokens_per_side
        feats = self.comparer(torch.cat([predicted, real]), torch.cat([pos, pos]))
        fp, fr = feats.chunk(2)
        cos = F.cosine_similarity(fp, fr, dim=-1)
        return (F.softplus(self.sim_scale) * (1.0 - cos) * 4.0 + self.sim_bias).view(-1, t, t)

    def forward(self, x: torch.Tensor, oy: int = 0, ox: int = 0, idx: torch.Tensor | None = None,
                context: torch.Tensor | None = None, axis: int = 0) -> dict[str, torch.Tensor]:
        """Run generation + comparison on triples ``idx`` (default: all) of the shifted grid.

        ``context`` (same shape as x) is what the encoders read when it differs from the
        comparison target, e.g. training reads a corrupted image and predicts its clean cells.
        ``axis`` 1 means x is the transposed image (prediction down the columns).
        """
        cells, centres = self.cell_grid(x, oy, ox)
        ctx_cells = cells if context is None else self.cell_grid(context, oy, ox)[0]
        b, ny, nx = cells.shape[:3]
        pos = self.position(centres)
        if idx is None:
            tri = self.triples(ny, nx, self.config.bidirectional, x.device, axis)
            img = torch.arange(b, device=x.device).repeat_interleave(len(tri))
            idx = torch.cat([img[:, None], tri.repeat(b, 1)], dim=1)
        e1, e2 = self.encode_cells(ctx_cells, pos)
        pred = self.generate(e1, e2, pos, idx)
        real = cells[idx[:, 0], idx[:, 1], idx[:, 4]]
        logits = self.compare(pred, real, pos[idx[:, 1], idx[:, 4]])
        return {"predicted": pred, "real": real, "logits": logits, "idx": idx, "grid": torch.tensor([ny, nx])}

    # ---- token features and raw maps (the terms: pattern_anomaly_terms; their fitting: pattern_anomaly_fit)
    @torch.no_grad()
    def token_features(self, x: torch.Tensor, oy: int = 0, ox: int = 0) -> torch.Tensor:
        """Bank rows of every real token of a shifted grid: (b, ny, nx, t, t, dim + 2).

        The comparer's token embeddings (unit length: it is trained through a cosine) followed
        by the token centre (y, x) in image units.
        """
        cfg = self.config
        p, t, s = cfg.patch_size, cfg.tokens_per_side, cfg.token_size
        cells, centres = self.cell_grid(x, oy, ox)
        b, ny, nx = cells.shape[:3]
        pos = self.position(centres).unsqueeze(0).expand(b, -1, -1, -1).reshape(b * ny * nx, -1)
        feats = F.normalize(self.comparer(cells.reshape(b * ny * nx, *cells.shape[3:]), pos), dim=-1)
        off = (torch.arange(t, device=x.device, dtype=x.dtype) * s + s / 2 - p / 2)
        h, w = x.shape[-2:]
        ty = (centres[..., 0, None, None] + off[:, None] / h).expand(ny, nx, t, t)
        tx = (centres[..., 1, None, None] + off[None, :] / w).expand(ny, nx, t, t)
        where = torch.stack([ty, tx], dim=-1).expand(b, -1, -1, -1, -1, -1)
        return torch.cat([feats.view(b, ny, nx, t, t, -1), where], dim=-1)

    def _paste(self, tokens: torch.Tensor, oy: int, ox: int, h: int, w: int) -> torch.Tensor:
        """Per-token values of a shifted grid (b, ny, nx, t, t) -> pixel map (b, h, w) of the image."""
        b, ny, nx, t = tokens.shape[:4]
        grid = tokens.permute(0, 1, 3, 2, 4).reshape(b, 1, ny * t, nx * t)
        full = F.interpolate(grid, scale_factor=self.config.token_size, mode="nearest")[:, 0]
        return full[:, oy:oy + h, ox:ox + w]

    @torch.no_grad()
    def raw_anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly probability maps (b, s, s) before per-position standardisation.

        With ``axes=2`` the cells are also predicted down the columns (the transposed image)
        and both maps are averaged: a stripe or band that runs along a row is predictable from
        its row neighbours but breaks the column's pattern, and vice versa.
        """
        maps = [self._axis_map(x, 0)]
        if self.config.axes == 2:
            maps.append(self._axis_map(x.transpose(-1, -2), 1).transpose(-1, -2))
        return gaussian_smooth(cast(torch.Tensor, sum(maps)) / len(maps), self.config.smoothing_sigma)

    def _axis_map(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """Unsmoothed map of the predictions along the rows of x (both ways, all shifted grids)."""
        cfg = self.config
        b, _, h, w = x.shape
        p, t = cfg.patch_size, cfg.tokens_per_side
        step = p // cfg.shifts
        total = x.new_zeros(b, h, w)
        for oy in range(0, p, step):
            for ox in range(0, p, step):
                out = self(x, oy, ox, axis=axis)
                ny, nx = (int(v) for v in out["grid"])
                prob = torch.sigmoid(out["logits"])  # (k, t, t)
                acc = x.new_zeros(b, ny, nx, t, t)
                cnt = x.new_zeros(b, ny, nx, 1, 1)
                idx = out["idx"]
                acc.index_put_((idx[:, 0], idx[:, 1], idx[:, 4]), prob, accumulate=True)
                cnt.index_put_((idx[:, 0], idx[:, 1], idx[:, 4]), torch.ones_like(prob[:, :1, :1]), accumulate=True)
                total += self._paste(acc / cnt.clamp(min=1), oy, ox, h, w)
        return total / cfg.shifts**2
