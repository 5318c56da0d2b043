"""Segmentation data: the images/ + masks/ layout, its splits, and target-biased random crops.

Layout: ``images/<stem>.<ext>`` and ``masks/<stem>.<ext>`` (same stem, any non-zero mask pixel is
target), optional ``train.txt`` / ``val.txt`` / ``test.txt`` listing stems. Frames are read once,
standardised over the full frame (as the worker does), and kept in memory: SIRST is a few MB,
and a CPU cannot afford to decode PNGs every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference.imageio import ImageReadError, is_image_file, read_image, read_mask
from inference.preprocess import segmenter_input, standardise
from inference.training.common import deterministic_split


class SegDataError(ValueError):
    """A data tree or a frame that cannot be used, with the reason."""


@dataclass
class Frame:
    stem: str
    image: np.ndarray  # float32 (c, h, w), standardised over the frame
    mask: np.ndarray  # bool (h, w)


standardise_np = standardise  # the name segmenter code and tests know


def to_channels(image: np.ndarray, in_chans: int) -> np.ndarray:
    """Float (h, w) or (h, w, c) RGB -> (in_chans, h, w), as prediction converts it (inference.preprocess)."""
    try:
        return segmenter_input(image, in_chans)
    except ValueError as exc:
        raise SegDataError(str(exc)) from None


def _index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_file(p)}


def _read_split(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]


@dataclass
class SegTree:
    root: Path
    images: dict[str, Path]
    masks: dict[str, Path]

    @classmethod
    def open(cls, root: str | Path) -> "SegTree":
        r = Path(root)
        if not r.is_dir():
            raise SegDataError(f"{r}: data folder not found")
        images, masks = _index(r / "images"), _index(r / "masks")
        if not images:
            raise SegDataError(f"{r}: no images/ folder with images (expected images/<stem>.png and masks/<stem>.png)")
        if not masks:
            raise SegDataError(f"{r}: no masks/ folder with masks (expected masks/<stem>.png beside images/)")
        return cls(r, images, masks)

    def stems(self, split: str) -> list[str]:
        """Stems of 'train', 'val', 'test' or 'all' (paired frames only).

        With split files, those are used; without, train/val come from a deterministic 80/20
        hash split of the paired stems and 'test' falls back to 'val'.
        """
        paired = [s for s in self.images if s in self.masks]
        if split == "all":
            return paired
        f = self.root / f"{split}.txt"
        if f.is_file():
            listed = _read_split(f)
            missing = [s for s in listed if s not in self.images or s not in self.masks]
            if missing:
                raise SegDataError(f"{f}: {len(missing)} stems without image or mask, e.g. {', '.join(missing[:3])}")
            return listed
        if split == "test":
            return self.stems("val")
        train, val = deterministic_split(paired, 0.2, seed=0)
        return train if split == "train" else val

    def eval_split(self) -> str:
        """What ``evaluate`` scores: test.txt, else val.txt, else the whole folder."""
        for name in ("test", "val"):
            if (self.root / f"{name}.txt").is_file():
                return name
        return "all"


def load_pair(image_path: Path, mask_path: Path, in_chans: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one frame and its mask as (float (c, h, w) raw [0, 1], bool (h, w)); sizes must agree."""
    image = read_image(image_path, "rgb" if in_chans == 3 else "gray")
    mask = read_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise SegDataError(size_mismatch(mask_path, mask.shape, image_path, image.shape))
    return to_channels(image, in_chans), mask


def size_mismatch(mask_path: Path, mask_shape: tuple[int, ...], image_path: Path, image_shape: tuple[int, ...]) -> str:
    """What a mask not the size of its frame is said as (shapes as (height, width, ...)), wherever it is found."""
    return (f"{mask_path}: mask is {mask_shape[1]}x{mask_shape[0]} but its image {image_path.name} is "
            f"{image_shape[1]}x{image_shape[0]}")


