"""Walking an image folder and fingerprinting its files, without touching the database.

Indexing a station's folder must stay fast at 10,000+ files: the walk uses ``os.scandir``
(one ``stat`` per entry, no ``Path`` objects), and content hashes are streamed in 1 MiB
chunks on a small thread pool (``hashlib`` releases the GIL on large buffers, so hashing
overlaps with disk reads). Files whose size and modification time are unchanged since the
last index are never re-read: ``plan_changes`` tells which ones need hashing.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from inference.imageio import IMAGE_SUFFIXES

HASH_CHUNK = 1 << 20
HASH_THREADS = 4


@dataclass(frozen=True)
class FoundFile:
    """One image file found under a folder; ``rel_path`` uses '/' on every platform."""

    rel_path: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class KnownFile:
    """What the database already holds about a file (from a previous index)."""

    size_bytes: int
    mtime_ns: int
    content_hash: str | None


@dataclass(frozen=True)
class ScanPlan:
    """The difference between the folder on disk and what was indexed before."""

    new: tuple[FoundFile, ...]
    changed: tuple[FoundFile, ...]
    unchanged: tuple[FoundFile, ...]
    gone: tuple[str, ...]


def walk_images(root: str | os.PathLike[str]) -> Iterator[FoundFile]:
    """Every image file under ``root`` (recursive, by suffix, hidden folders skipped), sorted per folder."""
    base = os.fspath(root)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel_dir) if rel_dir else base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            continue  # an unreadable sub-folder must not stop the rest of the index
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(rel)
                elif e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
                    st = e.stat()
                    yield FoundFile(rel, st.st_size, st.st_mtime_ns)
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def plan_changes(found: Iterable[FoundFile], known: Mapping[str, KnownFile]) -> ScanPlan:
    """Split the files on disk into new / changed / unchanged (size and mtime equal) / gone."""
    new, changed, unchanged, seen = [], [], [], set()
    for entry in found:
        seen.add(entry.rel_path)
        old = known.get(entry.rel_path)
        if old is None:
            new.append(entry)
        elif old.size_bytes == entry.size_bytes and old.mtime_ns == entry.mtime_ns and old.content_hash:
            unchanged.append(entry)
        else:
            changed.append(entry)
    gone = tuple(sorted(set(known) - seen))
    return ScanPlan(tuple(new), tuple(changed), tuple(unchanged), gone)


def hash_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes, streamed (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def hash_files(root: str | os.PathLike[str], entries: Iterable[FoundFile],
               on_done: Callable[[int], None] | None = None) -> Iterator[tuple[FoundFile, str | None]]:
    """(entry, digest) in input order; digest is None for a file that vanished or cannot be read."""
    base = Path(root)

    def one(entry: FoundFile) -> str | None:
        try:
            return hash_file(base / entry.rel_path)
        except OSError:
            return None

    items = list(entries)
    with ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="hash") as pool:
        for i, digest in enumerate(pool.map(one, items)):
            if on_done is not None:
                on_done(i + 1)
            yield items[i], digest
