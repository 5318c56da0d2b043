"""MemoryMamba: a memory-augmented VMamba-style classifier for surface-defect images.

Built from the paper's description (docs/design/models.md §1). Choices the paper leaves open, and ours:

- Patch embedding gives H/4 x W/4 x C. ``stem="patch"`` is the paper's non-overlapping 4x4
  projection; ``stem="conv"`` is two overlapping stride-2 3x3 convolutions (VMamba v2's stem),
  ``"conv3"`` adds a stride-1 convolution between them; both help from-scratch training on
  small texture data sets.
- Memory encoding works per location: the query MLPs map every position of F~ = Conv(Z) to
  slot logits, so the read-out M̄ is a feature map and the fusion module's "Pool(M̄)" means
  what it says (global average). The memory vectors have the block's width so that the fused
  vector can be added to Z. The query vector used by the contrastive loss is the spatial mean
  of the per-location logits.
- Similarity for the fusion weight β: cosine (the paper's best); ``"l1"`` and ``"l2"`` turn a
  distance into a weight in (0, 1] as 1 / (1 + mean |v - z|) and 1 / (1 + ||v - z|| / sqrt(C)).
- The fused memory vector is added with weight ``memory_scale`` (0.1 in the authors' code).
  ``use_fusion=False`` (the "w/o Fusion" ablation) adds the pooled read-outs unweighted (β = 1).
- Block: Z = Linear(F); F̄ = Z + fused memory; S = SS2D(F̄); F' = Linear(F + LayerNorm(S)),
  exactly equations (8)-(13). ``mlp_ratio > 0`` appends a residual feed-forward layer
  F' + MLP(LayerNorm(F')) as VMamba's blocks have (the authors build on VMamba-T); 0 is the
  paper's block as printed. From scratch on a CPU budget the feed-forward layer is what makes
  the small preset learn in tens of epochs.
- Input is float in [0, 1]; the model normalises it itself so a saved model fully describes
  its own preprocessing. ``input_norm="fixed"`` is (x - mean) / std with the config's
  constants. ``"per_image"`` standardises each image by its own mean and standard deviation:
  on dark, low-contrast surfaces (magnetic tiles: pixel std about 0.07 of the range, image
  means spread over 0.2-0.45) the fixed constants leave the texture a fraction of a unit while
  exposure differences between images (and the brightness augmentation) are as large as the
  whole texture, and from-scratch training sat at the class prior for 570 steps. Per-image
  standardisation makes the model exposure- and gain-invariant and puts every image's
  texture, defects included, on the same unit scale.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.registry import register
from inference.ssm import SS2D

SIMILARITIES = ("cosine", "l1", "l2")
INPUT_NORMS = ("fixed", "per_image")
# Floor on a per-image standard deviation (input units, range 0-1): a flat image is mapped to
# zeros instead of having its sensor noise blown up to unit variance.
MIN_IMAGE_STD = 0.01
# Initial weight of the LayerNorm on each block's SS2D output (see MemoryMamba._init).
SCAN_BRANCH_GAIN = 0.1
STEMS = ("patch", "conv", "conv3")


@dataclass(frozen=True)
class MemoryMambaConfig:
    num_classes: int = 6
    in_chans: int = 3
    img_size: int = 224  # training / inference resolution (square); any size runs
    stem: str = "patch"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 2, 2)
    d_state: int = 16
    ssm_expand: float = 2.0
    ssm_conv: int = 3
    memory_conv: int = 3  # kernel of the depthwise Conv in F~ = Conv(Z)
    mlp_ratio: float = 0.0  # 0: the paper's block; > 0: residual feed-forward after it
    coarse_slots: int = 4
    fine_slots: int = 4
    use_coarse_memory: bool = True
    use_fine_memory: bool = True
    use_fusion: bool = True
    similarity: str = "cosine"
    memory_scale: float = 0.1
    head_hidden: int = 384
    dropout: float = 0.1
    # Losses: L = CE + lambda_c * contrastive(coarse) + lambda_f * InfoNCE(fine).
    lambda_coarse: float = 0.1
    lambda_fine: float = 0.1
    contrastive_margin: float = 1.0
    nce_temperature: float = 0.5
    label_smoothing: float = 0.0
    # Input normalisation applied inside forward (input is float in [0, 1]): "fixed" uses
    # mean/std below, "per_image" each image's own mean and std (see the module docstring).
    mean: float = 0.5
    std: float = 0.25
    input_norm: str = "fixed"

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (gray) or 3 (RGB), got {self.in_chans}")
        if not self.depths or any(d < 1 for d in self.depths):
            raise ValueError(f"depths must be positive, got {self.depths}")
        if self.coarse_slots < 1 or self.fine_slots < 1:
            raise ValueError("memory sizes must be at least 1")
        if self.num_classes < 2:
            raise ValueError("a classifier needs at least 2 classes")

    @property
    def color_mode(self) -> str:
        return "gray" if self.in_chans == 1 else "rgb"

    @property
    def stage_dims(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(len(self.depths))]


PRESETS: dict[str, MemoryMambaConfig] = {
    # Unit tests: a forward pass in milliseconds.
    "test_tiny": MemoryMambaConfig(
        in_chans=1, img_size=32, embed_dim=8, depths=(1, 1), d_state=4, ssm_expand=1.0,
        head_hidden=16, coarse_slots=3, fine_slots=3, dropout=0.0,
    ),
    # Trains on a shared 2-core CPU (one thread): about 0.4 CPU-seconds per batch of 32, so
    # 80 NEU epochs take under half an hour of one core. Gray 1-channel overlapping stem at
    # 96^2, stage widths 16-32-64-128, state size 4, no SS2D expansion.
    "cpu": MemoryMambaConfig(
        in_chans=1, img_size=96, stem="conv3", embed_dim=16, depths=(1, 1, 2, 1), d_state=4,
        ssm_expand=1.0, mlp_ratio=2.0, head_hidden=128, coarse_slots=4, fine_slots=4, dropout=0.1,
    ),
    # The paper's scale (VMamba-T-like widths, 2 blocks per stage, 224^2 RGB) for GPU stations.
    "paper": MemoryMambaConfig(
        in_chans=3, img_size=224, stem="patch", embed_dim=96, depths=(2, 2, 2, 2), d_state=16,
        ssm_expand=2.0, head_hidden=384, coarse_slots=4, fine_slots=4, dropout=0.1,
    ),
}

class Ablation(TypedDict, total=False):
    """The config fields an ablation switches (``preset(..., ablation=)``)."""

    use_coarse_memory: bool
    use_fine_memory: bool
    use_fusion: bool
    similarity: str


ABLATIONS: dict[str, Ablation] = {
    "full": {},
    "no_coarse": {"use_coarse_memory": False},
    "no_fine": {"use_fine_memory": False},
    "no_fusion": {"use_fusion": False},
    "no_memory": {"use_coarse_memory": False, "use_fine_memory": False, "use_fusion": False},
    "l1": {"similarity": "l1"},
    "l2": {"similarity": "l2"},
}


def preset(name: str, ablation: str = "full", **overrides: Any) -> MemoryMambaConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    if ablation not in ABLATIONS:
        raise KeyError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    return dataclasses.replace(PRESETS[name], **ABLATIONS[ablation], **overrides)


class BlockAux(NamedTuple):
    """What one block hands to the auxiliary losses (None where that memory is switched off)."""

    coarse_query: torch.Tensor | None  # (b, coarse_slots): pooled h_c
    fine_feature: torch.Tensor | None  # (b, C): pooled Z
    fine_readout: torch.Tensor | None  # (b, C): MLP(pooled M̄_f)


class MemoryOutput(NamedTuple):
    logits: torch.Tensor
    aux: list[BlockAux]


def _similarity(kind: str, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(b, C), (b, C) -> (b, 1) weight."""
    if kind == "cosine":
        return F.cosine_similarity(v, z, dim=-1, eps=1e-6).unsqueeze(-1)
    if kind == "l1":
        return 1.0 / (1.0 + (v - z).abs().mean(-1, keepdim=True))
    dist = (v - z).pow(2).sum(-1, keepdim=True).add(1e-12).sqrt()
    return 1.0 / (1.0 + dist / math.sqrt(v.shape[-1]))


