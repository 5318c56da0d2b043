"""Folder walking and incremental change detection (no database)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from app.services.file_scan import KnownFile, hash_file, hash_files, plan_changes, walk_images


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_walk_finds_images_recursively_by_suffix(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", b"1")
    _write(tmp_path / "sub" / "deeper" / "b.TIFF", b"22")
    _write(tmp_path / "sub" / "c.jpeg", b"333")
    _write(tmp_path / "notes.txt", b"x")
    _write(tmp_path / ".hidden" / "d.png", b"x")
    found = {e.rel_path: e for e in walk_images(tmp_path)}
    assert set(found) == {"a.png", "sub/deeper/b.TIFF", "sub/c.jpeg"}
    assert found["sub/c.jpeg"].size_bytes == 3
    assert found["a.png"].mtime_ns == os.stat(tmp_path / "a.png").st_mtime_ns


def test_plan_hashes_only_new_or_changed(tmp_path: Path) -> None:
    for name in ("same.png", "grown.png", "touched.png", "new.png"):
        _write(tmp_path / name, b"abc")
    found = {e.rel_path: e for e in walk_images(tmp_path)}
    known = {
        "same.png": KnownFile(3, found["same.png"].mtime_ns, "h"),
        "grown.png": KnownFile(2, found["grown.png"].mtime_ns, "h"),
        "touched.png": KnownFile(3, found["touched.png"].mtime_ns - 1, "h"),
        "gone.png": KnownFile(3, 1, "h"),
        "gone-before.png": KnownFile(3, 1, "h", missing=True),
    }
    _write(tmp_path / "back.png", b"abc")
    found = {e.rel_path: e for e in walk_images(tmp_path)}
    known["back.png"] = KnownFile(3, found["back.png"].mtime_ns, "h", missing=True)
    plan = plan_changes(found.values(), known)
    assert plan.unchanged == 1  # same.png: only counted
    assert sorted(e.rel_path for e in plan.changed) == ["grown.png", "touched.png"]
    assert [e.rel_path for e in plan.new] == ["new.png"]
    assert [e.rel_path for e in plan.restored] == ["back.png"]
    assert plan.gone == ("gone.png",)  # gone-before.png is marked missing already


def test_hash_streams_large_files_and_reports_vanished_ones(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several chunks
    _write(tmp_path / "big.png", data)
    assert hash_file(tmp_path / "big.png") == hashlib.sha256(data).hexdigest()
    entries = list(walk_images(tmp_path))
    (tmp_path / "big.png").unlink()
    assert [(e.rel_path, d) for e, d in hash_files(tmp_path, entries)] == [("big.png", None)]
