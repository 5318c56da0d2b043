"""Which capture group an image belongs to, and cross-validation folds that never split a group.

Why: images of one capture session (or lot, or camera) share lighting and texture, and a fold that
splits a session lets every method look better than it will on the next session. This is the one
home of that rule: the retrain command's head selection (``classifier_head``, via
``simple_answers``) and ``train classifier --cv-folds`` both use it. Plain Python at import time
(numpy and scikit-learn are imported when folds are made), so command-line parsers can list the
rules instantly.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import numpy as np

FOLDS = 5
GROUP_RULES = ("auto", "folder", "prefix", "none")
EXPORT_SEPARATOR = "__"  # the export flattens sub-folders into file names with this (export_items.flat_name)
_PREFIX = re.compile(r"^([^_\-\s.]+)[_\-\s]")


def cv_said(folds: int, groups: int, rule: str) -> str:
    """A cross-validation's folds in words, as a retraining's figures name them. Under the rule ``none`` every image
    is its own group, and "group cross-validation … by none" read as a session-grouped check that did not happen (a
    session-52 audit): it is said image by image."""
    if rule == "none":
        return f"cross-validation ({folds} folds, image by image: no capture groups found)"
    return f"group cross-validation ({folds} folds over {groups} groups by {rule})"


def image_group(file_name: str, class_name: str, rule: str) -> str:
    """The capture group of one exported image under ``rule``.

    ``folder``: the sub-folder the image came from (the export's ``a__b__name.png`` → ``a/b``),
    leaving out a folder named like the class (class-folder trees would make class = group);
    ``prefix``: the file name up to its first ``_``, ``-`` or space (magnetic tile's
    ``exp1_num_10334.png`` → ``exp1``); ``none``: every image is its own group.
    """
    parts = PurePosixPath(file_name).name.split(EXPORT_SEPARATOR)
    stem = PurePosixPath(parts[-1]).stem
    if rule == "folder":
        folders = [p for p in parts[:-1] if p != class_name]
        return "/".join(folders) if folders else f"image:{file_name}"
    if rule == "prefix":
        match = _PREFIX.match(stem)
        return match.group(1) if match else f"image:{file_name}"
    if rule == "none":
        return f"image:{file_name}"
    raise ValueError(f"unknown group rule {rule!r}; choose from {', '.join(GROUP_RULES)}")


def class_pure(groups: Sequence[str], class_names: Sequence[str]) -> bool:
    """Every group holds one class only (and there are several classes): then the "groups" are the
    classes (NEU's ``crazing_12.png`` prefix is its class), and a group fold holds out whole
    classes, which no method can score on."""
    seen: dict[str, str] = {}
    for g, c in zip(groups, class_names):
        if seen.setdefault(g, c) != c:
            return False
    return len(set(class_names)) > 1


def _usable(groups: Sequence[str], class_names: Sequence[str], folds: int) -> bool:
    """Enough groups for the folds, at least one group holding more than one image, and groups
    that are not simply the classes."""
    distinct = set(groups)
    return len(distinct) >= folds and len(distinct) < len(groups) and not class_pure(groups, class_names)


def assign_groups(file_names: Sequence[str], class_names: Sequence[str], rule: str = "auto",
                  folds: int = FOLDS) -> tuple[list[str], str]:
    """Groups for every image and the rule that made them; ``auto`` tries folder, then prefix, then
    none, skipping a rule whose groups are too few or are just the classes."""
    for candidate in (("folder", "prefix") if rule == "auto" else (rule,)):
        groups = [image_group(f, c, candidate) for f, c in zip(file_names, class_names)]
        if rule != "auto" or _usable(groups, class_names, folds):
            return groups, candidate
    return [image_group(f, c, "none") for f, c in zip(file_names, class_names)], "none"


def group_folds(labels: np.ndarray, groups: Sequence[str], folds: int = FOLDS,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs, stratified by class as far as whole groups allow; no group is split.

    Fewer groups than ``folds`` give one fold per group (at least 2 groups are needed); when even the largest
    class has fewer images than ``folds``, there are as many folds as it has images (four labels per class
    cross-validate in four folds, where sklearn would refuse five).
    """
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    largest = int(np.unique(np.asarray(labels), return_counts=True)[1].max()) if len(labels) else 0
    k = min(folds, int(codes.max()) + 1 if len(codes) else 0, largest)
    if k < 2:
        raise ValueError("cross-validation needs at least 2 groups of images")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only 2 members": expected from few labels
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, codes)]


