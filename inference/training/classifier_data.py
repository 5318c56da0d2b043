"""Image-folder classification data: finding the split, preloading, and texture augmentation.

Data sets here are small (about a thousand images), so every image is decoded once, resized
to the model's input size with the same function inference uses (``classifier_predict``), and
kept as one uint8 array; an epoch then costs only augmentation and the model.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from inference.classifier_predict import resize_to_model_input
from inference.imageio import ImageReadError, is_image_file, read_image
from inference.training.common import deterministic_split

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


class DataTreeError(ValueError):
    """A data folder that is not a usable class-folder tree, with the reason."""


@dataclass(frozen=True)
class Item:
    path: Path
    label: str


@dataclass
class Split:
    train: list[Item]
    val: list[Item]
    classes: list[str]
    description: str
    copies: int = 0   # held-out images whose bytes are a training image's (their figures are training figures)


@dataclass
class Preloaded:
    images: np.ndarray  # (n, c, s, s) uint8
    labels: np.ndarray  # (n,) int64 indices into the class list
    paths: list[Path]
    failures: list[str] = field(default_factory=list)


def class_folders(root: Path) -> dict[str, list[Path]]:
    """{class name: sorted image files} for every non-hidden sub-folder holding images."""
    if not root.is_dir():
        raise DataTreeError(f"{root}: not a folder")
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and is_image_file(p))
        if files:
            found[sub.name] = files
    return found


def copies_of(train: list[Path], held: list[Path]) -> int:
    """How many ``held`` files hold the bytes of a ``train`` file (sizes compared first; only equal sizes are hashed)."""
    import hashlib

    def digest(path: Path) -> str | None:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
    sizes: dict[int, list[Path]] = {}
    for path in train:
        with contextlib.suppress(OSError):
            sizes.setdefault(path.stat().st_size, []).append(path)
    hashed: dict[int, set[str | None]] = {}
    n = 0
    for path in held:
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size not in sizes:
            continue
        if size not in hashed:
            hashed[size] = {digest(p) for p in sizes[size]}
        value = digest(path)
        n += value is not None and value in hashed[size]
    return n


def said_copies(root: Path, train: list[Path], held: list[Path], what: str, of: str = "training") -> int:
    """``copies_of``, warned of where there are any: their figures are training figures (a session-46 probe: a val/ of
    copies of train/ read "val acc 1.000", unsaid). One wording for the classifier's and the anomaly model's trees."""
    copies = copies_of(train, held)
    if copies:
        log.warning("%s: %d of the %d %s images are byte-for-byte copies of %s images: their figures are training "
                    "figures", root, copies, len(held), what, of)
    return copies


def _items(folders: dict[str, list[Path]]) -> list[Item]:
    return [Item(p, name) for name, files in folders.items() for p in files]


def is_split_tree(root: Path) -> bool:
    return root.is_dir() and (root / "train").is_dir() and any((root / s).is_dir() for s in ("val", "test"))


def training_split(root: Path, val_frac: float = 0.2, seed: int = 0, check_copies: bool = True) -> Split:
    """train/ + val/ (or test/) when present; otherwise a deterministic per-class split. ``check_copies`` False:
    held-out copies of training images are not looked for (nor warned of again: ``fit_split`` after a run)."""
    root = Path(root)
    if is_split_tree(root):
        train_folders = class_folders(root / "train")
        held_name = "val" if (root / "val").is_dir() else "test"
        held_folders = class_folders(root / held_name)
        if not train_folders:
            raise DataTreeError(f"{root / 'train'}: no class folders with images")
        unknown = sorted(set(held_folders) - set(train_folders))
        if unknown:
            raise DataTreeError(f"{root / held_name}: classes not in train/: {', '.join(unknown)}")
        classes = sorted(train_folders)
        train_items, held_items = _items(train_folders), _items(held_folders)
        copies = said_copies(root, [i.path for i in train_items], [i.path for i in held_items], f"{held_name}/",
                             "train/") if check_copies else 0
        return Split(train_items, held_items, classes, f"{root}: train/ and {held_name}/", copies)
    folders = class_folders(root)
    if len(folders) < 2:
        raise DataTreeError(
            f"{root}: expected class folders (root/<class>/*.png) or a train/ + val/ tree; found {len(folders)} class folder(s)"
        )
    train: list[Item] = []
    val: list[Item] = []
    for name, files in folders.items():
        keys = [str(p.relative_to(root)) for p in files]
        tr, va = deterministic_split(keys, val_frac=val_frac, seed=seed)
        train += [Item(root / k, name) for k in tr]
        val += [Item(root / k, name) for k in va]
    copies = (said_copies(root, [i.path for i in train], [i.path for i in val], "validation")   # (a class tree too)
              if check_copies else 0)
    return Split(train, val, sorted(folders), f"{root}: deterministic per-class split, val {val_frac:.0%}, seed {seed}",
                 copies)


def fit_split(root: Path, val_frac: float = 0.2, seed: int = 0, cv_folds: int = 0, check_copies: bool = True) -> Split:
    """The split ``train classifier`` trains on: ``training_split``, except that with cross-validation a class-folder
    tree needs no held-out share (the choices come from group CV inside its images) and trains on all of it. The one
    home of that rule: the trainer and its domain statistics read it (they described the held-out images too, a
    session-49 audit)."""
    split = training_split(root, val_frac=val_frac, seed=seed, check_copies=check_copies)
    if cv_folds and not is_split_tree(Path(root)):
        return Split(split.train + split.val, [], split.classes, f"{root}: every image (choices by group CV inside them)")
    return split


def evaluation_items(root: Path) -> tuple[list[Item], str]:
    """The images to evaluate: a split tree's test/ (else val/), or every image of a class tree."""
    root = Path(root)
    for name in ("test", "val"):
        if (root / "train").is_dir() and (root / name).is_dir():
            folders = class_folders(root / name)
            if folders:
                return _items(folders), f"{root / name}"
    folders = class_folders(root)
    if not folders:
        raise DataTreeError(f"{root}: no class folders with images (expected root/<class>/*.png, or test/ or val/ of a split tree)")
    if set(folders) <= set(SPLIT_NAMES):
        raise DataTreeError(f"{root}: looks like a split tree without a test/ or val/ class-folder tree")
    return _items(folders), str(root)


