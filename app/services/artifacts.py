"""Content-addressed cache for large prediction artifacts (anomaly maps), beside the database.

The database keeps only a reference (``ab/abcdef....npz``): maps can be recomputed, so they do
not bloat the database or its backups, and identical maps are stored once. Files are written to
a temporary name and renamed, so a crash never leaves a half-written artifact under a valid name,
and two workers writing the same content race harmlessly.

Maps are stored as float16 in a compressed ``.npz`` (read back with ``allow_pickle=False``):
display needs far less than float32's precision and this halves the size.

Where: a project's **maps folder** (a project setting, ``project_settings.MAPS_FOLDER``) when one is
set, so that every station and worker of a shared database writes and reads one folder (ADR 0061:
seen under Xvfb, two stations on one PostgreSQL database — the maps station B's worker made were in
B's user cache and station A drew no heatmap at all, saying nothing). Without it each station keeps
its own (beside a SQLite file, else the user cache), and a map another station's worker made is
reported unavailable with where it was looked for (``MapUnavailable``), never silently left out.
A machine that reaches the maps folder at another path maps it like the image folders (``database.path_map``,
ADR 0065); ``INSPECTION_STATION_ARTIFACTS`` overrides both on one machine.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.paths import cache_dir

ENV_OVERRIDE = "INSPECTION_STATION_ARTIFACTS"
# A stored map is at most a few hundred kB (256 x 256 float16, compressed); a file far larger in a
# shared folder is not one of ours and is not read into memory.
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024

log = logging.getLogger(__name__)


class MapUnavailable(FileNotFoundError):
    """An artifact none of the store's folders holds: made by a worker whose maps folder this station
    does not see, or removed. ``where`` names the folders looked in."""

    def __init__(self, ref: str, where: tuple[Path, ...]) -> None:
        self.ref, self.where = ref, where
        super().__init__(f"{ref} is in none of {', '.join(str(w) for w in where)}")


def beside_database(db_url: str, suffix: str) -> Path | None:
    """``station.sqlite`` + ``-artifacts`` -> ``station-artifacts`` in the same folder; None if not a file."""
    from database.engine import sqlite_file  # the one reading of a SQLite URL's path (a "?" or "%41" in it too)
    db_file = sqlite_file(db_url)
    return None if db_file is None else db_file.with_name(db_file.stem + suffix)


def station_root(db_url: str) -> Path:
    """This station's own folder: next to a SQLite file, else the user cache."""
    return beside_database(db_url, "-artifacts") or cache_dir() / "artifacts"


def artifact_root(db_url: str, maps_folder: str = "") -> Path:
    """Where maps are written: ``INSPECTION_STATION_ARTIFACTS``, else the project's maps folder, else
    this station's own."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return Path(override)
    from database import path_map  # a share stored as one machine's path, reached here elsewhere (ADR 0065)
    return Path(path_map.local(maps_folder)) if maps_folder else station_root(db_url)


def store_for(db_url: str, maps_folder: str = "") -> "ArtifactStore":
    """The store a station or worker uses: it writes to ``artifact_root`` and also reads this station's
    own folder, where its maps were kept before the project had a maps folder."""
    root, own = artifact_root(db_url, maps_folder), station_root(db_url)
    return ArtifactStore(root, also=() if own == root else (own,),
                         shared=bool(maps_folder) and not os.environ.get(ENV_OVERRIDE))


MAPS_MARKER = ".inspection-maps-folder"  # written into a project's maps folder when it is saved


def mark_maps_folder(root: Path, project: str | None = None) -> None:
    """Mark ``root`` as a project's maps folder (when it is saved), naming the project where known (``db sweep-maps``
    sweeps only a folder that names its project: another project's maps may be there too)."""
    marker = root / MAPS_MARKER
    if project is None and marker.is_file():
        return  # a marker naming its project stays
    text = "the anomaly maps of an inspection station project (ADR 0061)\n" + (f"project {project}\n" if project else "")
    marker.write_text(text, encoding="utf-8")


def maps_folder_project(root: Path) -> str | None:
    """The project a maps folder's marker names (None: none named)."""
    try:
        lines = (root / MAPS_MARKER).read_text(encoding="utf-8").splitlines()[:4]
    except (OSError, UnicodeDecodeError):
        return None
    return next((line.split(" ", 1)[1].strip() for line in lines if line.startswith("project ")), None)


MAP_SUFFIX = ".npz"   # ``put_map``'s files
TEMP_PREFIX = ".tmp-"   # ``_write``'s temporary files, renamed to their map's name once written
_SUBFOLDER = re.compile(r"[0-9a-f]{2}")
_MAP_NAME = re.compile(r"[0-9a-f]{64}" + re.escape(MAP_SUFFIX))
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]+")   # (``tempfile.mkstemp``'s random part)


