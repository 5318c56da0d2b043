"""A cache folder kept under a size: the files written longest ago go first.

One home for the station's disk caches (thumbnails, image embeddings), laid out ``ROOT/<2 chars>/<file><suffix>``.
A cache that only ever adds grows for good: the embeddings cache kept one file per image content "label next" ever
read, the old ones after a file changed included (a session-48 probe: 40 files a round, never fewer).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def disk_bytes(st: os.stat_result) -> int:
    """What a file takes on disk (its blocks: a 1.7 KB vector takes 4 KiB), at least its length."""
    return max(st.st_size, getattr(st, "st_blocks", 0) * 512)


class DiskBudget:
    """Counts what is written into ``root`` (measured once, at the first write) and, past ``max_bytes``, deletes the
    oldest ``*suffix`` files until it holds nine tenths of it. Thread-safe; failures to delete are passed over."""

    def __init__(self, root: Path, suffix: str, max_bytes: int) -> None:
        self.root, self.suffix, self.max_bytes = root, suffix, max_bytes
        self._lock = threading.Lock()
        self._total: int | None = None

    def wrote(self, path: Path) -> None:
        """``path`` was just written: counted, and the folder pruned when past the budget."""
        try:
            size = disk_bytes(path.stat())
        except OSError:
            return
        with self._lock:
            self._total = self._measure() if self._total is None else self._total + size
            if self._total > self.max_bytes:
                self._total = self._prune(int(self.max_bytes * 0.9))

    def _files(self) -> list[tuple[float, int, str]]:
        out: list[tuple[float, int, str]] = []
        if not self.root.is_dir():
            return out
        for sub in os.scandir(self.root):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for e in os.scandir(sub.path):
                if e.name.endswith(self.suffix):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    out.append((st.st_mtime, disk_bytes(st), e.path))
        return out

    def _measure(self) -> int:
        return sum(size for _m, size, _p in self._files())

    def _prune(self, target: int) -> int:
        files = sorted(self._files())
        total = sum(size for _m, size, _p in files)
        for _mtime, size, path in files:
            if total <= target:
                break
            try:
                os.unlink(path)
                total -= size
            except OSError:
                pass
        return total