def preload(items: list[Item], classes: list[str], size: int, mode: str, progress: bool = False) -> Preloaded:
    """Decode and resize every image once; unreadable files are listed in ``failures``."""
    index = {c: i for i, c in enumerate(classes)}
    chans = 1 if mode == "gray" else 3
    images = np.empty((len(items), chans, size, size), dtype=np.uint8)
    labels: list[int] = []
    paths: list[Path] = []
    failures: list[str] = []
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="loading", mininterval=1.0)
    n = 0
    for item in it:
        try:
            img = read_image(item.path, mode)
        except ImageReadError as exc:
            failures.append(str(exc))
            continue
        arr = resize_to_model_input(img, size, chans)
        images[n] = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        labels.append(index[item.label])
        paths.append(item.path)
        n += 1
    for f in failures:
        log.warning("skipped unreadable image %s", f)
    return Preloaded(images[:n], np.asarray(labels, dtype=np.int64), paths, failures)


CROP_MODES = ("shift", "scale")


@dataclass(frozen=True)
class AugmentConfig:
    """Surface textures have no canonical orientation: flips and 90° turns are label-preserving.

    Crops: ``"shift"`` (default) moves the image by whole pixels inside a reflected border, so
    every training pixel is an original pixel. ``"scale"`` crops 75-100 % and resamples back,
    which blurs most training images: a model then learns "blurred" as normal and loses
    accuracy on sharp inference images (seen on NEU: 0.83 on augmented vs 0.57 on plain
    validation images after 14 epochs). Hence shift is the default.
    """

    flips: bool = True
    rot90: bool = True
    crop: str = "shift"
    max_shift: float = 0.125  # "shift": up to this fraction of the side, each axis
    min_scale: float = 0.75  # "scale": crop side as a fraction of the image (then resized back)
    brightness: float = 0.08
    contrast: float = 0.15
    # What changes between capture sessions and cameras besides gain (contrast) and offset
    # (brightness): the tone curve, focus and sensor noise. 0 switches each off (the default,
    # as before); ``AUGMENTATIONS["session"]`` turns them on.
    gamma: float = 0.0  # gamma drawn log-uniformly in exp(±gamma)
    blur_prob: float = 0.0  # share of images blurred by a Gaussian of sigma up to ``max_blur`` px
    max_blur: float = 1.0
    noise: float = 0.0  # additive Gaussian noise, sigma drawn uniformly in [0, noise]

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")