_SERIES = re.compile(r"^[^\d]*(\d+)\D+(\d+)$")  # <letters><session><sep...><serial>: exp3_num_3710


def series_groups(file_names: Sequence[str], gap: int = 300) -> list[str]:
    """One group per physical part photographed once in each of several sessions (for reports only).

    Magnetic tile photographs each tile under up to six lightings (``exp1``..``exp6``) with
    consecutive capture serials (``exp2_num_3696``, ``exp3_num_3710``, ...): sorted by serial, a new
    part starts where the session number stops rising or the serial jumps by more than ``gap``.
    The ``prefix`` rule keeps a session together but puts the same tile in several folds (and the
    public val split shares tiles with train), so figures under it mean "a known part under a new
    lighting"; figures under these groups mean "a new part". A name without the pattern is its own group.
    """
    parsed = []
    for i, name in enumerate(file_names):
        match = _SERIES.match(PurePosixPath(name).stem)
        parsed.append((int(match.group(2)), int(match.group(1)), i) if match else (-1, -1, i))
    out = [""] * len(file_names)
    part, prev = -1, None
    for serial, session, i in sorted(parsed):
        if serial < 0:
            out[i] = f"image:{file_names[i]}"
            continue
        if prev is None or session <= prev[1] or serial - prev[0] > gap:
            part += 1
        out[i] = f"part{part}"
        prev = (serial, session)
    return out


def group_key(path: Path, root: Path) -> str:
    """The name ``simple_answers.image_group`` reads: the path under the data root joined by the
    export's separator, so the ``folder`` rule sees sub-folders and ``prefix`` the file name."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return EXPORT_SEPARATOR.join(parts)


PATH_GROUPINGS = ("auto", "folder", "prefix", "scene", "none")  # or regex:PATTERN (path_groups)


def path_groups(paths: Sequence[Path], root: str | Path | None = None,
                rule: str = "auto") -> tuple[list[str] | None, str]:
    """Capture groups of image files for group-aware folds (out-of-domain thresholds,
    ``inference.domain_fit``), and the rule that made them; None when the rule gives no usable groups.

    ``folder`` / ``prefix`` as ``image_group``, with the folder under ``root`` (default: the files'
    common folder) an image sits in taken as its class, so class-named prefixes (NEU's
    ``crazing_12.png``) are not taken for sessions; magnetic tile's ``exp1_num_10334.png`` gives
    ``exp1``. ``scene``: frames whose backgrounds look alike (``scene_groups`` on the pixels; SIRST's
    ``Misc_N`` frames, a video's near-duplicate frames). ``regex:PATTERN``: ``name_group_function``.
    ``auto``: folder, then prefix, then scene (the first that gives usable groups). The trainers'
    ``--group-by`` values are all rules here, so a model's domain folds follow its training CV's."""
    import os

    check_path_rule(rule)
    if not paths or rule == "none":
        return None, "none"
    files = [Path(p) for p in paths]
    if rule.startswith("regex:"):
        group = name_group_function(rule)
        return _usable_or_none([group(p.name) for p in files], rule)
    if rule == "scene":
        return _usable_or_none(file_scene_groups(files), "scene")
    base = Path(root) if root is not None else Path(os.path.commonpath([str(p.parent) for p in files]))
    names = [group_key(p, base) for p in files]
    classes = [p.parent.relative_to(base).as_posix() if p.parent != base and p.is_relative_to(base) else "" for p in files]
    groups, made_by = assign_groups(names, classes, rule)
    if made_by != "none":
        return _usable_or_none(groups, made_by)
    return _usable_or_none(file_scene_groups(files), "scene") if rule == "auto" else (None, "none")


def check_path_rule(rule: str) -> None:
    """ValueError when ``path_groups`` does not know ``rule`` or its ``regex:`` does not compile: checked before the
    work that needs the groups, not after it."""
    if rule.startswith("regex:"):
        name_group_function(rule)
    elif rule not in PATH_GROUPINGS:
        raise ValueError(f"unknown grouping {rule!r}; choose from {', '.join(PATH_GROUPINGS)} or regex:PATTERN")


def _usable_or_none(groups: list[str], rule: str) -> tuple[list[str] | None, str]:
    """``groups`` when some group holds more than one image (all singletons: plain random folds)."""
    return (groups, rule) if len(set(groups)) < len(groups) and len(set(groups)) >= 2 else (None, "none")


def file_scene_groups(paths: Sequence[Path]) -> list[str]:
    """``scene_groups`` of image files (their grey pixels); an unreadable file is its own group."""
    import numpy as np

    from inference.imageio import read_image

    rows, ok = [], []
    for p in paths:
        try:
            rows.append(scene_descriptor(read_image(p, "gray")))
            ok.append(True)
        except Exception:  # noqa: BLE001 - any decoding failure: the file stands alone
            ok.append(False)
    found = iter(scene_groups(np.stack(rows)) if rows else [])
    index = [i for i, good in enumerate(ok) if good]
    out = [f"image:{Path(p).name}" for p in paths]
    for i, g in zip(index, found):
        out[i] = g
    return out


# Scenes of frames that carry no scene id (SIRST's ``Misc_N``: its numbers are not in sequence order).
SCENE_THUMB = 16  # thumbnail side: the background's layout, not the few-pixel targets
SCENE_DISTANCE = 0.5  # average-linkage cut on the RMS distance of z-scored thumbnails


def scene_descriptor(gray: np.ndarray, side: int = SCENE_THUMB) -> np.ndarray:
    """A frame's background layout: its (h, w) grey image area-averaged to ``side`` x ``side``, z-scored
    (so a change of camera gain or offset does not split a scene), flattened."""
    import cv2
    import numpy as np

    t = cv2.resize(np.asarray(gray, np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    return ((t - t.mean()) / (t.std() + 1e-6)).astype(np.float32)


def scene_groups(descriptors: np.ndarray, distance: float = SCENE_DISTANCE) -> list[str]:
    """Scene ids for frames from their ``scene_descriptor`` rows: average-linkage clustering of the RMS
    distances, cut at ``distance`` (0.5 lies below the 1st percentile of SIRST's pairs of random frames,
    0.55, and joins frames of one sequence, whose background barely moves). Average rather than single
    linkage: single linkage chains plain-sky frames of different sequences into one group of 80-120.
    Deterministic; ids are ``scene:<first member's index>``."""
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage

    d = np.asarray(descriptors, np.float64)
    if len(d) < 2:
        return [f"scene:{i}" for i in range(len(d))]
    sq = (d ** 2).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * d @ d.T, 0) / d.shape[1])
    iu = np.triu_indices(len(d), 1)
    labels = fcluster(linkage(dist[iu], "average"), distance, "distance")
    first: dict[int, int] = {}
    for i, lab in enumerate(labels):
        first.setdefault(int(lab), i)
    return [f"scene:{first[int(lab)]}" for lab in labels]


