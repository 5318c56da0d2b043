"""Cheap image embeddings for "label next", cached on disk by content hash.

"Label next" needs a space in which near-duplicates sit close together, so a proposed batch can
spread over the folder instead of being twenty copies of one tile. A backbone's embedding is
the obvious choice, but it costs a network per image and the GUI must never import torch; this
module's ``texture`` source costs a decode and a few OpenCV filters (about a millisecond on a
256-pixel tile) and is computed once per file content: the cache is keyed by the content hash
the indexer already keeps, so a renamed or copied file reuses its vector and a changed one never
shows a stale one.

Sources are pluggable (``EmbeddingSource``): a backbone embedding (the out-of-domain branch's)
plugs in by name and gets its own cache folder, so switching never mixes vectors of two spaces.

File layout: ``<root>/<source>/<hash[:2]>/<hash>.f32``: the vector as little-endian float32.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.services.disk_budget import DiskBudget
from inference.imageio import ImageReadError, read_image
from inference.texture_features import FEATURE_SETS, TEXTURE_DIM, image_defect_bank, image_texture

DEFECT_BANK_DIM = FEATURE_SETS["defect_bank"][0]

log = logging.getLogger(__name__)

MAX_VECTOR = 4096  # a cached file longer than this many floats is not one of ours
_SAFE_NAME = re.compile(r"^[a-z0-9_\-]{1,40}$")
_SAFE_HASH = re.compile(r"^[0-9a-fA-F]{8,128}$")


class EmbeddingSource(Protocol):
    """Turns image files into fixed-length vectors; ``name`` keys the cache (one folder per source)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, path: str | os.PathLike[str]) -> np.ndarray:
        """One (dim,) float32 vector; raises ImageReadError for a file that cannot be read."""
        ...


@dataclass(frozen=True)
class TextureEmbedding:
    """Gray 12 x 12 thumbnail + gradient orientation histogram + 4 x 4 edge energy + intensity,
    edge and spot statistics (184 numbers, computed by ``inference.texture_features``, which the
    ``texture_linear`` classifier also reads): no model, the same on every machine."""

    name: str = "texture"
    dim: int = TEXTURE_DIM

    def embed(self, path: str | os.PathLike[str]) -> np.ndarray:
        return image_texture(read_image(path, "gray"))


MAX_CACHE_BYTES = 256 * 1024 * 1024  # per source, on disk (4 KiB a vector): some 60,000 images' vectors


class EmbeddingCache:
    """Vectors of one source on disk, keyed by content hash; thread-safe by construction (each
    write goes to a temporary file renamed into place)."""

    def __init__(self, root: str | os.PathLike[str], source: EmbeddingSource, max_bytes: int = MAX_CACHE_BYTES) -> None:
        if not _SAFE_NAME.match(source.name):
            raise ValueError(f"embedding source name {source.name!r}: use a-z, 0-9, _ and - only")
        self.source = source
        self.root = Path(root) / source.name
        self._budget = DiskBudget(self.root, ".f32", max_bytes)   # the vectors written longest ago go first

    def _path(self, content_hash: str) -> Path:
        return self.root / content_hash[:2] / f"{content_hash}.f32"

    def get(self, content_hash: str) -> np.ndarray | None:
        """The cached vector, or None (absent, or not a vector of this source: then removed)."""
        if not _SAFE_HASH.match(content_hash):
            return None
        path = self._path(content_hash)
        try:
            if path.stat().st_size > MAX_VECTOR * 4:
                raise ValueError("too large")
            vec = np.fromfile(path, dtype="<f4")
            if vec.shape != (self.source.dim,) or not np.isfinite(vec).all():
                raise ValueError(f"{vec.size} numbers, expected {self.source.dim}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("dropping unreadable cached embedding %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        return vec.astype(np.float32)

    def put(self, content_hash: str, vec: np.ndarray) -> None:
        if not _SAFE_HASH.match(content_hash):
            return
        path = self._path(content_hash)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            np.asarray(vec, dtype="<f4").tofile(tmp)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk: the vector is recomputed next time
            log.warning("cannot cache embedding %s: %s", path, exc)
            return
        self._budget.wrote(path)

    def vectors(self, items: Sequence[tuple[str, str | None]],
                progress: Callable[[int, int], None] | None = None,
                deadline: float | None = None) -> tuple[np.ndarray, list[str]]:
        """(n, dim) vectors of ``(path, content_hash)`` pairs, computed only where not cached;
        rows of unreadable files are NaN and their reasons are returned (one line each).
        ``deadline`` (``time.monotonic()``): once passed, no more vectors are computed (cached ones are
        still read; at least one is computed per call, so repeated calls finish): those rows stay NaN
        without a reason, so NaN rows beyond the problems are the ones still to compute."""
        out = np.full((len(items), self.source.dim), np.nan, dtype=np.float32)
        problems: list[str] = []
        computed = 0
        for i, (path, content_hash) in enumerate(items):
            vec = self.get(content_hash) if content_hash else None
            if vec is None:
                if deadline is not None and computed and time.monotonic() > deadline:
                    continue
                computed += 1
                try:
                    vec = self.source.embed(path)
                except ImageReadError as exc:
                    problems.append(str(exc))
                    continue
                if vec.shape != (self.source.dim,):
                    raise ValueError(f"embedding source {self.source.name!r} gave {vec.shape[0] if vec.ndim else 0} "
                                     f"numbers, it declares {self.source.dim}")
                if content_hash:
                    self.put(content_hash, vec)
            out[i] = vec
            if progress is not None:
                progress(i + 1, len(items))
        return out, problems


@dataclass(frozen=True)
class DefectBankEmbedding:
    """The 418 small-defect statistics and texture descriptors the retrain command's chosen head reads
    (``inference.texture_features.image_defect_bank``, ADR 0033): about 50 ms per 256-pixel tile, so
    "label next" computes it only for what the counter needs (the labelled images)."""

    name: str = "defect_bank"
    dim: int = DEFECT_BANK_DIM

    def embed(self, path: str | os.PathLike[str]) -> np.ndarray:
        return image_defect_bank(read_image(path, "gray")).astype(np.float32)


SOURCES: dict[str, Callable[[], EmbeddingSource]] = {"texture": TextureEmbedding, "defect_bank": DefectBankEmbedding}


def embedding_source(name: str = "texture") -> EmbeddingSource:
    """The registered source ``name`` (another source registers itself in ``SOURCES``)."""
    try:
        return SOURCES[name]()
    except KeyError:
        raise ValueError(f"unknown embedding source {name!r}; known: {', '.join(SOURCES)}") from None