def map_ref(digest: str, suffix: str = MAP_SUFFIX) -> str:
    """The name a map is stored under: ``ab/abcdef….npz``, its SHA-256 in a folder named by the hash's first two
    digits. The one place the name is built; ``_MAP_NAME`` and ``_SUBFOLDER`` above are its pattern, which is all
    ``sweep_maps`` removes (a session-51 audit: it removed every file of any two-character folder of a share)."""
    return f"{digest[:2]}/{digest}{suffix}"


def _is_map(subfolder: str, name: str) -> bool:
    """Whether ``subfolder/name`` is a name ``map_ref`` gives."""
    return _MAP_NAME.fullmatch(name) is not None and map_ref(name[:64], name[64:]) == f"{subfolder}/{name}"


def written_here(subfolder: str, name: str) -> bool:
    """Whether the file ``name`` in a maps folder's ``subfolder`` is one the station writes: a map named as ``map_ref``
    names it, or a temporary file ``_write`` left behind (a crash before its rename). Anything else in a maps folder,
    which may be a share that also holds part images and reports, is someone else's: never removed, never proof."""
    return _TEMP_NAME.fullmatch(name) is not None or _is_map(subfolder, name)


def map_subfolders(root: Path) -> Iterator[Path]:
    """The folders maps are kept in (``ab/`` of ``map_ref``'s ``ab/abcdef….npz``): two hexadecimal digits, not any
    two-character name (a line's ``L1/`` on the same share is not one: a session-51 audit)."""
    return (d for d in root.iterdir() if _SUBFOLDER.fullmatch(d.name) and d.is_dir())


def _maps_in(root: Path) -> Iterator[Path]:
    """The map files (``map_ref``'s names) in ``root``'s map subfolders."""
    return (f for d in map_subfolders(root) for f in d.iterdir() if _is_map(d.name, f.name) and f.is_file())


# Files a file manager leaves in a folder it showed (Finder, Explorer): no one's data, so they do not make a folder
# someone else's (``foreign_entry``). Compared without case: Windows does not tell names apart by case.
OS_METADATA_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")
_OS_METADATA = frozenset(name.casefold() for name in OS_METADATA_FILES)


def _os_metadata(entry: Path) -> bool:
    """Whether ``entry`` is a file a file manager left (``OS_METADATA_FILES``)."""
    return entry.name.casefold() in _OS_METADATA and entry.is_file()


def foreign_entry(root: Path) -> Path | None:
    """The first file or folder in ``root`` the station did not write (None: it holds only its marker, map subfolders
    and their maps): a folder saved as the maps folder is the station's alone, so a share's part images or reports
    are never beside its maps (a session-51 audit: ``db sweep-maps`` removed those in ``L1/`` and ``qc/``). The files
    a file manager leaves (``OS_METADATA_FILES``) are no one's data and not counted: a new folder the inspector had
    opened in Finder, holding a ``.DS_Store`` alone, was refused as holding files the station did not write (a
    session-52 audit). ``sweep_maps`` never removes them (not ``written_here``)."""
    for entry in sorted(root.iterdir()):
        if (entry.name == MAPS_MARKER and entry.is_file()) or _os_metadata(entry):
            continue
        if not (_SUBFOLDER.fullmatch(entry.name) and entry.is_dir()):
            return entry
        for f in sorted(entry.iterdir()):
            if not ((written_here(entry.name, f.name) and f.is_file()) or _os_metadata(f)):
                return f
    return None


def is_maps_folder(root: Path) -> bool:
    """Whether ``root`` is the project's maps folder as saved, not an empty mount point of a share not mounted (the
    session-46 review: a maps folder that is the mount point itself was written on the station's disk): its marker,
    or maps already in it (a folder saved before the marker existed, marked now). A map file is the proof, not a
    two-character folder (a session-51 audit: a share's ``L1/`` was taken for one)."""
    if (root / MAPS_MARKER).is_file():
        return True
    try:
        holds_maps = next(_maps_in(root), None) is not None
    except OSError:
        return False
    if holds_maps:
        with contextlib.suppress(OSError):
            mark_maps_folder(root)
    return holds_maps


# Map files a store remembers as found intact: about 370 bytes each, so at most about 25 MB for a standing worker,
# more than the maps of a large folder pre-labelled again.
VERIFIED_KEPT = 65536