# Named augmentation recipes (``train classifier --augment``). "basic" is the recipe every model
# so far was trained with; "session" adds stronger gain/offset and the tone, focus and noise
# changes seen between the capture sessions of a line (magnetic tile's exp1..exp6 lighting).
# "session_upright" leaves out the 90° turns: where a fixed camera always sees parts the same way
# up (magnetic tiles: blowhole crops are mostly portrait, fray ones landscape) the turns throw
# away a real cue.
class AugmentRecipe(TypedDict, total=False):
    """Overrides of :class:`AugmentConfig`'s defaults that a named recipe sets (crop comes from --crop)."""

    flips: bool
    rot90: bool
    max_shift: float
    min_scale: float
    brightness: float
    contrast: float
    gamma: float
    blur_prob: float
    max_blur: float
    noise: float


_SESSION: AugmentRecipe = {"brightness": 0.1, "contrast": 0.3, "gamma": 0.3, "blur_prob": 0.3, "noise": 0.02}
AUGMENTATIONS: dict[str, AugmentRecipe] = {
    "basic": {},
    "session": AugmentRecipe(**_SESSION),
    "session_upright": {**_SESSION, "rot90": False},
}


def _shift_crop(x: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    p = min(int(round(fraction * min(h, w))), h - 1, w - 1)
    if p <= 0:
        return x
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    oy = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist()
    ox = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist()
    return torch.stack([padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w] for i in range(b)])


def augment_batch(x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(b, c, s, s) floats in [0, 1] -> augmented, same shape. One affine grid_sample does
    flips + 90° rotation (+ the scaled crop in "scale" mode); at scale 1 it lands exactly on
    pixel centres, so it copies pixels."""
    b = x.shape[0]
    if aug.crop == "scale":
        scale = aug.min_scale + (1.0 - aug.min_scale) * torch.rand(b, generator=gen)
    else:
        scale = torch.ones(b)
        x = _shift_crop(x, aug.max_shift, gen)
    k = torch.randint(0, 4 if aug.rot90 else 1, (b,), generator=gen)
    angle = k.float() * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    fx = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if aug.flips else torch.ones(b)
    fy = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if aug.flips else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * fx * scale
    theta[:, 0, 1] = -sin * fy * scale
    theta[:, 1, 0] = sin * fx * scale
    theta[:, 1, 1] = cos * fy * scale
    room = 1.0 - scale
    theta[:, 0, 2] = (torch.rand(b, generator=gen) * 2 - 1) * room
    theta[:, 1, 2] = (torch.rand(b, generator=gen) * 2 - 1) * room
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.contrast or aug.brightness:
        c = 1.0 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * aug.contrast
        br = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * aug.brightness
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * c.to(out) + mean + br.to(out)).clamp(0.0, 1.0)
    if aug.gamma:
        g = torch.exp((torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * aug.gamma).to(out)
        out = out.clamp_min(1e-6).pow(g)
    if aug.blur_prob and aug.max_blur > 0:
        out = _random_blur(out, aug.blur_prob, aug.max_blur, gen)
    if aug.noise:
        sigma = (torch.rand(b, 1, 1, 1, generator=gen) * aug.noise).to(out)
        out = (out + sigma * torch.randn(out.shape, generator=gen).to(out)).clamp(0.0, 1.0)
    return out


def _random_blur(x: torch.Tensor, prob: float, max_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Blur a random ``prob`` share of the batch, each by a separable Gaussian of its own sigma."""
    b, c = x.shape[:2]
    chosen = torch.rand(b, generator=gen) < prob
    if not bool(chosen.any()):
        return x
    sigma = 0.3 + torch.rand(b, generator=gen) * (max_sigma - 0.3 if max_sigma > 0.3 else 0.0)
    radius = max(1, int(math.ceil(2 * max_sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x)  # (b, taps)
    out = x.clone()
    idx = chosen.nonzero().flatten().tolist()
    sel = x[idx].reshape(1, len(idx) * c, *x.shape[2:])
    kc = k[idx].repeat_interleave(c, 0)  # one kernel per (image, channel)
    sel = F.pad(sel, (radius, radius, radius, radius), mode="reflect")
    sel = F.conv2d(sel, kc[:, None, None, :], groups=len(idx) * c)
    sel = F.conv2d(sel, kc[:, None, :, None], groups=len(idx) * c)
    out[idx] = sel.reshape(len(idx), c, *x.shape[2:])
    return out


def balanced_sample_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> np.ndarray:
    """Per-sample draw probabilities ∝ count(class)^-power: 1 gives every class an equal share,
    0.5 (default) a compromise that does not replay a 20-image class thirty times an epoch."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.maximum(counts[labels], 1.0) ** (-power)
    return w / w.sum()
