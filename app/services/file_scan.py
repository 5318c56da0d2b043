"""Walking an image folder and fingerprinting its files, without touching the database.

Indexing a station's folder must stay fast at 10,000+ files: the walk uses ``os.scandir``
(one ``stat`` per entry, no ``Path`` objects), and content hashes are streamed in 1 MiB
chunks on a small thread pool (``hashlib`` releases the GIL on large buffers, so hashing
overlaps with disk reads). Files whose size and modification time are unchanged since the
last index are never re-read: ``plan_changes`` tells which ones need hashing.

At a million files nothing here holds more than it must: unchanged files are only counted,
and hashing keeps a bounded window of files in flight (issue 22).
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping

from inference.imageio import IMAGE_SUFFIXES

HASH_CHUNK = 1 << 20
HASH_THREADS = 4
HASH_WINDOW = 256  # files submitted to the hash threads ahead of the one being yielded


@dataclass(frozen=True, slots=True)
class FoundFile:
    """One image file found under a folder; ``rel_path`` uses '/' on every platform."""

    rel_path: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class KnownFile:
    """What the database already holds about a file (from a previous index)."""

    size_bytes: int
    mtime_ns: int
    content_hash: str | None
    missing: bool = False  # its row is marked missing (the file had gone)


@dataclass(frozen=True)
class ScanPlan:
    """The difference between the folder on disk and what was indexed before."""

    new: tuple[FoundFile, ...]
    changed: tuple[FoundFile, ...]
    unchanged: int                    # how many: nothing to write for them
    gone: tuple[str, ...]             # rows whose file has gone (not marked missing yet)
    restored: tuple[FoundFile, ...] = ()  # unchanged files whose rows were marked missing
    # content hash -> the one row not seen on disk (gone now or missing before) with those bytes; a hash
    # two such rows share is left out (which row a new file with those bytes is cannot be told)
    vanished: dict[str, str] = field(default_factory=dict)


@dataclass
class WalkNotes:
    """What a walk could not read: folders (their rows are not taken for gone) and entries, with the reason."""

    unread_dirs: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)


def walk_images(root: str | os.PathLike[str], notes: WalkNotes | None = None,
                own_folders: Mapping[str, str] | None = None) -> Iterator[FoundFile]:
    """Every image file under ``root`` (recursive, by suffix, hidden folders skipped), sorted per folder. A folder or
    a name that cannot be read is passed over and noted (``notes``): a sub-folder read-protected had its images
    marked missing, and one name with invalid UTF-8 bytes or a path too long for the system stopped the whole
    index, the folder's other images included (found by a session-43 probe). A linked sub-folder is not followed
    and an image link whose target has gone cannot be read: both are noted too (they were passed over in silence), as
    is an entry whose ``stat`` fails for another reason, with the system's (a link round a loop: "Too many levels of
    symbolic links").
    ``own_folders``: sub-folders (relative path -> name) indexed as folders of their own, whose images are theirs:
    not walked, and noted (one file would otherwise have two rows). ``root`` itself that cannot be listed raises its
    ``OSError``: passed over like a sub-folder, nothing was seen, and every indexed image was taken for gone (a
    session-51 audit: a share remounted read-protected had all its rows marked missing, without a word). A folder
    that can be listed but not entered (``chmod 644``: readable, not searchable) is one that cannot be read: an
    entry's ``stat`` failing for want of permission (which a file's own mode never causes) raises at ``root`` and
    notes the folder below it, its sub-folders not walked (a session-51 review: each entry was passed over alone, so
    "files 0 missing 3")."""
    base = os.fspath(root)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel_dir) if rel_dir else base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:  # unreadable, gone meanwhile, a name too long: the rest of the index goes on
            if not rel_dir:
                raise
            if notes is not None and not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                notes.unread_dirs.add(rel_dir)
                notes.skipped.append(f"{shown_name(rel_dir)}/: {exc.strerror or exc}")
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                if notes is not None:
                    notes.skipped.append(f"{shown_name(rel)}: the name is not valid UTF-8 (rename it to index it)")
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    if own_folders and rel in own_folders:
                        if notes is not None:  # not read is not gone: rows an older index made there stay
                            notes.unread_dirs.add(rel)
                            notes.skipped.append(f"{shown_name(rel)}/: indexed as a folder of its own "
                                                 f"({own_folders[rel]}): its images are there")
                        continue
                    subdirs.append(rel)
                elif e.is_symlink() and e.is_dir():  # not followed: it may lead out of the folder, or round a loop
                    if notes is not None:
                        notes.skipped.append(f"{shown_name(rel)}/: a linked folder is not followed "
                                             "(open it as a folder of its own to index its images)")
                elif os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
                    if e.is_file():
                        st = e.stat()
                        yield FoundFile(rel, st.st_size, st.st_mtime_ns)
                    elif e.is_symlink() and notes is not None and not os.path.exists(e.path):
                        notes.skipped.append(f"{shown_name(rel)}: a link whose target has gone")
            except PermissionError as exc:  # the folder can be listed but not entered: none of its entries is read
                if not rel_dir:
                    raise
                if notes is not None:
                    notes.unread_dirs.add(rel_dir)
                    notes.skipped.append(f"{shown_name(rel_dir)}/: {exc.strerror or exc}")
                break
            except FileNotFoundError:  # gone since the folder was listed: nothing is there to say
                continue
            except OSError as exc:  # a link round a loop (ELOOP) was left out without a word (a session-52 audit)
                if notes is not None:
                    notes.skipped.append(f"{shown_name(rel)}: {exc.strerror or exc}")
                continue
        else:
            stack.extend(reversed(subdirs))


SHOWN_PATH_CHARS = 200


def shown(rel_path: str, limit: int = SHOWN_PATH_CHARS) -> str:
    """A stored path as a message shows it: a tampered row's path of thousands of characters is
    cut in the middle (its start and its file name stay readable) instead of flooding the report."""
    if len(rel_path) <= limit:
        return rel_path
    keep = (limit - 1) // 2
    return f"{rel_path[:keep]}…{rel_path[-keep:]}"


def shown_name(rel: str) -> str:
    """A walked path as text, whatever bytes its name holds, cut as ``shown`` cuts a stored one."""
    return shown(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def plan_changes(found: Iterable[FoundFile], known: MutableMapping[str, KnownFile],
                 unread_dirs: Collection[str] = ()) -> ScanPlan:
    """Split the files on disk into new / changed / unchanged (size and mtime equal, only
    counted) / restored (unchanged, but marked missing) / gone, and index the rows not seen by
    their bytes (``vanished``: a new file with the same bytes was moved or renamed). ``known`` is
    consumed as the files stream past (what is left at the end is what has gone): no second copy
    of the folder."""
    new, changed, restored, unchanged = [], [], [], 0
    for entry in found:
        old = known.pop(entry.rel_path, None)
        if old is None:
            new.append(entry)
        elif old.size_bytes == entry.size_bytes and old.mtime_ns == entry.mtime_ns and old.content_hash:
            if old.missing:
                restored.append(entry)
            else:
                unchanged += 1
        else:
            changed.append(entry)
    unseen = {p for p in known if any(p.startswith(d + "/") for d in unread_dirs)}  # not read is not gone
    gone = tuple(sorted(p for p, k in known.items() if not k.missing and p not in unseen))
    by_hash: dict[str, str | None] = {}
    for p, k in known.items():
        if p in unseen:
            continue
        if k.content_hash:
            by_hash[k.content_hash] = None if k.content_hash in by_hash else p
    vanished = {h: p for h, p in by_hash.items() if p is not None}
    return ScanPlan(tuple(new), tuple(changed), unchanged, gone, tuple(restored), vanished)


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

    window: deque[tuple[FoundFile, Future[str | None]]] = deque()
    done = 0

    def drain(keep: int) -> Iterator[tuple[FoundFile, str | None]]:
        nonlocal done
        while len(window) > keep:
            ready, future = window.popleft()
            done += 1
            if on_done is not None:
                on_done(done)
            yield ready, future.result()
    with ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="hash") as pool:
        for entry in entries:  # at most HASH_WINDOW in flight: no future per file of the folder
            window.append((entry, pool.submit(one, entry)))
            yield from drain(HASH_WINDOW - 1)
        yield from drain(0)