class _Verified:
    """The map files a store found intact, by path, with the size and time they had then (least lately used dropped
    past ``limit``): not hashed again, as the worker asks of every answered image at every batch, and a map's bytes
    do not change under its name unless its size or time does. Keyed by path, with the time of the last touch
    (``touch``): a session-51 audit found a set of (path, size, time) that grew for good in a standing worker and
    never matched once a map was stored again (its touch changed the time), so every map was hashed anew."""

    def __init__(self, limit: int = VERIFIED_KEPT) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def intact(self, path: Path, ref: str) -> bool:
        """Whether the file holds the bytes its name is the SHA-256 of (maps are named by their content)."""
        from app.services.file_scan import hash_file

        key = str(path)
        try:
            st = path.stat()
            if self._seen.get(key) == (st.st_size, st.st_mtime_ns):
                self._seen.move_to_end(key)
                return True
            self._seen.pop(key, None)
            if hash_file(path) != Path(ref).name.split(".", 1)[0]:
                return False
        except OSError:
            return False
        self._remember(key, st)
        return True

    def touch(self, path: Path) -> None:
        """Mark a map in use again (``sweep_maps`` leaves maps touched lately alone), keeping it known as intact."""
        os.utime(path)
        if str(path) in self._seen:
            self._remember(str(path), path.stat())

    def _remember(self, key: str, st: os.stat_result) -> None:
        self._seen[key] = (st.st_size, st.st_mtime_ns)
        self._seen.move_to_end(key)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)


class MapsUnwritable(OSError):
    """No maps folder this worker can write to (permissions, a full disk): not the image's fault. The worker gives
    its batch back untried and says so on the job; each image was failed for good with it, its error then kept it
    out of automatic pre-labelling once the folder was fixed (a session-47 audit)."""


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str], also: tuple[Path, ...] = (), shared: bool = False) -> None:
        self.root = Path(root)
        self.also = tuple(Path(a) for a in also)  # read as well, and written when ``root`` cannot be
        self._verified = _Verified()  # map files found intact
        # ``root`` is the project's maps folder (a share): never made here. A share not mounted leaves its empty mount
        # point, and the maps went to a folder made on this station's disk, said nowhere, hidden once the share came
        # back (a session-46 probe): they go to this station's own folder, logged.
        self.shared = shared

    @property
    def roots(self) -> tuple[Path, ...]:
        return (self.root, *self.also)

    def put_bytes(self, data: bytes, suffix: str) -> str:
        ref = map_ref(hashlib.sha256(data).hexdigest(), suffix)
        try:
            self._write(self.root, ref, data, make_root=not self.shared)
        except OSError as exc:
            if not self.also:
                raise MapsUnwritable(f"the anomaly maps cannot be written to {self.root} ({exc.strerror or exc})") from exc
            # The shared folder is unreachable from here: the map is kept on this station (its
            # prediction still lands) and other stations will say it is not on theirs.
            log.warning("cannot write %s to the maps folder %s (%s); kept in %s", ref, self.root, exc, self.also[0])
            try:
                self._write(self.also[0], ref, data)
            except OSError as own:
                raise MapsUnwritable(f"the anomaly maps cannot be written to {self.root} ({exc.strerror or exc}) "
                                     f"nor to {self.also[0]} ({own.strerror or own})") from own
        return ref

    def _write(self, root: Path, ref: str, data: bytes, make_root: bool = True) -> None:
        target = root / ref
        if target.exists() and self._verified.intact(target, ref):
            try:   # in use again: ``sweep_maps`` leaves maps touched lately alone
                self._verified.touch(target)
                return  # (a damaged one is replaced: it was kept for good, the panel saying "pre-label again" in vain)
            except FileNotFoundError:
                pass   # set aside by ``sweep_maps`` since the look: written anew below, or its answer would lack it
            except OSError:
                return   # there, and a file this user may not touch (another user's, on the share)
        if not make_root and not is_maps_folder(root):
            raise FileNotFoundError(f"the maps folder {root} is not there (a share not mounted?)")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get_bytes(self, ref: str) -> bytes:
        return self._path(ref).read_bytes()

    def _path(self, ref: str) -> Path:
        """The first of the store's folders that holds ``ref`` (``MapUnavailable`` if none does);
        a reference that points outside them or a file over ``MAX_ARTIFACT_BYTES`` is refused."""
        for root in self.roots:
            p = (root / ref).resolve()
            if root.resolve() not in p.parents:
                raise ValueError(f"artifact reference outside the cache: {ref!r}")
            try:
                size = p.stat().st_size
            except OSError:
                continue
            if size > MAX_ARTIFACT_BYTES:
                raise ValueError(f"{p} is {size} bytes, more than a stored map can be ({MAX_ARTIFACT_BYTES})")
            return p
        raise MapUnavailable(ref, self.roots)

    def ensure_in_root(self, ref: str) -> bool:
        """Whether ``root`` holds a usable ``ref`` once this returns: one found only in this station's own
        folder is copied there (a project's maps folder set after its maps were made gets them from the
        worker that made them); False when no folder holds it (a worker then makes it again)."""
        try:
            path = self._path(ref)
        except (OSError, ValueError):
            return False
        if not self._verified.intact(path, ref):  # truncated or garbage: made again (a session-46 probe: counted as there for good)
            log.warning("%s does not hold the map it is named for: it is made again", path)
            return False
        if self.root.resolve() in path.parents:
            return True
        try:
            self._write(self.root, ref, path.read_bytes(), make_root=not self.shared)
        except OSError as exc:
            log.warning("cannot copy %s to the maps folder %s (%s)", ref, self.root, exc)
        return True

    def put_map(self, anomaly_map: np.ndarray) -> str:
        buf = io.BytesIO()
        np.savez_compressed(buf, map=np.asarray(anomaly_map, dtype=np.float16))
        return self.put_bytes(buf.getvalue(), MAP_SUFFIX)

    def get_map(self, ref: str) -> np.ndarray:
        """The map as float32; ``MapUnavailable`` (a ``FileNotFoundError``) when no folder of the store
        holds it (recompute it). A shared folder's file is read only if its map unpacks to at most
        ``MAX_ARTIFACT_BYTES`` (a small compressed file could unpack to far more)."""
        path = self._path(ref)
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
        if unpacked > MAX_ARTIFACT_BYTES:
            raise ValueError(f"{path} unpacks to {unpacked} bytes, more than a stored map can be")
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["map"], dtype=np.float32)



