"""Which indexed image a dataset's record is about: by the path the dataset names, else by content.

Datasets name images in many ways: the station's own folder-relative path (labelme, CSV, a tree
copied as is), a path with extra leading folders (an MVTec category, a split part), or this
station's export file names (``lot3__part_17.png``). Each record's path is tried from the longest
suffix to the shortest, against both the relative paths and the export names; a name shared by
several images never matches. Files renamed beyond recognition are found by their SHA-256, the
hash the indexer already stored, computed only for records the paths did not place; last, a record
whose path is the end of exactly one indexed path (a class tree whose copy in the station sits below
other folders, with identical files the content cannot tell apart).

A match on a *shortened* path (leading folders dropped) or on a path end is only taken where it does not
contradict the content: when the dataset holds its copy of the image and the station stored a hash, the two
must agree. A match on the whole path as the dataset names it gives way to another image whose bytes are the
dataset's copy (found by a session-43 probe: a class tree names ``crack/part_17.png``, its path ``part_17.png``
once the class folder is read; the station holds ``part_17.png`` and ``lot3/part_17.png``, the copy is the second's,
and the class landed on the first); where no image holds those bytes (a re-encoded copy), the path stands. Seen importing an MVTec copy into a station holding some of its images: ``test/good/001.png`` and
``ground_truth/broken_small/010_mask.png`` landed on the station's ``good/001.png`` and ``good/010.png`` (the
training images of those names), and the whole import was refused as "labelled twice".
"""
from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from app.services.export_items import ExportItem, flat_name
from app.services.file_scan import hash_file
from app.services.import_records import ImportRecord, LabelImportError, regular_size
from database.dto import FolderInfo, ImageInfo
from database.images import join_path
from inference.imageio import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Target:
    """An indexed image a record landed on."""

    image: ImageInfo
    folder: FolderInfo
    how: str  # 'path', 'export name', 'stem', 'content' or 'path end'
    other_bytes: bool = False  # matched by its whole path although the dataset's image holds other bytes

    @property
    def display(self) -> str:
        return f"{self.folder.name}/{self.image.rel_path}"

    @property
    def path(self) -> Path:
        return Path(self.folder.root_path) / self.image.rel_path


def _nfc(key: str) -> str:
    """One Unicode spelling of a path: a dataset written on macOS names ``ü`` decomposed (NFD), and such a record
    matched no indexed image that looks the same (a session-47 audit)."""
    return unicodedata.normalize("NFC", key)


def _stem_only(ref: str) -> bool:
    """Whether a record names its image without the extension (a mask folder's 'frame.001' names frame.001.png: the
    '.001' is no image file's extension; it was taken for one and matched nothing, the review of session 47)."""
    return PurePosixPath(ref).suffix.lower() not in IMAGE_SUFFIXES


def suffixes(ref: str) -> list[str]:
    parts = PurePosixPath(ref).parts
    return ["/".join(parts[i:]) for i in range(len(parts))]


