"""Content-addressed cache for large prediction artifacts (anomaly maps), beside the database.

The database keeps only a reference (``ab/abcdef....npz``): maps can be recomputed, so they do
not bloat the database or its backups, and identical maps are stored once. Files are written to
a temporary name and renamed, so a crash never leaves a half-written artifact under a valid name,
and two workers writing the same content race harmlessly.

Maps are stored as float16 in a compressed ``.npz`` (read back with ``allow_pickle=False``):
display needs far less than float32's precision and this halves the size.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from app.paths import cache_dir

ENV_OVERRIDE = "INSPECTION_STATION_ARTIFACTS"


def beside_database(db_url: str, suffix: str) -> Path | None:
    """``station.sqlite`` + ``-artifacts`` -> ``station-artifacts`` in the same folder; None if not a file."""
    if db_url.startswith("sqlite:///") and ":memory:" not in db_url:
        db_file = Path(db_url[len("sqlite:///"):].split("?", 1)[0])
        return db_file.with_name(db_file.stem + suffix)
    return None


def artifact_root(db_url: str) -> Path:
    """Folder next to a SQLite file, else the user cache (``INSPECTION_STATION_ARTIFACTS`` overrides)."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override)
    return beside_database(db_url, "-artifacts") or cache_dir() / "artifacts"


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def put_bytes(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        ref = f"{digest[:2]}/{digest}{suffix}"
        target = self.root / ref
        if target.exists():
            return ref
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return ref

    def get_bytes(self, ref: str) -> bytes:
        return self._path(ref).read_bytes()

    def _path(self, ref: str) -> Path:
        p = (self.root / ref).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"artifact reference outside the cache: {ref!r}")
        return p

    def put_map(self, anomaly_map: np.ndarray) -> str:
        buf = io.BytesIO()
        np.savez_compressed(buf, map=np.asarray(anomaly_map, dtype=np.float16))
        return self.put_bytes(buf.getvalue(), ".npz")

    def get_map(self, ref: str) -> np.ndarray:
        """The map as float32; ``FileNotFoundError`` when the cache was cleared (recompute it)."""
        with np.load(self._path(ref), allow_pickle=False) as data:
            return np.asarray(data["map"], dtype=np.float32)

