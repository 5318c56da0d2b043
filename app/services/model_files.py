"""A model version's folder at whichever station or worker needs it (ADR 0062).

A version row used to be only a path on the disk of the station that registered it: a retraining at station A
wrote ``A:~/…/models/classifier-retrained-…`` and every other station's worker failed the images it claimed with
"model cannot be loaded"; a bundled model was registered with the installing station's checkout path. Now the
files inference reads are kept in the database (``model_files``) when a version is registered, or the first time
a station that sees its folder loads it (versions registered before this), and a station that does not see the
folder writes them into its own cache, checked against their hashes. A bundled version is this install's copy.

Only JSON, safetensors and text are kept (never a pickle: training states stay where they were made), within
bounds on count, depth and size that are checked before anything is read or allocated.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from app.paths import cache_dir
from inference.bundled import bundled_model_dir

if TYPE_CHECKING:
    from collections.abc import Iterable

    from database.dto import ModelVersionInfo
    from database.engine import Database

log = logging.getLogger(__name__)

KEPT_SUFFIXES = (".json", ".safetensors", ".txt", ".md")
MAX_FILES = 256
MAX_DEPTH = 4                          # sub-folders below the version's folder (a bundle's members, verifier)
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
# The files inference reads by name, in a version's folder and in each part's (a card's ``parts``): a link is followed
# for these only (inference.checkpoints' CONFIG, CARD and WEIGHTS, inference.domain's DOMAIN_JSON and DOMAIN_WEIGHTS;
# written out here so that the GUI's Add imports no torch).
LINKED_NAMES = frozenset({"config.json", "card.json", "model.safetensors", "domain.json", "domain.safetensors"})


class ModelFilesError(RuntimeError):
    """A version's folder that cannot be kept or found here, with the reason."""


def folder_files(directory: Path) -> list[tuple[str, bytes]]:
    """(posix name, bytes) of ``folder_entries``."""
    return [(name, path.read_bytes()) for name, path in folder_entries(directory)]


TRAINER_STATE = "training"   # a trainer's resumable state and snapshots inside its --out (classifier_train._state_dir)


def folder_entries(directory: Path) -> list[tuple[str, Path]]:
    """(posix name, path) of the files inference reads below ``directory`` (a link to one of ``LINKED_NAMES`` as the
    file it names); hidden entries, other links and other kinds of files are left out; too many or too large files
    raise ``ModelFilesError``. Nothing is read but a linked file's header: Add checks a folder can be kept with this,
    before keeping it reads the bytes once."""
    chosen: list[tuple[str, Path]] = []
    total = 0
    for root, dirs, names in os.walk(directory, followlinks=False):
        rel_root = Path(root).relative_to(directory)
        # (the trainer's own state folder, ``training/``, is not read by inference: its snapshots were copied into the
        # shared database, some six more copies of the weights to every station; a session-46 probe)
        dirs[:] = [d for d in dirs if not d.startswith(".") and len(rel_root.parts) < MAX_DEPTH
                   and not (not rel_root.parts and d == TRAINER_STATE)]
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in KEPT_SUFFIXES:
                continue
            if not path.is_file():
                continue  # a pipe, a device, or a link to one, to a folder or to nothing: never read
            # A link to a weights file is read (a git-annex, DVC or Hugging Face cache folder keeps its weights so):
            # left out, the database's copy lacked the weights the folder loads (a session-43 probe). Any other link
            # is not: a session-44 probe's notes.txt -> ~/.ssh/id_rsa was copied into the shared database, and so
            # to every station's cache, and a session-51 audit's extra.json -> a secret JSON object too: only the
            # files inference reads by name are followed.
            if path.is_symlink() and not _model_file(path):
                continue
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ModelFilesError(f"{path} is {size} bytes, more than a model file may be ({MAX_FILE_BYTES})")
            total += size
            chosen.append(((rel_root / name).as_posix(), path))
            if len(chosen) > MAX_FILES or total > MAX_TOTAL_BYTES:
                raise ModelFilesError(f"{directory} holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes "
                                      "of model files")
    if not any(name == "config.json" for name, _ in chosen):
        raise ModelFilesError(f"{directory}: not a model directory (no config.json)")
    return chosen


BUNDLE_FINGERPRINT = "bundle_fingerprint"   # in a bundled version's config: its files' fingerprint (ADR 0079)
_FINGERPRINTS: dict[str, tuple[tuple[tuple[str, int, int], ...], str]] = {}


