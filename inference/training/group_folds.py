"""Group-aware cross-validation folds: images of one group (a capture session) never split.

Why (issue 19, item 1): tiles of one capture session share lighting, camera and batch; a fold
that holds some of a session's tiles out while fitting on the rest measures how well the model
knows that session, not how it does on the next one. Groups are read from file names: by default
the text before the first ``_`` (magnetic tile's ``exp1_num_10334.png`` -> ``exp1``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import PurePath

GROUP_BY = ("prefix", "none")


def prefix_group(name: str) -> str:
    """The file stem up to its first ``_`` (the whole stem when it has none)."""
    stem = PurePath(name).stem
    return stem.split("_", 1)[0]


def group_function(kind: str) -> Callable[[str], str]:
    """``"prefix"``: the capture-session prefix; ``"none"``: every file its own group."""
    if kind == "prefix":
        return prefix_group
    if kind == "none":
        return lambda name: PurePath(name).stem
    if kind.startswith("regex:"):
        pattern = re.compile(kind[len("regex:"):])

        def by_regex(name: str) -> str:
            m = pattern.search(PurePath(name).name)
            return m.group(1 if m and m.groups() else 0) if m else PurePath(name).stem

        return by_regex
    raise ValueError(f"unknown grouping {kind!r}; choose from {', '.join(GROUP_BY)} or regex:PATTERN")


def group_folds(groups: Sequence[str], n_folds: int) -> list[list[int]]:
    """Indices of ``groups`` per fold: whole groups, largest first into the smallest fold (ties by
    name), so folds are about equal in size and the same input always gives the same folds."""
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
