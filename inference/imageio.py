"""Reading part images of any common kind into one normalised form.

Stations receive 8- and 16-bit, gray, RGB and RGBA images in PNG, JPEG, BMP and TIFF. Every
model and every view goes through ``read_image`` so that a file that loads in one place loads
everywhere, and one that fails says why (``ImageReadError``) instead of crashing a batch.
"""
from __future__ import annotations

import functools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

import cv2
import numpy as np

from inference import MAX_PIXELS
from inference.model_limits import ModelLimitError, regular_file_size
from inference.preprocess import shrink_to

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MAX_FILE_BYTES = 1 << 30
# What a decoded PNG may take, from its header's size, channels and depth: a 1.5 MB PNG of 14000 x 14000 16-bit
# RGBA zeros is within MAX_PIXELS but decodes to 1.5 GB (3.5 GB at the peak, a session-46 probe), and the window
# decodes up to three images at once. 8-bit colour at MAX_PIXELS (600 MB) passes.
MAX_DECODED_BYTES = 800_000_000
# PNG colour type -> the channels OpenCV decodes it to (palette and grey with alpha come out as BGR(A))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What the PNG chunk walk holds of a file at once: a chunk's data is read and its CRC run in pieces of this size
_PNG_PIECE = 1 << 20

# OpenCV's decoders log "[ WARN:0] … grfmt_png.cpp …" for every broken file; the reason a person
# gets is ImageReadError's (its "[ERROR] … imdecode_" lines repeat the raw assertion text), so it is silenced.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class ImageReadError(Exception):
    """An image that cannot be used, with a reason a person can act on."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode a file as stored: (h, w) or (h, w, c) in BGR(A) order, uint8 or uint16 (or float)."""
    p = Path(path)
    _check_file_size(p, path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if (reason := _header_refusal(p, data[:26].tobytes())) is not None:  # refused from its header, never decoded
        raise ImageReadError(path, reason)
    if data[:8].tobytes() == PNG_SIGNATURE:
        damage, profiles = png_damage(data)
        if damage:  # refused before libpng sees it: libpng prints its own "libpng error: …" lines
            raise ImageReadError(path, f"not a decodable image (damaged PNG: {damage})")
        if profiles:  # an ICC profile libpng finds fault with was a "libpng warning: iCCP: …" line on stderr in every
            # command (a session-47 audit, on SIRST frames); OpenCV applies no profile, so the pixels are the same
            keep = np.ones(len(data), bool)
            for start, end in profiles:
                keep[start:end] = False
            data = data[keep]
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error:  # its text is an OpenCV assertion ("(-215:Assertion failed) …"), not a reason
        img = None
    if img is None or img.size == 0:
        raise ImageReadError(path, "not a decodable image (corrupt or unsupported format)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageReadError(path, too_large(img.shape[1], img.shape[0]))
    if data[:4].tobytes() in TIFF_SIGNATURES and (orientation := exif_orientation(p)) not in (None, 1):
        img = _as_stored(img, orientation)
    return img


def _check_file_size(p: Path, path: str | os.PathLike) -> None:
    """``ImageReadError`` for a file ``read_raw`` never opens (missing, empty, not a regular file, over
    ``MAX_FILE_BYTES``); nothing for one it does."""
    try:
        size = regular_file_size(p)
    except ModelLimitError:  # a pipe read as "empty file (0 bytes)", and opening one waits for a writer for good
        raise ImageReadError(path, "not a regular file (a pipe, device or folder is never read)") from None
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot access file ({exc.strerror or exc})") from None
    except ValueError:  # a NUL in the name: only a tampered database row holds such a path
        raise ImageReadError(repr(str(path)), "not a usable file name (it holds a NUL character)") from None
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageReadError(path, f"file too large ({size / 2**20:.0f} MiB)")


def _header_refusal(p: Path, head: bytes) -> str | None:
    """Why the file's header alone rules it out (over ``MAX_PIXELS``, or a PNG decoding past ``MAX_DECODED_BYTES``;
    ``head``: its first 26 bytes), or None."""
    size = stored_size(p)   # None (no size in the header) still leaves the PNG check below to the bytes it holds
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        return too_large(*size)
    if head[:8] == PNG_SIGNATURE and len(head) >= 26:
        width, height = (int.from_bytes(head[o:o + 4], "big") for o in (16, 20))
        depth = 2 if head[24] == 16 else 1
        need = width * height * _PNG_CHANNELS.get(head[25], 4) * depth
        if need > MAX_DECODED_BYTES:
            return (f"image too large to decode ({width}x{height} pixels of {'16' if depth == 2 else '8'}-bit samples, "
                    f"{need / 1e6:.0f} MB decoded; the station decodes up to {MAX_DECODED_BYTES / 1e6:.0f} MB)")
    return None


def refusal_before_decoding(path: str | os.PathLike, chunks: bool = False) -> str | None:
    """Why ``read_raw`` would refuse the file from what it checks before decoding any pixel (the file missing, empty,
    not a regular file or too large; its header's size over ``MAX_PIXELS``; a PNG decoding past
    ``MAX_DECODED_BYTES``; ``chunks``: a PNG whose chunks are broken, its chunks read from the file a piece at a
    time and their CRCs checked, the answer remembered while the file is unchanged: ``_png_file_damage``), in
    ``read_raw``'s words, or None (a header that gives no size is left to the decoder).

    Why: a label is refused on a file the station cannot read (``ReviewService.save``) and the export skips one,
    cheaply, with no decoding (a session-52 audit: an empty file was labelled and exported as good data; a truncated
    PNG and a 12000 x 12000 16-bit RGBA one, refused by ``read_raw``, passed the export's header check)."""
    p = Path(path)
    try:
        _check_file_size(p, path)
        with open(p, "rb") as f:
            head = f.read(26)
            st = os.fstat(f.fileno())
        if (reason := _header_refusal(p, head)) is not None:
            return reason
        if chunks and head[:8] == PNG_SIGNATURE:
            resolved = os.path.realpath(p)
            damage = (_png_file_damage(resolved, st.st_size) if not REMEMBER_PNG_ANSWERS else
                      _png_file_damage_remembered(resolved, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev,
                                                  st.st_ctime_ns))
            if damage:
                return f"not a decodable image (damaged PNG: {damage})"
    except ImageReadError as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    return None


def _png_file_damage(resolved: str, size: int) -> str | None:
    """``png_damage``'s reason for the PNG file at ``resolved`` (of ``size`` bytes), read chunk by chunk from the file:
    ``_PNG_PIECE`` at a time, never the whole file (every label saved on a PNG asks it, on the label-writes thread,
    and the export asks it for each file; reading the whole file into memory took 688 ms and 574 MiB more peak memory
    per save of a valid 286 MiB PNG, later saves queueing behind it: a session-53 review)."""
    with open(resolved, "rb") as f:
        f.seek(len(PNG_SIGNATURE))
        damage, _ = _png_chunk_damage(f.read, size)
    return damage


# Whether a PNG's chunk check is remembered for an unchanged file: not on Windows (``_png_file_damage_remembered``).
REMEMBER_PNG_ANSWERS = os.name != "nt"


@functools.lru_cache(maxsize=4096)
def _png_file_damage_remembered(resolved: str, size: int, mtime_ns: int, inode: int, device: int,
                                ctime_ns: int) -> str | None:
    """``_png_file_damage``, remembered for the file as these describe it (``size`` bytes, modified at ``mtime_ns``,
    the file ``inode`` on ``device``, its status changed at ``ctime_ns``), so a file saved on again unchanged is not
    read again. POSIX only.

    Why all of them: ``cp -p``, ``shutil.copy2`` and Explorer's copy keep the source's modification time, so with size
    and time alone a damaged copy of the same size put over a checked file kept its "not damaged" answer, and a mended
    one stayed refused (a session-53 review). A file put in place gets a new inode or a new change time, which no copy
    tool can set back. On Windows Python 3.11 gives the creation time as ``st_ctime`` and a copy over an existing file
    keeps it and the file id, so nothing there tells such a copy: Windows reads the chunks each time (a streaming
    walk: tens of milliseconds for a file of hundreds of MiB). An OSError is not remembered (the caller says it)."""
    return _png_file_damage(resolved, size)


def too_large(width: int, height: int) -> str:
    """The reason for an image over ``MAX_PIXELS``, with its size and the bound (one wording everywhere)."""
    return (f"image too large ({width}x{height} pixels, {width * height / 1e6:.0f} megapixels; "
            f"the station reads up to {MAX_PIXELS / 1e6:.0f} megapixels)")


def header_size(path: str | os.PathLike, exif_rotation: bool = True) -> tuple[int, int]:
    """(width, height) from the file's header alone, without decoding it; (0, 0) when the header says nothing
    (``exif_rotation`` False: as stored, a JPEG's EXIF orientation not applied).

    Why: ``read_raw`` refuses an image over ``MAX_PIXELS`` from this before decoding it, whatever the format, and
    names its size (OpenCV's own guard answers None, the same as for a corrupt file: a 30,000 x 30,000 scan read
    "corrupt"). A 431 KB PNG of 20000 x 20000 was decoded whole, 807 MB, before the shape check refused it (a
    session-52 audit, where OpenCV's guard was set too late to act). ``imagesize`` (the header reader Sphinx uses)
    knows PNG, JPEG, TIFF, BMP, WebP and more; a file it cannot read is left to the decoder and its guard.
    """
    import imagesize

    try:
        width, height = imagesize.get(os.fspath(path), exif_rotation=exif_rotation)
    except Exception:  # noqa: BLE001 - a header it cannot parse is the same as no header
        return 0, 0
    return (int(width), int(height)) if width > 0 and height > 0 else (0, 0)


def stored_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of the pixels as the station reads them (as stored: ``read_raw`` ignores a JPEG's EXIF
    orientation, the header reader applies it), from the header alone; None when the header says nothing. What a
    mask is checked against where no model has read the image yet (its indexed size is not known)."""
    size = header_size(path, exif_rotation=False)
    return size if size != (0, 0) else None


def page_count(path: str | os.PathLike) -> int:
    """How many images a TIFF holds (1 for any other format, or when that cannot be told). The station and its
    models read the first page only; a multi-page TIFF showed page 1 with no word that there were more (left as
    found in session 43, seen under Xvfb in session 44: a two-page TIFF's second page was never seen)."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return 1
    try:
        return max(1, int(cv2.imcount(os.fspath(path))))
    except (cv2.error, OSError, ValueError):
        return 1


def png_damage(data: np.ndarray) -> tuple[str | None, list[tuple[int, int]]]:
    """Why a PNG's chunk structure is broken (truncated, a chunk's CRC wrong, no IEND), or None; and the byte spans of
    its ICC profile chunks (``iCCP``), which the station never applies and libpng warns about on stderr. ``data``:
    the whole file, already in memory (``read_raw``, which decodes it next); the same walk as a file's
    (``_png_chunk_damage``), over views of ``data``, no copy of it made.

    Checks what libpng would complain about on stderr, at the cost of one CRC pass over the file.
    """
    view = np.ascontiguousarray(data).data.cast("B")
    pos = len(PNG_SIGNATURE)

    def read(n: int) -> memoryview:
        nonlocal pos
        piece = view[pos:pos + n]
        pos += len(piece)
        return piece

    return _png_chunk_damage(read, len(view))


def _png_chunk_damage(read: Callable[[int], bytes | memoryview],
                      size: int) -> tuple[str | None, list[tuple[int, int]]]:
    """``png_damage``'s answer for a PNG of ``size`` bytes whose bytes after the signature come from ``read(n)`` (up
    to ``n`` bytes, in order: a file's ``read``, or views of bytes in memory). The one chunk walk behind both: a
    chunk's length and type, then its data in pieces of at most ``_PNG_PIECE`` with its CRC run over them, so a file
    is never held whole. A read that comes back short (the file shrank meanwhile) is said as the truncation it is."""
    pos = len(PNG_SIGNATURE)
    profiles: list[tuple[int, int]] = []
    while pos + 12 <= size:
        head = read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        end = pos + 12 + length
        name = kind.decode("latin-1", "replace")
        if length > 0x7FFFFFFF or end > size:
            return f"truncated in chunk {name!r}", profiles
        crc, left = zlib.crc32(kind), length
        while left:
            piece = read(min(left, _PNG_PIECE))
            if not piece:
                return f"truncated in chunk {name!r}", profiles
            crc = zlib.crc32(piece, crc)
            left -= len(piece)
        stored = read(4)
        if len(stored) < 4:
            return f"truncated in chunk {name!r}", profiles
        if struct.unpack(">I", stored)[0] != crc:
            return f"CRC error in chunk {name!r}", profiles
        if kind == b"iCCP":
            profiles.append((pos, end))
        if kind == b"IEND":
            return None, profiles
        pos = end
    return "truncated (no IEND chunk)", profiles


TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF, BigTIFF


def exif_orientation(path: str | os.PathLike) -> int | None:
    """A JPEG's EXIF orientation or a TIFF's (or BigTIFF's) own Orientation tag (1-8; None: neither, none stated, or
    unreadable), from the header (``imagesize``, the header reader the station already uses). The station reads the
    pixels as stored (``read_raw`` ignores it, as the models were trained), while many readers turn the image by it:
    an export says so (a session-43 probe: a mask drawn on the stored pixels, turned elsewhere)."""
    import imagesize

    try:
        rotation = imagesize.get_info(os.fspath(path)).rotation
    except Exception:  # noqa: BLE001 - a header it cannot parse states no orientation
        return None
    return rotation if 1 <= rotation <= 8 else None


def _as_stored(img: np.ndarray, orientation: int) -> np.ndarray:
    """Undo the turn OpenCV's TIFF decoder makes by the file's Orientation tag (it ignores a JPEG's with
    IMREAD_UNCHANGED): the pixels as stored, as for every other format (a session-47 audit: a TIFF tagged 6 was read
    turned, its labels and masks then fitting no reader of the raster)."""
    undo = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, 1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
            8: lambda a: np.rot90(a, -1)}
    return np.ascontiguousarray(undo[orientation](img)) if orientation in undo else img


def to_float(img: np.ndarray) -> np.ndarray:
    """Scale any integer depth to float32 in [0, 1]; floats are clipped to [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return ((img.astype(np.float64) - info.min) / (info.max - info.min)).astype(np.float32)
    out = img.astype(np.float32)
    return np.clip(np.nan_to_num(out), 0.0, 1.0)


def convert_channels(img: np.ndarray, mode: str) -> np.ndarray:
    """BGR(A)/gray -> 'gray' (h, w) or 'rgb' (h, w, 3). Alpha is dropped, not composited."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if mode == "gray":
        if img.ndim == 2:
            return img
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if mode == "rgb":
        if img.ndim == 2:
            return np.repeat(img[:, :, None], 3, axis=2)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ValueError(f"unknown channel mode {mode!r} (use 'gray' or 'rgb')")


def read_image(path: str | os.PathLike, mode: str = "rgb") -> np.ndarray:
    """Read an image as float32 in [0, 1]: (h, w) for 'gray', (h, w, 3) for 'rgb'."""
    return to_float(convert_channels(read_raw(path), mode))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask: any non-zero pixel is foreground; in a JPEG (lossy: its compression rings every edge with
    faint non-zero pixels) those over a quarter of its brightest, not any (a session-46 probe: a 9-pixel target read
    as 107; half dropped a fainter target). Returns bool (h, w)."""
    img = read_raw(path)
    if img.ndim == 3:
        img = img[:, :, :3].max(axis=2)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):   # over a quarter of its own range: the ring stays under it,
        top = float(img.max())                            # a fainter target or a 0/1 mask over it (the review)
        return img > top / 4 if top > 0 else np.zeros(img.shape, bool)
    return img > 0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] or 16-bit -> uint8 for display and thumbnails."""
    if img.dtype == np.uint8:
        return img
    return (np.clip(to_float(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class DecodedImage:
    """One image read once, converted into every channel mode the loaded families need."""

    height: int
    width: int
    views: Mapping[str, np.ndarray]  # mode -> float32 (h', w') or (h', w', 3), shrunk to <= max side
    channels: int = 0  # of the file as stored (1 grey, 3 colour, 4 with alpha); 0: not known

    @property
    def source(self) -> tuple[int, int, int]:
        """(height, width, channels) of the file: what the image descriptor reads of the camera."""
        return self.height, self.width, self.channels


def decode(path: str | os.PathLike, modes: Mapping[str, int]) -> DecodedImage:
    """Read ``path`` once; for each mode, channel-convert and shrink (still integer) before scaling to float."""
    raw = read_raw(path)
    if np.issubdtype(raw.dtype, np.floating) and raw.size:
        lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
        if lo < 0.0 or hi > 1.0:  # scored as a blank frame, clipped to 0-1, while the viewer stretched it (a probe)
            raise ImageReadError(path, f"floating-point pixels outside 0-1 ({lo:.4g} to {hi:.4g}): the models read "
                                       "float images in 0-1; save it as 8 or 16 bit, or scaled to 0-1")
    if np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize > 2:
        # scaled by the whole 32-bit range, a sensor's counts all fell near one grey: scored as a blank frame while
        # the viewer stretched it to its own range (a session-45 probe)
        raise ImageReadError(path, f"{raw.dtype.itemsize * 8}-bit integer pixels ({raw.dtype}): the models read 8 or "
                                   "16 bit images; save it as 8 or 16 bit")
    views = {}
    for mode, max_side in modes.items():
        try:
            views[mode] = to_float(shrink_to(convert_channels(raw, mode), max_side))
        except cv2.error:  # an OpenCV assertion's text says nothing to a person: name what it got
            channels = raw.shape[2] if raw.ndim == 3 else 1
            raise ImageReadError(path, f"cannot convert image: unsupported pixel layout ({channels} channels, "
                                       f"{raw.dtype})") from None
    return DecodedImage(int(raw.shape[0]), int(raw.shape[1]), views, stored_channels(path, raw))


def stored_channels(path: str | os.PathLike, raw: np.ndarray) -> int:
    """The channels the file stores (1 grey, 2 grey with alpha, 3 colour, 4 colour with alpha): OpenCV decodes a grey +
    alpha PNG to four channels, and an opaque grey strip saved so was said "stored as colour with alpha" (a session-47
    audit); its header's colour type says grey with alpha. It decodes an indexed (palette) PNG to three channels (four
    with a tRNS chunk's alpha), and one whose palette holds grey levels only was said "stored as colour" and its answers
    withheld as out of domain (a session-49 audit): its palette says grey."""
    channels = int(raw.shape[2]) if raw.ndim == 3 else 1
    if channels in (3, 4):
        try:
            with open(path, "rb") as f:
                head = f.read(33)   # signature, then the IHDR chunk (length, type, 13 bytes, CRC)
                if head[:8] != PNG_SIGNATURE or len(head) != 33:
                    return channels
                if head[25] == 4 and channels == 4:  # PNG colour type 4: grey + alpha
                    return 2
                if head[25] == 3 and _png_palette_is_grey(f):   # colour type 3: indexed
                    return 2 if channels == 4 else 1
        except OSError:
            return channels
    return channels


PNG_MAX_PALETTE = 256 * 3   # a PLTE chunk's largest body: 256 RGB entries
PNG_CHUNKS_BEFORE_PALETTE = 256   # ancillary chunks read past before a palette is given up for


def _png_palette_is_grey(f: BinaryIO) -> bool:
    """Whether the PLTE chunk of the PNG whose IHDR ``f`` has just passed holds grey levels only (R = G = B in every
    entry). Reads chunk headers and the palette only (at most ``PNG_MAX_PALETTE`` bytes), skipping any other chunk's
    body; False when no well-formed palette comes before the image data."""
    for _ in range(PNG_CHUNKS_BEFORE_PALETTE):
        header = f.read(8)
        if len(header) != 8:
            return False
        length, kind = struct.unpack(">I4s", header)
        if kind in (b"IDAT", b"IEND"):   # the palette must come before the image data
            return False
        if kind == b"PLTE":
            if length == 0 or length % 3 or length > PNG_MAX_PALETTE:
                return False
            body = f.read(length)
            return len(body) == length and all(body[i] == body[i + 1] == body[i + 2] for i in range(0, length, 3))
        f.seek(length + 4, os.SEEK_CUR)   # its body and CRC
    return False
