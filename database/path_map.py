"""Folder paths as this machine reaches them (ADR 0065).

A folder is stored with the path of the station that indexed it (``/mnt/parts/line3``); another machine may reach
the same share elsewhere (``Z:\\parts\\line3``, ``/Volumes/parts/line3``). Without a mapping that machine's worker
could not read the images (ADR 0064: it leaves them), and opening the share there registered a second folder
whose labels were not the first one's. ``INSPECTION_PATH_MAP`` says, per machine, which stored prefix is which
local one: ``STORED=LOCAL`` pairs separated by ``;`` or new lines, e.g. ``/mnt/parts=Z:\\parts``. The database
layer applies it where paths cross: every folder root it hands out is local, every root it is given is stored
as the canonical one; nothing else in the station knows there is a mapping.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "INSPECTION_PATH_MAP"
MAX_PAIRS = 64


class PathMapError(ValueError):
    """A mapping that cannot be used, with the reason."""


def _norm(prefix: str) -> str:
    prefix = prefix.strip()
    return prefix if prefix in ("/", "\\") or prefix.endswith(":\\") else prefix.rstrip("/\\")


def _under(path: str, prefix: str) -> str | None:
    """The rest of ``path`` after ``prefix`` (on a separator boundary), or None when it is not under it."""
    if path == prefix:
        return ""
    if path.startswith(prefix) and (prefix.endswith(("/", "\\")) or path[len(prefix):len(prefix) + 1] in ("/", "\\")):
        return path[len(prefix):]
    return None


def _styled(rest: str, prefix: str) -> str:
    """``rest`` with the separators of the side it is joined to (a POSIX root gets '/', a drive '\\')."""
    if "\\" in prefix and "/" not in prefix:
        return rest.replace("/", "\\")
    if prefix.startswith("/"):
        return rest.replace("\\", "/")
    return rest


@dataclass(frozen=True)
class PathMap:
    pairs: tuple[tuple[str, str], ...] = ()  # (stored prefix, this machine's prefix)

    @staticmethod
    def parse(text: str) -> "PathMap":
        pairs = []
        for part in text.replace("\n", ";").split(";"):
            if not part.strip():
                continue
            stored, sep, local = part.partition("=")
            if not sep or not stored.strip() or not local.strip():
                raise PathMapError(f"{part.strip()!r} is not STORED=LOCAL (e.g. /mnt/parts=Z:\\parts)")
            pairs.append((_norm(stored), _norm(local)))
        if len(pairs) > MAX_PAIRS:
            raise PathMapError(f"more than {MAX_PAIRS} pairs")
        return PathMap(tuple(pairs))

    def local(self, stored: str) -> str:
        """A stored root as this machine reaches it (the longest stored prefix wins; unmapped: as stored)."""
        return _translate(stored, self.pairs)

    def stored(self, local: str) -> str:
        """This machine's path of a root as it is stored (the inverse of ``local``)."""
        return _translate(local, tuple((loc, s) for s, loc in self.pairs))


def _translate(path: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """``path`` with the longest matching ``from`` prefix of ``pairs`` (from, to) replaced by its ``to``."""
    for src, dst in sorted(pairs, key=lambda p: -len(p[0])):
        rest = _under(path, src)
        if rest is not None:
            # one separator between the two: a side that is a drive or a root ("Z:\\", "/") ends in one, the rest
            # after a prefix ending in one starts without (a session-46 probe: "Z:\\=/mnt/share" gave
            # "/mnt/shareline3", and the share was registered again as a folder without its labels)
            rest = _styled(rest, dst).lstrip("/\\")
            if not rest:
                return dst
            sep = "\\" if "\\" in dst and "/" not in dst else "/"
            return dst + ("" if dst.endswith(("/", "\\")) else sep) + rest
    return path


_cache: tuple[str, PathMap] | None = None


def current() -> PathMap:
    """This process's mapping, from ``INSPECTION_PATH_MAP`` (read again when it changes; a broken value maps
    nothing and raises once where it is first used, so the station says why)."""
    global _cache
    text = os.environ.get(ENV, "")
    if _cache is None or _cache[0] != text:
        try:
            _cache = (text, PathMap.parse(text) if text.strip() else PathMap())
        except PathMapError as exc:  # named where it came from: the environment, not a dialog
            raise PathMapError(f"{ENV}: {exc}") from None
    return _cache[1]


def local(stored: str) -> str:
    return current().local(stored)


def stored(local_path: str) -> str:
    return current().stored(local_path)
