"""Pixels for people: decoding images, masks and heatmaps into 8-bit arrays the GUI can paint.

The GUI may not import ``inference`` (layering rule), yet it must show exactly what the models
saw, so the decoding goes through ``inference.imageio`` here, in a Qt-free module that the
thumbnail threads and the viewer share. Every function returns plain numpy arrays (safe to hand
across threads) or raises ``DisplayError`` with a reason a person can read under a placeholder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from inference.imageio import ImageReadError, convert_channels, read_raw
from inference.preprocess import shrink_to

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "hot": cv2.COLORMAP_HOT,
}


class DisplayError(Exception):
    """An image that cannot be shown; ``reason`` goes under the placeholder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Thumbnail:
    """A decoded thumbnail or the reason there is none (crosses from pool threads to the GUI)."""

    image_id: int
    rgb: np.ndarray | None
    error: str | None = None
    width: int = 0
    height: int = 0


STRETCH_SAMPLE = 1_000_000  # pixels a deep image's display range is read from
STRETCH_ROWS = 256          # rows stretched at a time (a float copy of those rows only)


def _stretch_to_uint8(img: np.ndarray) -> np.ndarray:
    """8-bit passes through; deeper images (16-bit infrared) are stretched to their own range.

    A plain /257 leaves most 16-bit sensor images black, which an inspector cannot review.
    """
    if img.dtype == np.uint8:
        return img
    # The range from at most about a million pixels, and no full-size float copy: a 4000 x 4000 16-bit colour image
    # took 689 MiB for one thumbnail, and the size bound allows 200 megapixels (a session-43 probe).
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / STRETCH_SAMPLE)))
    sample = np.nan_to_num(img[::step, ::step].astype(np.float32))
    lo, hi = float(np.percentile(sample, 0.5)), float(np.percentile(sample, 99.5))
    if hi <= lo:
        # Nearly every pixel one value (a saturated frame): it was painted black, and a dark defect on it too (a
        # session-47 audit). The whole range of the sample then; a frame of one value stays where that value sits in
        # its type's range (65535 white, as an 8-bit 255 is).
        lo, hi = float(sample.min()), float(sample.max())
        if hi <= lo:
            kind = np.iinfo(img.dtype) if np.issubdtype(img.dtype, np.integer) else None
            lo, hi = (float(kind.min), float(kind.max)) if kind is not None else (0.0, 1.0)

    def stretched(part: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip((np.nan_to_num(part.astype(np.float32)) - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5,
                          dtype=np.uint8)
    if img.dtype == np.uint16:  # one table of 65,536 values, looked up
        return np.asarray(stretched(np.arange(65536, dtype=np.uint16))[img])
    out = np.empty(img.shape, np.uint8)
    for top in range(0, img.shape[0], STRETCH_ROWS):
        out[top:top + STRETCH_ROWS] = stretched(img[top:top + STRETCH_ROWS])
    return out


def _read(path: str | os.PathLike[str]) -> np.ndarray:
    try:
        return read_raw(path)
    except ImageReadError as exc:
        raise DisplayError(exc.reason) from None


def _painted(raw: np.ndarray) -> np.ndarray:
    """A decoded file as the screen paints it: contiguous uint8 RGB (h, w, 3), a deep one stretched."""
    return np.ascontiguousarray(convert_channels(_stretch_to_uint8(raw), "rgb"))


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The whole image as contiguous uint8 RGB (h, w, 3)."""
    return _painted(_read(path))


VALUES_MAX_PIXELS = 50_000_000  # a deep image's own values are kept for the cursor readout up to this size


@dataclass(frozen=True)
class ViewerPixels:
    """What the viewer paints, and the file's own values where the screen shows them stretched.

    A 16-bit infrared frame is stretched to its own range to be seen; the cursor readout gave that stretched level
    ("rgb (87, 87, 87)") where an inspector reading a sensor value needs the file's 12,345 (a session-44 probe).
    ``values`` is None for 8-bit files (the painted level is the file's) and past ``VALUES_MAX_PIXELS`` (the readout
    then says it shows the display level)."""

    rgb: np.ndarray
    values: np.ndarray | None = None
    deep: bool = False


def load_for_viewer(path: str | os.PathLike[str]) -> ViewerPixels:
    raw = _read(path)
    rgb = _painted(raw)
    if raw.dtype == np.uint8:
        return ViewerPixels(rgb)
    colour = raw.ndim == 3 and raw.shape[2] >= 3
    small = raw.shape[0] * raw.shape[1] <= VALUES_MAX_PIXELS
    return ViewerPixels(rgb, convert_channels(raw, "rgb" if colour else "gray") if small else None, deep=True)


def _number(v: np.generic) -> str:
    return f"{float(v):.4g}" if isinstance(v, np.floating) else str(int(v))


def pixel_readout(pixels: ViewerPixels, x: int, y: int) -> str:
    """The cursor's pixel in words: the file's value where it differs from what is painted."""
    painted = f"rgb {tuple(int(v) for v in pixels.rgb[y, x])}"
    if not pixels.deep:
        return painted
    if pixels.values is None:
        return f"{painted} as shown (stretched; the file's own values are not kept for an image this large)"
    v = pixels.values[y, x]
    value = _number(v) if np.ndim(v) == 0 else "(" + ", ".join(_number(c) for c in v) + ")"
    return f"value {value} in the file, shown as {painted}"


def load_thumbnail(image_id: int, path: str | os.PathLike[str], size: int) -> Thumbnail:
    """A thumbnail whose longer side is ``size``; never raises (errors become the reason)."""
    try:
        rgb = load_rgb(path)
    except DisplayError as exc:
        return Thumbnail(image_id, None, exc.reason)
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill a pool thread silently
        return Thumbnail(image_id, None, f"cannot decode ({type(exc).__name__}: {exc})")
    h, w = rgb.shape[:2]
    return Thumbnail(image_id, np.ascontiguousarray(shrink_to(rgb, size)), None, w, h)


def colorize_heatmap(heat: np.ndarray, colormap: str = "jet", vmin: float | None = None,
                     vmax: float | None = None) -> np.ndarray:
    """A float heatmap (h, w) -> RGBA uint8 where alpha follows the heat (cold stays see-through)."""
    h = np.nan_to_num(heat.astype(np.float32))
    lo = float(h.min()) if vmin is None else vmin
    hi = float(h.max()) if vmax is None else vmax
    norm = np.clip((h - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    u8 = (norm * 255.0 + 0.5).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, COLORMAPS.get(colormap, cv2.COLORMAP_JET))
    rgba = np.empty((*u8.shape, 4), np.uint8)
    rgba[..., :3] = bgr[..., ::-1]
    rgba[..., 3] = np.clip(norm * 1.6, 0.0, 1.0) * 255
    return np.ascontiguousarray(rgba)


def colorize_mask(mask: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """A boolean mask -> RGBA uint8, ``rgb`` where set, transparent elsewhere."""
    m = mask.astype(bool)
    out = np.zeros((*m.shape, 4), np.uint8)
    out[m] = (*rgb, 255)
    return out


def resize_to(arr: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """Bring a prediction (mask, heatmap) to the image's own size for overlaying."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = arr.astype(np.uint8) if arr.dtype == bool else arr
    out = cv2.resize(src, (width, height), interpolation=interp)
    return out.astype(bool) if arr.dtype == bool else out


def encode_mask_png(mask: np.ndarray, level: int | None = None) -> bytes:
    """Lossless storage form of a binary mask (0/255 gray PNG; any value above 0 is foreground): the one encoder
    of label masks, exported and imported masks (byte-equal for the same mask, so a re-import reads "unchanged")
    and, at ``level`` 6, the worker's predicted masks. ``level``: the PNG compression (None: OpenCV's default)."""
    params = [] if level is None else [cv2.IMWRITE_PNG_COMPRESSION, int(level)]
    # 8-bit from the start: np.where(mask > 0, 255, 0) made 8 bytes a pixel first, 1.6 GB for the largest image a
    # COCO file may declare (a session-49 audit: a 142-byte file of one empty 14000x14000 image peaked at 1.7 GB)
    ok, buf = cv2.imencode(".png", np.multiply(mask > 0, 255, dtype=np.uint8), params)
    if not ok:
        raise DisplayError("could not encode the mask as PNG")
    return buf.tobytes()


def decode_mask_png(data: bytes) -> np.ndarray:
    """PNG bytes -> bool (h, w); any non-zero pixel is foreground."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DisplayError("stored mask is not a readable PNG")
    if img.ndim == 3:
        img = img.max(axis=2)
    return img > 0


def mask_has_target(data: bytes) -> bool:
    """Whether stored mask PNG bytes hold any foreground pixel (an unreadable one: no)."""
    try:
        return bool(decode_mask_png(data).any())
    except DisplayError:
        return False


@dataclass(frozen=True)
class Target:
    """One predicted target (an 8-connected component of the segmenter's mask), in image pixels.

    A small target is a few pixels of a large frame: the viewer rings it at a size that stays
    visible at any zoom, and Tab steps through these in reading order.
    """

    cx: float
    cy: float
    radius: float  # half the diagonal of the component's bounding box


def targets_of(mask: np.ndarray | None) -> list[Target]:
    """The mask's components, top to bottom then left to right (the order Tab steps through)."""
    if mask is None or not mask.any():
        return []
    from app.services.export_items import components  # the one component finder (export counts the same)
    out = []
    for c in components(mask):
        h, w = c.crop.shape
        out.append(Target(c.x + w / 2.0, c.y + h / 2.0, 0.5 * float(np.hypot(w, h))))
    return sorted(out, key=lambda t: (t.cy, t.cx))