def load_frames(tree: SegTree, stems: list[str], in_chans: int) -> tuple[list[Frame], list[str]]:
    """Preload frames; unreadable or mismatched ones are returned as messages, not raised."""
    frames, problems = [], []
    for stem in stems:
        try:
            image, mask = load_pair(tree.images[stem], tree.masks[stem], in_chans)
        except (ImageReadError, SegDataError) as exc:
            problems.append(str(exc))
            continue
        frames.append(Frame(stem, standardise_np(image), mask))
    return frames, problems


def clutter_points(frame: Frame, kernel: int = 15, quantile: float = 0.999, margin: int = 7) -> np.ndarray:
    """(n, 2) pixel coordinates of bright small blobs that are not targets: the clutter a small-target
    detector confuses with targets (lamps, cloud edges, glints).

    A white top-hat with a ``kernel``-wide window keeps structures smaller than the window that
    are brighter than their surround, exactly what a target looks like; its strongest responses
    (above the ``quantile`` of the frame) that lie more than ``margin`` pixels from any target are
    the candidates. Computed once per frame from the image alone, no model involved.
    """
    img = frame.image[0]
    tophat = cv2.morphologyEx(img, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel)))
    strong = tophat >= np.quantile(tophat, quantile)
    strong &= tophat > 0
    if frame.mask.any():
        near = cv2.dilate(frame.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1,) * 2)) > 0
        strong &= ~near
    return np.argwhere(strong)


@dataclass(frozen=True)
class TargetPatch:
    """One training target lifted off its frame: what it adds to its local background, and its pixels."""

    signal: np.ndarray  # float32 (c, h, w): the frame minus its background with the target painted out
    mask: np.ndarray  # bool (h, w): the target's pixels