def balanced_folds(groups: Sequence[str], n_folds: int) -> list[list[int]]:
    """Indices of ``groups`` per fold: whole groups, largest first into the smallest fold (ties by
    name), so folds are about equal in size and the same input always gives the same folds
    (for data without classes to stratify by: segmentation frames, anomaly tiles)."""
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {n_folds}")
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    if len(sizes) < n_folds:
        raise ValueError(f"{len(sizes)} groups ({', '.join(sorted(sizes)[:8])}) cannot fill {n_folds} folds; "
                         "use fewer folds or another grouping")
    fold_of: dict[str, int] = {}
    load = [0] * n_folds
    for g in sorted(sizes, key=lambda k: (-sizes[k], k)):
        f = min(range(n_folds), key=lambda i: (load[i], i))
        fold_of[g] = f
        load[f] += sizes[g]
    return [[i for i, g in enumerate(groups) if fold_of[g] == f] for f in range(n_folds)]


NAME_GROUPINGS = ("prefix", "none")  # file-name rules for data without class folders (anomaly tiles); or regex:PATTERN


def name_group_function(kind: str) -> Callable[[str], str]:
    """A file name -> group function: ``prefix`` (``image_group``'s rule: magnetic tile's
    ``exp1_num_10334.png`` -> ``exp1``), ``none`` (every file its own group) or ``regex:PATTERN``
    (the first capture group of PATTERN, else its whole match; a name it misses is its own group)."""
    if kind in NAME_GROUPINGS:
        return lambda name: image_group(PurePosixPath(name).name, "", kind)
    if kind.startswith("regex:"):
        try:
            pattern = re.compile(kind[len("regex:"):])
        except re.error as exc:  # a traceback before (a session-49 audit), for train anomaly after its fitting
            raise ValueError(f"grouping {kind!r}: {kind[len('regex:'):]!r} is not a regular expression ({exc})") from None

        def by_regex(name: str) -> str:
            m = pattern.search(PurePosixPath(name).name)
            return m.group(1 if m.groups() else 0) if m else f"image:{PurePosixPath(name).name}"

        return by_regex
    raise ValueError(f"unknown grouping {kind!r}; choose from {', '.join(NAME_GROUPINGS)} or regex:PATTERN")
