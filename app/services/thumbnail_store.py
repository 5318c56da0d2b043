"""Thumbnails kept on disk across sessions, keyed by the file's content hash and the size.

Re-opening a folder of a million images should not decode a million full pictures again: a
thumbnail decoded once is written to a bounded cache folder and read back (a few kilobytes)
next time. The key is the content hash the indexer already computed, so a renamed or copied
file reuses its thumbnail and a changed one never shows a stale picture. When the folder
outgrows its bound, the least recently written files go first.

File layout: ``<root>/<hash[:2]>/<hash>-<size>.thumb``: 8 bytes (original width, height as
little-endian uint32) then a PNG. Qt-free: decoder threads call it.
"""
from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path

import cv2
import numpy as np

from app.services.disk_budget import DiskBudget
from app.services.display import Thumbnail, load_thumbnail

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024  # a thumbnail file larger than this is not one of ours


class ThumbnailStore:
    def __init__(self, root: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self._budget = DiskBudget(self.root, ".thumb", max_bytes)

    def _path(self, content_hash: str, size: int) -> Path:
        return self.root / content_hash[:2] / f"{content_hash}-{size}.thumb"

    def get(self, image_id: int, content_hash: str, size: int) -> Thumbnail | None:
        """The stored thumbnail, or None (absent, or unreadable: then it is removed)."""
        path = self._path(content_hash, size)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError("too large")
            data = path.read_bytes()
            w, h = HEADER.unpack_from(data)
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8, offset=HEADER.size), cv2.IMREAD_UNCHANGED)
            if bgr is None or bgr.ndim != 3 or max(bgr.shape[:2]) > size:
                raise ValueError("not a thumbnail")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, struct.error, cv2.error) as exc:
            log.warning("dropping unreadable cached thumbnail %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        order = [2, 1, 0, 3][:bgr.shape[2]]
        return Thumbnail(image_id, np.ascontiguousarray(bgr[..., order]), None, int(w), int(h))

    def put(self, content_hash: str, size: int, thumb: Thumbnail) -> None:
        """Store a decoded thumbnail (failures are logged: the cache is only a speed-up)."""
        if thumb.rgb is None:
            return
        order = [2, 1, 0, 3][:thumb.rgb.shape[2]]
        ok, png = cv2.imencode(".png", np.ascontiguousarray(thumb.rgb[..., order]))
        if not ok:
            return
        data = HEADER.pack(thumb.width, thumb.height) + png.tobytes()
        path = self._path(content_hash, size)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot cache thumbnail %s: %s", path, exc)
            # a partial file of a full disk is removed: the size limit counts thumbnails only, so they piled up
            # unbounded (a session-46 probe)
            tmp.unlink(missing_ok=True)
            return
        self._budget.wrote(path)


def cached_thumbnail(store: ThumbnailStore | None, image_id: int, path: str | os.PathLike[str], size: int,
                     content_hash: str | None) -> Thumbnail:
    """The thumbnail from the disk cache when it holds one for this content, else decoded from
    the file (and stored for next time)."""
    if store is not None and content_hash:
        hit = store.get(image_id, content_hash, size)
        if hit is not None:
            return hit
    thumb = load_thumbnail(image_id, path, size)
    if store is not None and content_hash and thumb.rgb is not None:
        store.put(content_hash, size, thumb)
    return thumb