class ImageMatcher:
    """``chosen``: the images are those of one folder the person chose (``--folder``), where a record naming another
    folder is matched all the same (a moved copy's folder of another name)."""

    def __init__(self, images: Iterable[ImageInfo], folders: Iterable[FolderInfo], chosen: bool = False) -> None:
        self.folders = {f.id: f for f in folders}
        self.chosen = chosen
        self.names: set[str] = set()  # the names of the folders holding the images
        # folder name -> records left unmatched that name it, where no indexed folder is so named (said in the preview):
        # those whose image's bytes were known and found nowhere, and those without any (no copy, no sha256: a
        # summary.csv an earlier version wrote), which could never match there and are said apart
        self.absent: Counter[str] = Counter()
        self.absent_unstated: Counter[str] = Counter()
        self.by_path: dict[str, list[ImageInfo]] = {}
        self.by_name: dict[str, list[ImageInfo]] = {}
        self.by_stem: dict[str, list[ImageInfo]] = {}
        self.by_hash: dict[str, list[ImageInfo]] = {}
        self.by_tail: dict[str, list[ImageInfo]] = {}
        self.by_tail_stem: dict[str, list[ImageInfo]] = {}  # the same without the extension: masks alone name a stem
        self.by_full: dict[str, list[ImageInfo]] = {}
        for img in images:
            folder = self.folders[img.folder_id]
            self.names.add(folder.name)
            self.by_full.setdefault(_nfc(str(PurePosixPath(join_path(folder.root_path, img.rel_path)))), []).append(img)
            self.by_path.setdefault(_nfc(img.rel_path), []).append(img)
            self.by_path.setdefault(_nfc(f"{folder.name}/{img.rel_path}"), []).append(img)
            self.by_stem.setdefault(_nfc(str(PurePosixPath(img.rel_path).with_suffix(""))), []).append(img)
            probe = ExportItem(source=Path(), rel_path=img.rel_path, folder=folder.name, review_state="")
            # an export gives colliding flat names a hash of the file's path (``unique_file_names``): those names
            # matched nothing, so both images of a collision came back unmatched (a session-43 probe)
            digest = hashlib.sha256(str(Path(join_path(folder.root_path, img.rel_path))).encode("utf-8")).hexdigest()[:8]
            for plain in {flat_name(probe, False), flat_name(probe, True)}:  # exports of several folders prefix it
                tagged = f"{PurePosixPath(plain).stem}-{digest}{PurePosixPath(plain).suffix}"
                for name in (plain, tagged):
                    self.by_name.setdefault(_nfc(name), []).append(img)
                    self.by_stem.setdefault(_nfc(str(PurePosixPath(name).with_suffix(""))), []).append(img)
            if img.content_hash:
                self.by_hash.setdefault(img.content_hash, []).append(img)
            for tail in suffixes(img.rel_path)[1:]:   # 'patches/p_101.png', 'p_101.png' of 'steel/patches/p_101.png'
                self.by_tail.setdefault(_nfc(tail), []).append(img)
                self.by_tail_stem.setdefault(_nfc(str(PurePosixPath(tail).with_suffix(""))), []).append(img)

    def _one(self, table: dict[str, list[ImageInfo]], key: str, within: str | None) -> ImageInfo | None:
        """The one image listed under ``key`` (in folders named ``within``, where given), else None."""
        found = {img.id: img for img in table.get(_nfc(key), ())  # a path and an export name may both list one image
                 if within is None or self.folders[img.folder_id].name == within}
        return next(iter(found.values())) if len(found) == 1 else None

    def match(self, rec: ImportRecord) -> Target | None:
        """A record naming its station folder (the station's CSV and COCO ``folder/rel_path``) is that folder's: it is
        matched only inside a folder of that name. Where no indexed folder has the name (a moved copy's folder renamed,
        or another line's table), only on an image whose bytes it holds or states, unless the person chose the folder.
        Line B's summary.csv put its class on line A's ``x.png`` (a table holds no copy to compare): a session-52
        audit."""
        named = rec.origin.partition("/")[0] if rec.origin else None
        lost = named is not None and named not in self.names and not self.chosen
        within = named if named in self.names and not self.chosen else None
        digest = _Digest(rec.image_file, rec.content_hash)
        found = self._match(rec, digest, within, lost)
        if found is None and lost and named is not None:
            (self.absent if digest.value is not None else self.absent_unstated)[named] += 1
        return found

    def _match(self, rec: ImportRecord, digest: _Digest, within: str | None, lost: bool) -> Target | None:
        fits = digest.confirms if lost else digest.agrees
        # (how, table, key, whole path: taken without asking the content)
        candidates: list[tuple[str, dict[str, list[ImageInfo]], str, bool]] = []
        if rec.source_path:
            candidates.append(("path", self.by_full, str(PurePosixPath(rec.source_path)), True))
        if rec.origin:
            candidates.append(("path", self.by_path, rec.origin, True))
        for i, key in enumerate(suffixes(rec.image_ref)):
            candidates += [("path", self.by_path, key, i == 0), ("export name", self.by_name, key, i == 0)]
        stem_only = _stem_only(rec.image_ref)
        if stem_only:
            candidates += [("stem", self.by_stem, key, i == 0) for i, key in enumerate(suffixes(rec.image_ref))]
        for how, table, key, whole in candidates:
            img = self._one(table, key, within)
            if img is None:
                continue
            if fits(img):
                return Target(img, self.folders[img.folder_id], how)
            if whole and not lost:  # the path as the dataset names it, other bytes: another image holding them wins
                other = self._one(self.by_hash, digest.value, within) if digest.value is not None else None
                if other is not None:
                    return Target(other, self.folders[other.folder_id], "content")
                # a re-encoded copy: the path stands, and the preview says how many (another part under the same
                # name would land here too: a session-46 probe imported 18 labels onto other images, unsaid)
                return Target(img, self.folders[img.folder_id], how, other_bytes=digest.value is not None)
        if digest.value is not None:
            img = self._one(self.by_hash, digest.value, within)
            if img is not None:
                return Target(img, self.folders[img.folder_id], "content")
        # Last, the end of an indexed path: a class tree ('patches/p_101.png') whose station copy sits deeper
        # ('steel/patches/p_101.png'), where the content is no help (two identical files: NEU holds such pairs).
        # A folder of masks alone names stems ('Misc_1'): the station's 'infrared/Misc_1.png' matched nothing (a session-47
        # audit), the stem table holding whole relative paths only.
        tails = self.by_tail_stem if stem_only else self.by_tail
        for key in suffixes(rec.image_ref):
            img = self._one(tails, key, within)
            if img is not None and fits(img):
                return Target(img, self.folders[img.folder_id], "path end")
        return None


class _Digest:
    """The SHA-256 of a record's image: the one its dataset states, else its copy's, read once and only when asked
    (None: neither, or unreadable)."""

    def __init__(self, file: Path | None, stated: str | None = None) -> None:
        self.file = file
        self._value: str | None = stated
        self._read = file is None or stated is not None

    @property
    def value(self) -> str | None:
        if not self._read:
            self._read = True
            try:  # a pipe is never opened: hashing one waited for a writer for good (a session-49 audit)
                if self.file is not None:
                    regular_size(self.file)
                    self._value = hash_file(self.file)
            except (OSError, LabelImportError):
                self._value = None
        return self._value

    def agrees(self, img: ImageInfo) -> bool:
        """False only when both contents are known and differ."""
        return not img.content_hash or self.value is None or self.value == img.content_hash

    def confirms(self, img: ImageInfo) -> bool:
        """True only when both contents are known and the same."""
        return bool(img.content_hash) and self.value == img.content_hash
