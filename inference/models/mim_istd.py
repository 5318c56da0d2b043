"""MiM-ISTD: Mamba-in-Mamba for infrared small-target segmentation (binary mask logits).

The image is cut into "visual sentences" (8x8-pixel patches at stage 1) that each hold 4x4
"visual words" (2x2-pixel sub-patches). A convolutional stem makes both token maps; no position
embedding is added (the scans are causal). Each stage of the pyramid encoder stacks MiM blocks:

* inner Mamba: an SS2D over the 4x4 words of every sentence, all sentences batched through one
  shared network (so it costs almost nothing extra); the words are then flattened per sentence,
  projected linearly and added to their sentence embedding;
* outer Mamba: an SS2D over the map of sentences.

Between stages both maps are halved by stride-2 convolutions, so a sentence keeps 4x4 words
(inner scan length 16) while covering twice the pixels. The decoder upsamples with
patch-expanding layers (linear 2x channel expansion + 2x2 pixel shuffle), fuses the encoder map
of the same scale and runs a basic ResNet block; a 1x1 head and a bilinear interpolation give
full-resolution logits.

Choices where the paper is silent (all written down here, the ablation-worthy ones as config):

* The inner SS2D runs in the first block of each stage (``inner_blocks="first"``, as the
  authors' network file does); ``"all"`` runs it in every block.
* Below the sentence scale the decoder keeps going with the word maps as skips (stage-2 words at
  1/4, stage-1 words and the stem's 1/2 feature at 1/2): targets are a few pixels wide, and
  stopping at the 1/8 sentence map would blur them away.
* ``inner="conv"`` is the paper's ablation #2: the inner Mamba replaced by a 3x3 convolution +
  batch norm + activation over the same 4x4 word grid of each sentence.
* Input standardisation is per image (zero mean, unit variance over the whole frame) and lives
  in ``standardise``; training and the worker both call it on full frames, which makes 8- and
  16-bit, bright and dim frames look alike to the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.registry import register
from inference.ssm import SS2D

NAME = "mim_istd"


@dataclass(frozen=True)
class MiMISTDConfig:
    in_chans: int = 1
    depths: tuple[int, ...] = (2, 2, 2, 2)
    outer_dims: tuple[int, ...] = (32, 64, 128, 256)  # sentence widths per stage
    inner_dims: tuple[int, ...] = (4, 8, 16, 32)  # word widths per stage
    sentence_px: int = 8  # a stage-1 sentence covers sentence_px x sentence_px pixels
    word_px: int = 2  # a stage-1 word covers word_px x word_px pixels
    stem_dim: int = 16
    d_state: int = 16
    expand: float = 2.0
    d_conv: int = 3
    inner: str = "mamba"  # "mamba" (MiM) or "conv" (the paper's ablation)
    inner_blocks: str = "first"  # "first" or "all" blocks of a stage get the inner block
    head_dim: int = 16

    def __post_init__(self) -> None:
        n = len(self.depths)
        if not (len(self.outer_dims) == len(self.inner_dims) == n) or n < 1:
            raise ValueError("depths, outer_dims and inner_dims need one entry per stage")
        if self.inner not in ("mamba", "conv"):
            raise ValueError(f"inner must be 'mamba' or 'conv', not {self.inner!r}")
        if self.inner_blocks not in ("first", "all"):
            raise ValueError(f"inner_blocks must be 'first' or 'all', not {self.inner_blocks!r}")
        if self.sentence_px % self.word_px or self.word_px & (self.word_px - 1) or self.sentence_px & (self.sentence_px - 1):
            raise ValueError("sentence_px and word_px must be powers of two, word_px dividing sentence_px")
        if self.sentence_px // self.word_px < 2:
            raise ValueError("a sentence must hold at least 2x2 words")

    @property
    def words_per_side(self) -> int:
        return self.sentence_px // self.word_px

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the deepest sentence map's pixel size)."""
        return self.sentence_px * 2 ** (len(self.depths) - 1)


PRESETS: dict[str, MiMISTDConfig] = {
    # Unit tests: a forward in a few milliseconds.
    "test_tiny": MiMISTDConfig(depths=(1, 1), outer_dims=(8, 16), inner_dims=(2, 4), stem_dim=4, d_state=4, head_dim=4),
    # Trains on two shared CPU cores in about an hour on 128-160 px crops.
    "cpu": MiMISTDConfig(depths=(1, 1, 2, 1), outer_dims=(16, 32, 64, 128), inner_dims=(4, 8, 16, 32), d_state=8),
    # The paper's network: depths 2-2-2-2, widths 32-64-128-256 / 4-8-16-32, 8x8 sentences of 4x4 words of 2x2 px.
    "paper": MiMISTDConfig(),
}