def folder_fingerprint(directory: Path) -> str:
    """A SHA-256 over the names and bytes of the files inference reads in ``directory`` (``folder_entries``): what
    tells a bundled model replaced by an update of the install from the one registered. Kept per process while no
    file's size or modification time moves, so asking at each pre-label run reads only the files' stats."""
    entries = folder_entries(directory)
    stats = tuple((name, st.st_size, st.st_mtime_ns) for name, st in ((n, p.stat()) for n, p in entries))
    known = _FINGERPRINTS.get(str(directory))
    if known is not None and known[0] == stats:
        return known[1]
    digest = hashlib.sha256()
    for name, path in entries:
        with open(path, "rb") as f:
            digest.update(f"{name}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode("utf-8", "surrogateescape"))
    _FINGERPRINTS[str(directory)] = (stats, digest.hexdigest())
    return digest.hexdigest()


def held_by_another(versions: "Iterable[ModelVersionInfo]", version: "ModelVersionInfo", fingerprint: str) -> bool:
    """Whether another version of ``version``'s family was registered with files of ``fingerprint``: an install
    holding them is older than the one that registered ``version`` (ADR 0079)."""
    return any(v.config.get(BUNDLE_FINGERPRINT) == fingerprint for v in versions
               if v.family == version.family and v.id != version.id)


def registered_card_is_here(version: "ModelVersionInfo", local: Path) -> bool:
    """Whether a bundled version registered before fingerprints were kept is the model in ``local`` (this install's
    copy): its stored card is the one on disk, or it stored none (before 2026-11-23). Such a row has no fingerprint to
    compare, so its card is what tells a model an update replaced (ADR 0079); ``refresh_bundled`` adopts the files of
    a row this holds for and retires the others, and ``_on_disk_here`` loads no other files for it."""
    from app.services.prelabel import read_card
    return not version.card or version.card == json.loads(json.dumps(read_card(local)))


def _model_file(path: Path) -> bool:
    """A file a link is followed for: one inference reads, by its name (``LINKED_NAMES``) and by what it holds (a
    safetensors header, a JSON object). A Hugging Face or DVC cache folder links its config, card and weights so (the
    session-43 probe); a text or a file that is not what its name says is never followed (notes.txt -> ~/.ssh/id_rsa,
    session 44), nor a JSON object inference never reads (extra.json -> a secret, a session-51 audit)."""
    from inference.model_limits import parse_json, read_safetensors_header, regular_file_size
    if path.name not in LINKED_NAMES:
        return False
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            read_safetensors_header(path)
            return True
        if suffix == ".json" and regular_file_size(path) <= MAX_LINKED_JSON_BYTES:
            return isinstance(parse_json(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):  # ModelLimitError and UnicodeDecodeError are ValueErrors
        return False
    return False


MAX_LINKED_JSON_BYTES = 16 * 1024 * 1024


def keep_in_database(db: "Database", version: "ModelVersionInfo", directory: Path | None = None) -> int:
    """Copy the version's folder into the database unless it is bundled or already kept; returns how many
    files were stored."""
    if version.bundled or db.model_versions.file_list(version.id):
        return 0
    files = folder_files(Path(directory or version.checkpoint_path))
    db.model_versions.put_files(version.id, files)
    return len(files)


def local_model_dir(db: "Database", version: "ModelVersionInfo") -> Path:
    """A folder on this station holding the version's model: its registered folder where this station sees
    it, this install's copy of a bundled model, else the database's copy written into this station's cache.
    ``ModelFilesError`` says why when there is none."""
    local = _on_disk_here(db, version)
    if local is not None:
        if local == Path(version.checkpoint_path) and not version.bundled:
            try:  # a version registered before its files were kept: the first station that sees it shares it
                keep_in_database(db, version, local)
            except Exception as exc:  # noqa: BLE001 - sharing is a courtesy: the model loads here either way
                log.warning("cannot keep %s model %r in the database: %s", version.family, version.name, exc)
        return local
    return _written_here(db, version, _listed(db, version))


def _differs(folder: Path, listed: list[tuple[str, str, int]]) -> bool:
    """Whether a kept file of the version is gone from ``folder`` or holds other bytes now. A file is hashed again only
    when its size or time changed (``_HASHED``): every load and every routing proposal asks, and a weights file may
    be hundreds of megabytes."""
    from app.services.file_scan import hash_file
    for name, sha, size in listed:
        path = folder / name
        try:
            st = path.stat()
            if not path.is_file() or st.st_size != size:
                return True
            key = (str(path), st.st_size, st.st_mtime_ns)
            digest = _HASHED.get(key)
            if digest is None:
                if len(_HASHED) >= HASHED_KEPT:
                    _HASHED.clear()
                digest = _HASHED[key] = hash_file(path)
            if digest != sha:
                return True
        except OSError:
            return True
    return False


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> its SHA-256, for ``_differs``
HASHED_KEPT = 1024


def model_files_here(db: "Database", version: "ModelVersionInfo", names: tuple[str, ...]) -> Path:
    """A folder on this station holding the version's files ``names`` (those it has): ``local_model_dir``'s folder
    where it needs no fetching, else only those files from the database, into this station's cache. For readers
    of a version's description (its config and domain statistics, ``app.services.version_fit``), which must not
    pull every version's weights onto a station to read a few kilobytes. ``ModelFilesError`` says why not."""
    local = _on_disk_here(db, version)
    if local is not None:
        return local
    listed = _listed(db, version)
    whole = _cache_target(version, listed)
    if (whole / "config.json").is_file():
        return whole
    return _written_here(db, version, [f for f in listed if f[0] in names or f[0] == "config.json"])


def _on_disk_here(db: "Database", version: "ModelVersionInfo") -> Path | None:
    """The version's folder where this station has it without the database: its registered folder, else this
    install's copy of a bundled model. Not a registered folder whose files differ from those kept with the version:
    one version, one model. A session-44 probe overwrote a folder's weights and card after Add; this station's worker
    answered with the new ones ("ok"/"defect") while other stations ran the kept copy. The database's copy is read
    then, by every reader (the worker's models and the routing proposal's domain descriptions alike)."""
    replaced = version.config.get("replaced")
    if isinstance(replaced, dict):  # a bundled model the install's update replaced: its files are gone
        raise ModelFilesError(f"the {version.family} model {version.name!r} was replaced by an update of the station "
                              f"(its files are gone; {replaced.get('by_update_of')!r} holds the new ones): it can no "
                              "longer run; pre-label again to run the new one")
    path = Path(version.checkpoint_path)
    if version.bundled:   # this install's copy first: an older install left on disk at the registered path is not it
        local = bundled_copy(version) or (path if (path / "config.json").is_file() else None)
        if local is None:
            return None
        stored = version.config.get(BUNDLE_FINGERPRINT)
        # A row registered before fingerprints were kept is told by its card: a job an older station queued, run by
        # the updated worker, stored the new bundle's answers under the old row, which had no fingerprint to check,
        # and the next listing retired the row with those answers (a session-52 audit).
        if stored is None and not registered_card_is_here(version, local):
            older = False
        elif stored and (here := folder_fingerprint(local)) != stored:
            older = held_by_another(db.model_versions.list(version.family), version, here)
        else:
            return local
        raise ModelFilesError(
            f"this install's copy of the bundled {version.family} model {version.name!r} holds other files than "
            "the ones registered with it: " + (
                "this station is older than the one that registered them; update this station" if older else
                "the station was updated; pre-label again, which registers the update as a new version"))
    if not (path / "config.json").is_file():
        return None
    listed = [] if version.bundled else db.model_versions.file_list(version.id)
    if listed and _differs(path, listed):
        log.warning("%s model %r: its folder %s no longer holds the files registered with it; the database's copy "
                    "is read", version.family, version.name, path)
        return None
    return path


def _listed(db: "Database", version: "ModelVersionInfo") -> list[tuple[str, str, int]]:
    listed = db.model_versions.file_list(version.id)
    if not listed:
        raise ModelFilesError(
            f"the {version.family} model {version.name!r} is at {version.checkpoint_path}, which this station does "
            "not see, and the database holds no copy of its files: either it was registered before they were kept "
            "(open the station that made it once, or run a job there, and every station gets them) or its folder "
            "could not be kept (that station's log says why: add its model files alone)")
    return listed


def _cache_target(version: "ModelVersionInfo", listed: list[tuple[str, str, int]]) -> Path:
    """Where this station keeps the database's copy of these files (named by their hashes)."""
    digest = hashlib.sha256("\n".join(f"{n} {h}" for n, h, _ in listed).encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{version.id}-{digest}"


def bundled_copy(version: "ModelVersionInfo") -> Path | None:
    """This install's copy of a bundled version (registered, maybe, by an install at another path); None for a
    version that is not bundled or a bundled model this install lacks."""
    if not version.bundled:
        return None
    with contextlib.suppress(KeyError):
        local = bundled_model_dir(version.family, Path(version.checkpoint_path).name)
        if (local / "config.json").is_file():
            return local
    return None


def _written_here(db: "Database", version: "ModelVersionInfo", listed: list[tuple[str, str, int]]) -> Path:
    """The database's copy in this station's cache (``cache/models/<id>-<digest>``), written once, checked."""
    target = _cache_target(version, listed)
    root = target.parent
    if (target / "config.json").is_file():
        return target
    total = 0
    for name, _sha, size in listed:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or len(pure.parts) > MAX_DEPTH + 1:
            raise ModelFilesError(f"the database's copy of {version.name!r} names a file outside its folder: {name!r}")
        total += size
        if size > MAX_FILE_BYTES or total > MAX_TOTAL_BYTES or len(listed) > MAX_FILES:
            raise ModelFilesError(f"the database's copy of {version.name!r} is larger than a model may be")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        for name, sha, size in listed:
            data = db.model_versions.file_data(version.id, name)
            if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                raise ModelFilesError(f"the database's copy of {version.name!r} has a damaged file {name!r}")
            out = work / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        try:
            os.replace(work, target)
        except OSError:
            if not (target / "config.json").is_file():  # another process wrote it meanwhile: theirs is the same
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s model %r from the database into %s", version.family, version.name, target)
    return target