class MemoryNetwork(nn.Module):
    """A bank of learned memory vectors read by softmax attention from per-location queries."""

    def __init__(self, dim: int, slots: int) -> None:
        super().__init__()
        hidden = max(dim // 2, slots)
        self.query = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, slots))
        self.memory = nn.Parameter(torch.randn(slots, dim) * 0.02)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, h, w, C) -> read-out (b, h, w, C), pooled query logits (b, slots)."""
        h = self.query(f)
        read = torch.softmax(h, dim=-1) @ self.memory
        return read, h.mean(dim=(1, 2))


class MemSSMBlock(nn.Module):
    def __init__(self, dim: int, cfg: MemoryMambaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.linear_in = nn.Linear(dim, dim)
        uses_memory = cfg.use_coarse_memory or cfg.use_fine_memory
        if uses_memory:
            k = cfg.memory_conv
            self.memory_conv = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)
        self.coarse = MemoryNetwork(dim, cfg.coarse_slots) if cfg.use_coarse_memory else None
        self.fine = MemoryNetwork(dim, cfg.fine_slots) if cfg.use_fine_memory else None
        if cfg.use_fine_memory:
            # The MLP that maps the fine read-out into Z's space for InfoNCE (eq. 24).
            self.nce_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.ss2d = SS2D(dim, d_state=cfg.d_state, expand=cfg.ssm_expand, d_conv=cfg.ssm_conv)
        self.norm = nn.LayerNorm(dim)
        self.linear_out = nn.Linear(dim, dim)
        if cfg.mlp_ratio > 0:
            hidden = int(dim * cfg.mlp_ratio)
            self.mlp: nn.Sequential | None = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        else:
            self.mlp = None

    def _fuse(self, read: torch.Tensor, z_pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = read.mean(dim=(1, 2))
        if self.cfg.use_fusion:
            return _similarity(self.cfg.similarity, v, z_pooled) * v, v
        return v, v

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, BlockAux]:
        z = self.linear_in(x)
        fused = z
        coarse_q = fine_feat = fine_read = None
        if self.coarse is not None or self.fine is not None:
            f_tilde = self.memory_conv(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            z_pooled = z.mean(dim=(1, 2))
            extra = torch.zeros_like(z_pooled)
            if self.coarse is not None:
                read_c, coarse_q = self.coarse(f_tilde)
                w_c, _ = self._fuse(read_c, z_pooled)
                extra = extra + w_c
            if self.fine is not None:
                read_f, _ = self.fine(f_tilde)
                w_f, v_f = self._fuse(read_f, z_pooled)
                extra = extra + w_f
                fine_feat, fine_read = z_pooled, self.nce_proj(v_f)
            fused = z + self.cfg.memory_scale * extra[:, None, None, :]
        s = self.ss2d(fused)
        out = self.linear_out(x + self.norm(s))
        if self.mlp is not None:
            out = out + self.mlp(out)
        return out, BlockAux(coarse_q, fine_feat, fine_read)


class PatchMerging(nn.Module):
    """Swin/VMamba down-sampling: 2x2 neighbours concatenated, normalised, projected to 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:  # odd sizes: pad the last row/column by replication
            x = F.pad(x.permute(0, 3, 1, 2), (0, w % 2, 0, h % 2), mode="replicate").permute(0, 2, 3, 1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: MemoryMambaConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.proj: nn.Module  # one patchifying conv, or a small conv stack
        if cfg.stem == "patch":
            self.proj = nn.Conv2d(cfg.in_chans, c, kernel_size=4, stride=4)
        else:
            layers: list[nn.Module] = [nn.Conv2d(cfg.in_chans, c // 2, 3, stride=2, padding=1), nn.BatchNorm2d(c // 2), nn.GELU()]
            if cfg.stem == "conv3":  # one more stride-1 conv at H/2: a wider local texture view
                layers += [nn.Conv2d(c // 2, c // 2, 3, padding=1), nn.BatchNorm2d(c // 2), nn.GELU()]
            layers.append(nn.Conv2d(c // 2, c, 3, stride=2, padding=1))
            self.proj = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:  # odd sizes: pad up to a multiple of the patch size
            x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


def normalise_input(x: torch.Tensor, cfg: MemoryMambaConfig) -> torch.Tensor:
    """(b, c, H, W) in [0, 1] -> the network's input scale, as ``cfg.input_norm`` says."""
    if cfg.input_norm == "per_image":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(MIN_IMAGE_STD)
        return (x - mean) / std
    return (x - cfg.mean) / cfg.std


@register("memory_mamba", "classifier", MemoryMambaConfig)
class MemoryMamba(nn.Module):
    def __init__(self, cfg: MemoryMambaConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MemoryMambaConfig()
        self.patch_embed = PatchEmbed(cfg)
        dims = cfg.stage_dims
        self.stages = nn.ModuleList(
            nn.ModuleList(MemSSMBlock(dims[i], cfg) for _ in range(depth)) for i, depth in enumerate(cfg.depths)
        )
        self.merges = nn.ModuleList(PatchMerging(dims[i]) for i in range(len(dims) - 1))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Sequential(
            nn.Linear(dims[-1], cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.num_classes),
        )
        self.apply(self._init)
        # The head keeps PyTorch's fan-in initialisation (std 1/sqrt(3 fan_in)): two stacked
        # std-0.02 layers start with a gain of about 0.003 from pooled features to logits, so
        # the gradient that reaches the backbone is tiny; with a weak, local class signal
        # (small defects on magnetic tiles) training then never leaves the class prior.
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, MemSSMBlock):
            # The block's two Linears start near identity, so that at initialisation the
            # block is F + g * LayerNorm(SS2D(F)): a residual block, trainable from scratch at
            # depth. g (the LayerNorm's weight) starts at SCAN_BRANCH_GAIN, as LayerScale
            # does: at gain 1 every block adds a unit-variance scan output per location, a
            # largely image-independent pattern (causal scans depend on position) that drowns
            # the stem's image-dependent features; with a weak class signal nothing was learnt.
            for lin in (m.linear_in, m.linear_out):
                with torch.no_grad():
                    lin.weight.copy_(torch.eye(lin.in_features) + 0.02 * torch.randn_like(lin.weight))
                    lin.bias.zero_()
            nn.init.constant_(m.norm.weight, SCAN_BRANCH_GAIN)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def feature_map(self, x: torch.Tensor) -> tuple[torch.Tensor, list[BlockAux]]:
        """(b, in_chans, H, W) floats in [0, 1] -> normalised last-stage map (b, h, w, C_last) and per-block aux."""
        f = self.patch_embed(normalise_input(x, self.cfg))
        aux: list[BlockAux] = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                f = self.merges[i - 1](f)
            for block in cast(nn.ModuleList, stage):
                f, a = block(f)
                aux.append(a)
        return self.norm(f), aux

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[BlockAux]]:
        """(b, in_chans, H, W) floats in [0, 1] -> pooled features (b, C_last) and per-block aux."""
        f, aux = self.feature_map(x)
        return f.mean(dim=(1, 2)), aux

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(b, in_chans, H, W) in [0, 1] -> (b, 2 C_last): the last-stage map's spatial mean and spread,
        what the domain statistics describe (``inference.domain``): the mean alone is what the head
        reads, the spread tells a texture from a flat frame whose mean happens to match."""
        f, _ = self.feature_map(x)
        return torch.cat([f.mean(dim=(1, 2)), f.std(dim=(1, 2), correction=0)], dim=1)

    def forward_with_aux(self, x: torch.Tensor) -> MemoryOutput:
        pooled, aux = self.features(x)
        return MemoryOutput(self.head(pooled), aux)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, in_chans, H, W) in [0, 1] -> class logits (b, num_classes)."""
        return self.forward_with_aux(x).logits