def preset(name: str) -> MiMISTDConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown mim_istd preset {name!r}; known: {', '.join(PRESETS)}") from None


def standardise(image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(b, c, h, w) -> zero mean, unit variance per image (over channels and pixels)."""
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    std = image.std(dim=(1, 2, 3), keepdim=True)
    return (image - mean) / (std + eps) if image[0].numel() > 1 else image - mean


def conv_bn_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvStem(nn.Module):
    """Image -> (stage-1 words at 1/word_px, stage-1 sentences at 1/sentence_px, 1/2 feature for the decoder)."""

    def __init__(self, cfg: MiMISTDConfig) -> None:
        super().__init__()
        c = cfg.stem_dim
        layers = [conv_bn_act(cfg.in_chans, c)]
        for _ in range(cfg.word_px.bit_length() - 1):
            layers.append(conv_bn_act(c, 2 * c, stride=2))
            c *= 2
        self.to_word_scale = nn.Sequential(*layers)
        self.feature_dim = c
        self.words = nn.Conv2d(c, cfg.inner_dims[0], 1)
        down = []
        cs = c
        for _ in range(cfg.words_per_side.bit_length() - 1):
            down.append(conv_bn_act(cs, cfg.outer_dims[0], stride=2))
            cs = cfg.outer_dims[0]
        self.to_sentences = nn.Sequential(*down, nn.Conv2d(cs, cfg.outer_dims[0], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.to_word_scale(x)
        return self.words(f), self.to_sentences(f), f


def to_sentences(words: torch.Tensor, k: int) -> torch.Tensor:
    """Word map (b, c, H*k, W*k) -> (b*H*W, k, k, c): each sentence's k x k words, channels last."""
    b, c, hh, ww = words.shape
    h, w = hh // k, ww // k
    return words.view(b, c, h, k, w, k).permute(0, 2, 4, 3, 5, 1).reshape(b * h * w, k, k, c)


def from_sentences(words: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``to_sentences``."""
    _, k, _, c = words.shape
    return words.view(b, h, w, k, k, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * k, w * k)


class InnerConv(nn.Module):
    """Ablation: conv + BN + activation over each sentence's word grid (channels-last in/out)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.bn(self.conv(x.permute(0, 3, 1, 2))))
        return y.permute(0, 2, 3, 1)


class MiMBlock(nn.Module):
    def __init__(self, cfg: MiMISTDConfig, outer_dim: int, inner_dim: int, has_inner: bool) -> None:
        super().__init__()
        self.has_inner = has_inner
        k = cfg.words_per_side
        if has_inner:
            self.inner_norm = nn.LayerNorm(inner_dim)
            self.inner: nn.Module  # the state-space scan, or its convolution ablation
            if cfg.inner == "mamba":
                self.inner = SS2D(inner_dim, d_state=cfg.d_state, expand=cfg.expand, d_conv=cfg.d_conv)
            else:
                self.inner = InnerConv(inner_dim)
            self.proj_norm = nn.LayerNorm(k * k * inner_dim)
            self.proj = nn.Linear(k * k * inner_dim, outer_dim)
        self.outer_norm = nn.LayerNorm(outer_dim)
        self.outer = SS2D(outer_dim, d_state=cfg.d_state, expand=cfg.expand, d_conv=cfg.d_conv)

    def forward(self, words: torch.Tensor, sentences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """words (b*N, k, k, ci), sentences (b, h, w, co), both channels-last."""
        if self.has_inner:
            words = words + self.inner(self.inner_norm(words))
            b, h, w, _ = sentences.shape
            flat = words.reshape(b, h, w, -1)
            sentences = sentences + self.proj(self.proj_norm(flat))
        sentences = sentences + self.outer(self.outer_norm(sentences))
        return words, sentences


class PatchExpand(nn.Module):
    """Swin-Unet style upsampling: linear to 2C, rearranged into a 2x2 block of C/2 channels."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 4 * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = self.expand(x.permute(0, 2, 3, 1))  # (b, h, w, 4*o)
        y = y.view(b, h, w, 2, 2, self.out_dim).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.out_dim)
        return self.norm(y).permute(0, 3, 1, 2)


class BasicBlock(nn.Module):
    """ResNet basic block with a 1x1 projection shortcut when the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


class DecoderStage(nn.Module):
    def __init__(self, dim: int, skip_dim: int, out_dim: int) -> None:
        super().__init__()
        self.up = PatchExpand(dim, out_dim)
        self.fuse = BasicBlock(out_dim + skip_dim, out_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.up(x), skip], dim=1))


@register(NAME, "segmenter", MiMISTDConfig)
class MiMISTD(nn.Module):
    """(b, in_chans, H, W) standardised image, H and W multiples of ``config.stride`` -> (b, 1, H, W) logits."""

    def __init__(self, config: MiMISTDConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.stem = ConvStem(cfg)
        self.stages = nn.ModuleList()
        self.word_downs = nn.ModuleList()
        self.sentence_downs = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            if i > 0:
                self.word_downs.append(conv_bn_act(cfg.inner_dims[i - 1], cfg.inner_dims[i], stride=2))
                self.sentence_downs.append(
                    nn.Sequential(nn.Conv2d(cfg.outer_dims[i - 1], cfg.outer_dims[i], 3, 2, 1), nn.BatchNorm2d(cfg.outer_dims[i]))
                )
            self.stages.append(nn.ModuleList(
                MiMBlock(cfg, cfg.outer_dims[i], cfg.inner_dims[i], has_inner=(j == 0 or cfg.inner_blocks == "all"))
                for j in range(depth)
            ))
        # Decoder: sentence scales (deepest up to stage 1), then the word scales down to 1/word_px.
        self.decoder = nn.ModuleList()
        dim = cfg.outer_dims[-1]
        for i in range(len(cfg.depths) - 2, -1, -1):
            self.decoder.append(DecoderStage(dim, cfg.outer_dims[i], cfg.outer_dims[i]))
            dim = cfg.outer_dims[i]
        # Word maps of stage s live at 1/(word_px * 2**s); walk from the sentence scale of stage 1.
        self.word_skips: list[int] = []
        for s in range(cfg.words_per_side.bit_length() - 2, -1, -1):
            skip_dim = cfg.inner_dims[s] if s < len(cfg.depths) else 0
            if s == 0:
                skip_dim += self.stem.feature_dim
            out = max(cfg.head_dim, dim // 2)
            self.decoder.append(DecoderStage(dim, skip_dim, out))
            self.word_skips.append(s)
            dim = out
        self.head = nn.Conv2d(dim, 1, 1)
        assert self.head.bias is not None  # Conv2d's default bias=True
        nn.init.constant_(self.head.bias, -4.0)  # targets are rare: start from "background"

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        cfg = self.config
        k = cfg.words_per_side
        word_map, sent_map, stem_feature = self.stem(x)
        word_maps, sent_maps = [], []
        for i, blocks in enumerate(self.stages):
            if i > 0:
                word_map = self.word_downs[i - 1](word_map)
                sent_map = self.sentence_downs[i - 1](sent_map)
            b, _, h, w = sent_map.shape
            words = to_sentences(word_map, k)
            sentences = sent_map.permute(0, 2, 3, 1)
            for block in cast(nn.ModuleList, blocks):
                words, sentences = block(words, sentences)
            word_map = from_sentences(words, b, h, w)
            sent_map = sentences.permute(0, 3, 1, 2).contiguous()
            word_maps.append(word_map)
            sent_maps.append(sent_map)
        return word_maps, sent_maps, stem_feature

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's last feature map, (b, head width, H / word_px, W / word_px): what the 1x1 head reads
        (station pretraining puts its own temporary output layer here)."""
        cfg = self.config
        H, W = x.shape[-2:]
        if H % cfg.stride or W % cfg.stride:
            raise ValueError(f"input {H}x{W} is not a multiple of the stride {cfg.stride}; pad it (see pad_to_stride)")
        word_maps, sent_maps, stem_feature = self.encode(x)
        y = sent_maps[-1]
        n_sent = len(sent_maps) - 1
        for i, stage in enumerate(self.decoder[:n_sent]):
            y = stage(y, sent_maps[n_sent - 1 - i])
        for stage, s in zip(self.decoder[n_sent:], self.word_skips):
            skips = [word_maps[s]] if s < len(word_maps) else []
            if s == 0:
                skips.append(stem_feature)
            y = stage(y, torch.cat(skips, dim=1))
        return y

    @property
    def feature_dim(self) -> int:
        """Channels of ``decode``'s map."""
        return self.head.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decode(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (b, c, h, w) on the bottom/right to multiples of ``stride``; returns the original (h, w).

    Reflection keeps the padded border looking like the scene (a constant border is an edge the
    network never saw in training); frames smaller than the pad fall back to edge replication.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def segment_logits(model: MiMISTD, image: torch.Tensor) -> torch.Tensor:
    """Standardised (b, c, h, w) of any size -> (b, 1, h, w) logits (pad to the stride, crop back)."""
    padded, (h, w) = pad_to_stride(image, model.config.stride)
    return model(padded)[..., :h, :w]