@dataclass(frozen=True)
class Swept:
    """What ``sweep_maps`` found (and removed, unless it only looked) in one maps folder."""

    root: Path
    files: int
    bytes: int


def sweep_maps(root: Path, referenced: Callable[[], AbstractSet[str]], older_than_s: float,
               remove: bool = True) -> Swept:
    """Map files under ``root`` no answer refers to and not touched for ``older_than_s`` (a worker writes a map before
    its answer lands; one stored again is touched): removed, or only counted. ``referenced`` is read before and again
    after the folder is walked, so an answer landing meanwhile keeps its map. Why: a map is never deleted with its
    answer, so a line writing every part to one file name left a map per part for good (a session-46 probe: 5 parts,
    5 maps, 1 referenced). Only files the station writes are looked at (``written_here``: maps by ``map_ref``'s name,
    and temporary files a crash left): a session-51 audit found every file older than a day in a share's ``L1/`` and
    ``qc/`` removed, part images and reports counted as "map files". A map a worker stores again after the walk looked
    at it is kept (``_remove_unless_stored_again``)."""
    now = time.time()
    if not root.is_dir():
        return Swept(root, 0, 0)
    known = referenced()
    candidates: list[tuple[str, Path, os.stat_result]] = []
    for sub in sorted(map_subfolders(root)):
        for path in sorted(sub.iterdir()):
            if not written_here(sub.name, path.name):
                continue
            ref = f"{sub.name}/{path.name}"
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file() and ref not in known and now - st.st_mtime >= older_than_s:
                candidates.append((ref, path, st))
    if candidates:
        known = referenced()
    files = size = 0
    for ref, path, st in candidates:
        if ref in known:
            continue
        if remove:
            try:
                if not _remove_unless_stored_again(path, st):
                    continue
            except OSError as exc:
                log.warning("cannot remove %s: %s", path, exc)
                continue
        files, size = files + 1, size + st.st_size
    return Swept(root, files, size)


def _remove_unless_stored_again(path: Path, walked: os.stat_result) -> bool:
    """Remove the map file ``path`` unless a worker stored it again since the sweep looked at it (``walked``); False
    when it was kept. A worker storing a map the sweep has chosen (a new answer's map, the same as an old one's)
    touches it, or writes it anew, and its answer lands after: a check of the file's time before an unlink leaves a
    moment between the two in which that map is removed although fresh, its answer then lacking it (a session-52
    audit). So the file is first renamed aside (``TEMP_PREFIX``: a later sweep removes one a crash leaves), which is
    atomic: a worker storing the map from then on finds it gone and writes it anew (``ArtifactStore._write``); the
    file set aside is removed only if its inode and time are still those the sweep saw, else put back."""
    aside = path.with_name(f"{TEMP_PREFIX}swept_{os.urandom(6).hex()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return False   # gone meanwhile (another sweep)
    try:
        now = aside.stat()
        if (now.st_ino, now.st_mtime_ns) != (walked.st_ino, walked.st_mtime_ns):
            os.replace(aside, path)   # stored again meanwhile: in use (a copy written since holds the same bytes)
            return False
        aside.unlink()
    except OSError:
        with contextlib.suppress(OSError):
            os.replace(aside, path)   # as it was: nothing is left under a name no reader looks for
        raise
    return True