def target_patches(frames: list[Frame], margin: int = 3) -> list[TargetPatch]:
    """Every connected target of ``frames`` as a ``TargetPatch`` (for ``CropSampler``'s pasting).

    A target's signal is its frame minus the same frame with every target painted out (OpenCV's
    Navier-Stokes inpainting from the surrounding pixels, a ``margin``-pixel ring included; its Telea
    method gives noise of the target's own size on float images), cut to the target and
    one pixel around it: what an infrared target adds to whatever lies behind it. Radiance adds, so
    the signal can be added to another scene's background and still look like a target there.
    """
    out: list[TargetPatch] = []
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2)
    for frame in frames:
        if not frame.mask.any():
            continue
        hole = cv2.dilate(frame.mask.astype(np.uint8), ring)
        background = np.stack([cv2.inpaint(np.ascontiguousarray(ch, dtype=np.float32), hole, margin,
                                           cv2.INPAINT_NS) for ch in frame.image])
        signal = (frame.image - background).astype(np.float32)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(frame.mask.astype(np.uint8), connectivity=8)
        h, w = frame.mask.shape
        for k in range(1, n):
            x, y, bw, bh = (int(v) for v in stats[k, :4])
            y0, x0, y1, x1 = max(0, y - margin), max(0, x - margin), min(h, y + bh + margin), min(w, x + bw + margin)
            own = labels[y0:y1, x0:x1] == k
            area = cv2.dilate(own.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # its edge, not the ring's noise
            out.append(TargetPatch(np.where(area, signal[:, y0:y1, x0:x1], 0.0).astype(np.float32), own.copy()))
    return out


@dataclass(frozen=True)
class SceneAugment:
    """What changes between infrared scenes and cameras, applied to standardised crops (each part with
    probability ``p``). Gain and offset of the whole frame cancel in the per-frame standardisation, so
    what is left to model is local contrast and level (a crop's share of the frame's range), the
    detector's response curve (gamma), optics (blur), sensor noise, fixed-pattern column/row stripes
    and target scale (``scale`` range of the crop window's side before resizing to the crop size).
    """

    p: float = 0.5
    contrast: tuple[float, float] = (0.7, 1.4)
    offset: float = 0.3  # in frame standard deviations
    gamma: tuple[float, float] = (0.6, 1.6)
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    noise: tuple[float, float] = (0.02, 0.15)  # in frame standard deviations
    stripes: tuple[float, float] = (0.02, 0.12)  # per-column (or row) offset spread, frame standard deviations
    scale: tuple[float, float] = (0.8, 1.25)

    def window(self, size: int, rng: np.random.Generator) -> int:
        """The side of the window to cut before it is resized to ``size`` (scale augmentation)."""
        if rng.random() >= self.p:
            return size
        return max(8, int(round(size * rng.uniform(*self.scale))))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(c, h, w) standardised crop -> augmented copy (float32); the mask is unchanged."""
        x = np.array(image, dtype=np.float32)
        if rng.random() < self.p:  # detector response curve, on the crop's own range, level and spread kept
            lo, hi = float(x.min()), float(x.max())
            if hi - lo > 1e-6:
                mean, std = float(x.mean()), float(x.std())
                y = ((x - lo) / (hi - lo)) ** rng.uniform(*self.gamma)
                x = (y - y.mean()) / (y.std() + 1e-6) * std + mean
        if rng.random() < self.p:
            mean = float(x.mean())
            x = (x - mean) * rng.uniform(*self.contrast) + mean + rng.uniform(-self.offset, self.offset)
        if rng.random() < self.p:
            sigma = rng.uniform(*self.blur_sigma)
            x = np.stack([cv2.GaussianBlur(ch, (0, 0), sigma) for ch in x])
        if rng.random() < self.p:
            x = x + rng.normal(0.0, rng.uniform(*self.noise), x.shape[1:]).astype(np.float32)
        if rng.random() < self.p:
            spread = rng.uniform(*self.stripes)
            if rng.random() < 0.5:
                x = x + rng.normal(0.0, spread, (1, 1, x.shape[2])).astype(np.float32)
            else:
                x = x + rng.normal(0.0, spread, (1, x.shape[1], 1)).astype(np.float32)
        return x.astype(np.float32)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A (c, s, s) crop and its (s, s) mask resized to ``size``: image by area/linear, mask by
    linear weights >= 0.5 (a one-pixel target kept when enlarged, and not lost when shrunk while
    it still covers half a pixel)."""
    if image.shape[-1] == size:
        return image, mask
    interp = cv2.INTER_AREA if image.shape[-1] > size else cv2.INTER_LINEAR
    img = np.stack([cv2.resize(np.ascontiguousarray(ch), (size, size), interpolation=interp) for ch in image])
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
    if mask.any() and not m.any():  # a target never vanishes by resizing
        m = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return img, m


def random_turn(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (c, h, w) image and its (h, w) mask mirrored left-right, upside down and transposed, each with
    probability one half (views, not copies): an infrared scene has no 'up'."""
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1, :], mask[::-1, :]
    if rng.random() < 0.5:
        image, mask = image.transpose(0, 2, 1), mask.T
    return image, mask


class CropSampler:
    """Random crops biased to hold a target, with flips and transposes (IR scenes have no 'up').

    With ``clutter_prob`` > 0, that share of crops is centred on a bright non-target blob
    (``clutter_points``): most false alarms are such blobs, and uniform crops rarely show them.
    With ``paste_prob`` > 0, that share of crops (of every kind) gets one more target: a training
    target's signal (``target_patches``), flipped or turned, scaled by a factor from ``paste_gain``
    (more often fainter: faint targets are the ones new scenes lose; not so faint that a target
    labelled in its own scene vanishes in a noisier one) and added at a random free
    place, its pixels joining the mask — targets seen against backgrounds they were never on.
    """

    def __init__(self, frames: list[Frame], size: int, target_prob: float = 0.7, seed: int = 0,
                 clutter_prob: float = 0.0, augment: bool = False, paste_prob: float = 0.0,
                 paste_gain: tuple[float, float] = (0.7, 1.2)) -> None:
        if not frames:
            raise SegDataError("no training frames")
        if not (0.0 <= target_prob <= 1.0 and 0.0 <= clutter_prob <= 1.0 and 0.0 <= paste_prob <= 1.0):
            raise SegDataError(f"crop shares must lie in [0, 1] (target {target_prob}, clutter {clutter_prob}, "
                               f"paste {paste_prob})")
        if target_prob + clutter_prob > 1.0 + 1e-9:
            raise SegDataError(f"target and clutter crop shares add up to more than 1 ({target_prob} + {clutter_prob})")
        self.frames = frames
        self.size = size
        self.target_prob = target_prob
        self.clutter_prob = clutter_prob
        self.rng = np.random.default_rng(seed)
        self.augment = SceneAugment() if augment else None
        self.targets = [np.argwhere(f.mask) for f in frames]
        self.clutter = [clutter_points(f) for f in frames] if clutter_prob > 0 else [np.zeros((0, 2), np.int64)] * len(frames)
        self.paste_prob = paste_prob
        self.paste_gain = paste_gain
        self.patches = target_patches(frames) if paste_prob > 0 else []

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.integers(len(self.frames), size=n)
        pairs = [self._crop(self.frames[i], self.targets[i], self.clutter[i]) for i in idx]
        images = np.stack([p[0] for p in pairs]).astype(np.float32)
        masks = np.stack([p[1] for p in pairs])[:, None].astype(np.float32)
        return images, masks

    def _crop(self, frame: Frame, fg: np.ndarray, clutter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        s = self.augment.window(self.size, rng) if self.augment is not None else self.size
        image, mask = frame.image, frame.mask
        h, w = mask.shape
        if h < s or w < s:  # pad small frames by reflection (as inference pads to the stride)
            ph, pw = max(0, s - h), max(0, s - w)
            if ph < h and pw < w:
                image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="reflect")
            else:
                image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="edge")
            mask = np.pad(mask, ((0, ph), (0, pw)))
            h, w = mask.shape
        u = rng.random()
        centre = None
        if len(fg) and u < self.target_prob:
            centre = fg[rng.integers(len(fg))]
        elif clutter is not None and len(clutter) and u >= 1.0 - self.clutter_prob:
            centre = clutter[rng.integers(len(clutter))]
        if centre is not None:
            cy, cx = centre
            y0 = int(np.clip(cy - rng.integers(s // 8, s - s // 8), 0, h - s))
            x0 = int(np.clip(cx - rng.integers(s // 8, s - s // 8), 0, w - s))
        else:
            y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        img = image[:, y0:y0 + s, x0:x0 + s]
        msk = mask[y0:y0 + s, x0:x0 + s]
        if self.patches and rng.random() < self.paste_prob:
            img, msk = self._paste(img, msk)
        img, msk = random_turn(img, msk, rng)
        if self.augment is not None:
            img, msk = resize_pair(img, msk, self.size)
            img = self.augment(img, rng)
        return img, msk

    def _paste(self, img: np.ndarray, msk: np.ndarray, tries: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The crop with one more target added where it touches no target (unchanged when none fits)."""
        rng = self.rng
        patch = self.patches[rng.integers(len(self.patches))]
        signal, own = random_turn(patch.signal, patch.mask, rng)
        ph, pw = own.shape
        s_h, s_w = msk.shape
        if ph > s_h or pw > s_w:
            return img, msk
        taken = cv2.dilate(msk.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 if msk.any() else None
        for _ in range(tries):
            y, x = int(rng.integers(0, s_h - ph + 1)), int(rng.integers(0, s_w - pw + 1))
            if taken is not None and taken[y:y + ph, x:x + pw].any():
                continue
            img, msk = np.array(img, dtype=np.float32), np.array(msk, dtype=bool)
            img[:, y:y + ph, x:x + pw] += signal * np.float32(rng.uniform(*self.paste_gain))
            msk[y:y + ph, x:x + pw] |= own
            return img, msk
        return img, msk
