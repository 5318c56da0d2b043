"""Thumbnails on disk across sessions: keyed by content and size, bounded, never trusted blindly."""
from __future__ import annotations

import cv2
import numpy as np

from app.services.display import load_thumbnail
from app.services.thumbnail_store import ThumbnailStore, cached_thumbnail


def _picture(path, seed: int = 0, side: int = 200):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), (rng.random((side, side + 40, 3)) * 255).astype(np.uint8))
    return path


def test_a_second_session_reads_the_thumbnail_without_the_file(tmp_path):
    src = _picture(tmp_path / "a.png")
    first = cached_thumbnail(ThumbnailStore(tmp_path / "cache"), 7, src, 64, "ab" * 32)
    src.unlink()  # the next session cannot have decoded it from the file
    again = cached_thumbnail(ThumbnailStore(tmp_path / "cache"), 7, src, 64, "ab" * 32)
    assert again.error is None and (again.width, again.height) == (first.width, first.height) == (240, 200)
    assert np.array_equal(again.rgb, first.rgb)
    assert cached_thumbnail(ThumbnailStore(tmp_path / "cache"), 7, src, 96, "ab" * 32).rgb is None  # other size


def test_without_a_hash_nothing_is_stored(tmp_path):
    src = _picture(tmp_path / "a.png")
    store = ThumbnailStore(tmp_path / "cache")
    assert np.array_equal(cached_thumbnail(store, 1, src, 64, None).rgb, load_thumbnail(1, src, 64).rgb)
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cache_file_is_dropped_and_decoded_again(tmp_path):
    src = _picture(tmp_path / "a.png")
    store = ThumbnailStore(tmp_path / "cache")
    cached_thumbnail(store, 1, src, 64, "cd" * 32)
    [f] = list((tmp_path / "cache").rglob("*.thumb"))
    f.write_bytes(b"\x10\x00\x00\x00\x10\x00\x00\x00not a png")
    assert store.get(1, "cd" * 32, 64) is None and not f.exists()
    assert cached_thumbnail(store, 1, src, 64, "cd" * 32).rgb is not None


def test_the_cache_folder_stays_under_its_bound(tmp_path):
    store = ThumbnailStore(tmp_path / "cache", max_bytes=60_000)
    for k in range(30):
        cached_thumbnail(store, k, _picture(tmp_path / f"{k}.png", seed=k), 64, f"{k:064x}")
    total = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.thumb"))
    assert 0 < total <= 60_000
    assert store.get(29, f"{29:064x}", 64) is not None  # the newest is kept


def test_a_write_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    """A session-46 probe: on a full disk each failed write left its partial ``.tmp`` file, which the size limit
    (counting thumbnails only) never removed."""
    from pathlib import Path

    src = _picture(tmp_path / "a.png")
    store = ThumbnailStore(tmp_path / "cache")
    real = Path.write_bytes

    def full(self, data):
        real(self, data[:10])
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", full)
    for i in range(3):
        assert cached_thumbnail(store, i, src, 64, f"{i:02d}" * 32).rgb is not None  # shown all the same
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
