"""MVTec-layout category trees, image loading at model resolution, synthetic defects.

Layout: ``CATEGORY/train/good/*``, ``CATEGORY/test/<type>/*`` (``good`` = defect-free),
``CATEGORY/ground_truth/<type>/<stem>_mask.png``. Real trees are messy, so: symlinked folders
are followed, any image format/depth/aspect ratio is read (and squashed to the model's square
input, the map is stretched back), unreadable files are listed and skipped, and defect images
without a mask still count for the image score but are left out of the pixel metrics (and
listed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..imageio import ImageReadError, is_image_file, read_image, read_mask
from ..preprocess import anomaly_input

GOOD = "good"
# Defect images kept apart from the test split for choosing settings and thresholds (issue 19's
# protocol; convert_magnetic_tile --defects-by-split writes them): validation/<type>/<name> with
# masks at validation_ground_truth/<type>/<stem>_mask.png. Optional: a plain MVTec tree has none.
VALIDATION = "validation"
VALIDATION_GT = "validation_ground_truth"
MASK_SUFFIXES = ("_mask.png", ".png", "_mask.bmp", "_mask.tif", "_mask.tiff", "_mask.jpg")


class AnomalyDataError(ValueError):
    """A category tree that cannot be used, with what is wrong."""


@dataclass(frozen=True)
class TestImage:
    path: Path
    defect_type: str
    mask_path: Path | None  # None: good image (empty mask) or defect without a mask

    @property
    def is_anomalous(self) -> bool:
        return self.defect_type != GOOD


@dataclass
class CategoryTree:
    root: Path
    train_good: list[Path]
    test: list[TestImage] = field(default_factory=list)
    missing_masks: list[Path] = field(default_factory=list)

    def test_copies(self) -> int:
        """How many test images hold the bytes of a training image (their figures are training figures: a
        session-46 probe's test/good of train/good copies read "test image AUROC 1.000")."""
        from inference.training.classifier_data import said_copies
        return said_copies(self.root, self.train_good, [t.path for t in self.test], "test")


def _images_in(folder: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, _, files in os.walk(folder, followlinks=True):
        out.extend(Path(dirpath) / f for f in files if is_image_file(f) and not f.startswith("."))
    return sorted(out)


def _find_mask(root: Path, defect_type: str, image: Path, gt_dir: str = "ground_truth") -> Path | None:
    gt = root / gt_dir / defect_type
    for suffix in MASK_SUFFIXES:
        cand = gt / (image.stem + suffix)
        if cand.is_file():
            return cand
    return None


def scan_category(root: str | os.PathLike, need_train: bool = True, need_test: bool = False) -> CategoryTree:
    """Index a category folder, raising AnomalyDataError with the reason when it is unusable."""
    root = Path(root)
    if not root.exists():
        raise AnomalyDataError(f"{root}: folder not found")
    if not root.is_dir():
        raise AnomalyDataError(f"{root}: not a folder (expected an MVTec category: train/good, test/<type>)")
    good_dir = root / "train" / GOOD
    train_good = _images_in(good_dir) if good_dir.is_dir() else []
    if need_train and not good_dir.is_dir():
        raise AnomalyDataError(f"{root}: no train/good folder (MVTec layout: train/good/*.png, test/<type>/*.png, "
                               "ground_truth/<type>/<stem>_mask.png)")
    if need_train and not train_good:
        raise AnomalyDataError(f"{good_dir}: no good images to train on")
    tree = CategoryTree(root=root, train_good=train_good)
    test_dir = root / "test"
    if test_dir.is_dir():
        for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for img in _images_in(sub):
                if sub.name == GOOD:
                    tree.test.append(TestImage(img, GOOD, None))
                    continue
                mask = _find_mask(root, sub.name, img)
                if mask is None:
                    tree.missing_masks.append(img)
                tree.test.append(TestImage(img, sub.name, mask))
    if need_test:
        if not tree.test:
            raise AnomalyDataError(f"{root}: no test images (expected test/good and test/<defect type>)")
        kinds = {t.is_anomalous for t in tree.test}
        if kinds != {True, False}:
            which = "defect" if False in kinds else "good"
            raise AnomalyDataError(f"{test_dir}: no {which} test images; AUROC needs both good and defect images")
    return tree


def scan_validation(root: str | os.PathLike) -> list[TestImage]:
    """The validation defect images of a category (``validation/<type>/``), empty when it has none.

    A ``good`` sub-folder is refused: held-out good images come from train/good by the trainer's
    own split, so a second source of them could not be kept out of fitting.
    """
    root = Path(root)
    folder = root / VALIDATION
    out: list[TestImage] = []
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name == GOOD:
            raise AnomalyDataError(f"{sub}: validation holds defect images only (good ones come from train/good)")
        out.extend(TestImage(img, sub.name, _find_mask(root, sub.name, img, VALIDATION_GT)) for img in _images_in(sub))
    return out


def channel_mode(in_channels: int) -> str:
    return "gray" if in_channels == 1 else "rgb"


# One conversion for training and prediction (luma for gray, as every family), in inference.preprocess.
to_model_input = anomaly_input


def load_images(paths: list[Path], size: int, in_channels: int) -> tuple[np.ndarray, list[Path], list[str]]:
    """Read and resize; returns (n, c, s, s) float32, the paths read, and the reasons others failed."""
    arrays, kept, errors = [], [], []
    for p in paths:
        try:
            arrays.append(to_model_input(read_image(p, channel_mode(in_channels)), size, in_channels))
            kept.append(p)
        except ImageReadError as exc:
            errors.append(str(exc))
    out = np.stack(arrays) if arrays else np.zeros((0, in_channels, size, size), np.float32)
    return out, kept, errors


def read_test_mask(item: TestImage, shape: tuple[int, int]) -> np.ndarray | None:
    """The ground truth at the image's own size; None when a defect image has no (readable) mask."""
    if not item.is_anomalous:
        return np.zeros(shape, bool)
    if item.mask_path is None:
        return None
    mask = read_mask(item.mask_path)
    if mask.shape != shape:
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


# ---- synthetic defects (DRAEM-style) ---------------------------------------------------------
def _blob_mask(rng: np.random.Generator, size: int, max_area: float = 0.06) -> np.ndarray:
    """Smooth-noise blobs or a thin stroke, covering roughly 0.3 % to ``max_area`` of the image."""
    if rng.random() < 0.3:
        m = np.zeros((size, size), np.uint8)
        pts = rng.integers(0, size, (int(rng.integers(2, 5)), 2))
        thick = int(rng.integers(1, max(2, size // 40) + 1))
        cv2.polylines(m, [pts.reshape(-1, 1, 2).astype(np.int32)], False, 1, thickness=thick)
        return m.astype(bool)
    res = int(rng.choice([2, 4, 8]))
    noise = cv2.resize(rng.random((res, res)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    area = rng.uniform(0.003, max(0.004, max_area))
    return noise >= np.quantile(noise, 1.0 - area)


def synthesize_defects(batch: np.ndarray, rng: np.random.Generator, prob: float = 0.5,
                       max_area: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """Paste synthetic defects into some images of a (b, c, s, s) [0, 1] batch.

    Fillings: a patch of another image moved elsewhere (cut-paste), smooth noise, darkening or
    brightening, a flat colour; blended with opacity 0.5-1. Returns the images and (b, s, s)
    bool masks of what was changed.
    """
    b, c, s, _ = batch.shape
    out = batch.copy()
    masks = np.zeros((b, s, s), bool)
    for i in range(b):
        if rng.random() >= prob:
            continue
        m = _blob_mask(rng, s, max_area)
        kind = rng.integers(4)
        if kind == 0:
            src = batch[rng.integers(b)]
            fill = np.roll(src, (int(rng.integers(s // 4, 3 * s // 4)), int(rng.integers(s // 4, 3 * s // 4))), axis=(1, 2))
            fill = fill * rng.uniform(0.6, 1.4, (c, 1, 1))
        elif kind == 1:
            res = int(rng.choice([8, 16, 32]))
            fill = np.stack([cv2.resize(rng.random((res, res)).astype(np.float32), (s, s)) for _ in range(c)])
        elif kind == 2:
            fill = batch[i] * rng.uniform(0.2, 0.6) if rng.random() < 0.6 else batch[i] + rng.uniform(0.25, 0.6)
        else:
            fill = np.broadcast_to(rng.random((c, 1, 1)), (c, s, s))
        beta = rng.uniform(0.5, 1.0)
        w = m[None].astype(np.float32) * beta
        out[i] = np.clip(batch[i] * (1 - w) + fill * w, 0.0, 1.0)
        masks[i] = m & (np.abs(out[i] - batch[i]).max(axis=0) > 0.02)
    return out.astype(np.float32), masks


def synthesize_bands(batch: np.ndarray, rng: np.random.Generator, min_depth: float = 0.08,
                     max_depth: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A brightness band along one edge of each image of a (b, c, s, s) [0, 1] batch.

    Models magnetic tile's ``uneven`` defects (broad bands along a tile edge, brighter or
    darker than the rest, 68 % of that category's defect pixels), which the blob-like defects
    above do not resemble. The band reaches ``min_depth``-``max_depth`` of the image into it,
    its inner boundary tilted and wavy; the brightness change (x (1 +- 0.15..0.4)) is strongest
    at the edge and ramps down inwards to a soft boundary. Returns the images and the (b, s, s)
    bool masks of what visibly changed.
    """
    b, c, s, _ = batch.shape
    out = batch.copy()
    masks = np.zeros((b, s, s), bool)
    t = np.arange(s, dtype=np.float32) / s
    depth_from_edge = np.arange(s, dtype=np.float32)[:, None]
    for i in range(b):
        boundary = s * (rng.uniform(min_depth, max_depth) + rng.uniform(-0.1, 0.1) * (t - 0.5)
                        + rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * rng.uniform(0.5, 2.5) * t + rng.uniform(0, 2 * np.pi)))
        boundary = np.maximum(boundary, 2.0)[None, :]
        inside = np.clip((boundary - depth_from_edge) / 3.0, 0.0, 1.0)  # soft 3-px boundary
        ramp = 1.0 - rng.uniform(0.2, 0.7) * np.clip(depth_from_edge / boundary, 0.0, 1.0)
        delta = rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.4) * inside * ramp  # band along the top edge
        delta = np.rot90(delta, k=int(rng.integers(4)))  # any edge
        out[i] = np.clip(batch[i] * (1.0 + delta[None]), 0.0, 1.0)
        masks[i] = np.abs(out[i] - batch[i]).max(axis=0) > 0.02
    return out.astype(np.float32), masks


def synthesize_missing(batch: np.ndarray, rng: np.random.Generator, max_area: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Remove a part of each image's structure: a blob region filled in from its surroundings.

    Validation only, never training: the training's defects add something (a patch, noise, a
    colour), so a model can learn to spot additions; a broken-off piece of an aligned part (a
    missing arc of a bottle's rim) adds nothing and is only visible as structure that should be
    there. Inpainting (OpenCV's Telea method) fills the region with what its border suggests, so
    a region over plain background barely changes and counts only where it changed visibly.
    """
    b, c, s, _ = batch.shape
    out = batch.copy()
    masks = np.zeros((b, s, s), bool)
    for i in range(b):
        m = _blob_mask(rng, s, max_area)
        img8 = np.clip(np.round(batch[i].transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        filled = cv2.inpaint(img8, m.astype(np.uint8), max(3, s // 32), cv2.INPAINT_TELEA)
        filled = filled.reshape(s, s, c).transpose(2, 0, 1).astype(np.float32) / 255.0
        out[i] = np.where(m[None], filled, batch[i])
        masks[i] = m & (np.abs(out[i] - batch[i]).max(axis=0) > 0.02)
    return out.astype(np.float32), masks


def synthesize_shifted(batch: np.ndarray, rng: np.random.Generator, max_area: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Displace a part of each image's own structure by 4-12 % of the image side.

    Validation only, like ``synthesize_missing``: a bent or misplaced piece shows the part's own
    appearance in the wrong place, which the training's cut-paste from a far, random offset
    does not model.
    """
    b, c, s, _ = batch.shape
    out = batch.copy()
    masks = np.zeros((b, s, s), bool)
    for i in range(b):
        m = _blob_mask(rng, s, max_area)
        shift = (rng.uniform(0.04, 0.12, 2) * s * rng.choice([-1, 1], 2)).astype(int)
        moved = np.roll(batch[i], tuple(int(v) for v in shift), axis=(1, 2))
        out[i] = np.where(m[None], moved, batch[i])
        masks[i] = m & (np.abs(out[i] - batch[i]).max(axis=0) > 0.02)
    return out.astype(np.float32), masks
