"""Deterministic, stratified train/val/test assignment for exported datasets.

A split must not depend on the order the database returns rows in, on the machine, or on the
Python hash seed: two exports of the same reviewed images must put every image on the same side,
or a model evaluated on one export's test part may have trained on it in another. So images are
ranked by a SHA-256 of their folder-relative name (plus a seed) inside each stratum (their class,
else their anomaly verdict), and each stratum is cut by exact counts, not by sampling.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, TypeVar

SPLIT_NAMES = ("train", "val", "test")

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of train/val/test; they sum to 1 (a zero fraction means "no such part")."""

    train: float
    val: float
    test: float
    seed: int = 0
    # keep each capture group (sub-folder, file-name prefix: ``inference.training.groups``) on one side; None: cut
    # image by image. A retraining's held-out part needs it: a session split across both sides lets the new
    # version look better on the held-out images than it will on the next session.
    group_rule: str | None = None

    def __post_init__(self) -> None:
        fracs = (self.train, self.val, self.test)
        if any(not math.isfinite(f) or f < 0 for f in fracs):
            raise ValueError("split fractions must be finite and >= 0")
        if not math.isclose(sum(fracs), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must sum to 1 (got {sum(fracs):g})")

    @property
    def fractions(self) -> dict[str, float]:
        return dict(zip(SPLIT_NAMES, (self.train, self.val, self.test)))

    @property
    def used(self) -> tuple[str, ...]:
        """The parts that receive images, in train/val/test order."""
        return tuple(n for n, f in self.fractions.items() if f > 0)

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> "SplitSpec":
        """'0.7,0.2,0.1', '70/20/10' or '0.8,0.2' (no test part); percentages are normalised."""
        parts = [p for p in text.replace("/", ",").replace(":", ",").split(",") if p.strip()]
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"split {text!r}: give two or three fractions, e.g. 0.7,0.2,0.1")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"split {text!r}: fractions must be numbers, e.g. 0.7,0.2,0.1") from None
        total = sum(values)
        if any(v < 0 for v in values) or total <= 0 or not math.isfinite(total):
            raise ValueError(f"split {text!r}: fractions must be >= 0 with a positive sum")
        if total > 1.0 + 1e-6:
            if not math.isclose(total, 100.0, abs_tol=1e-3):
                raise ValueError(f"split {text!r}: fractions sum to {total:g}, not 1 (or 100)")
            values = [v / 100.0 for v in values]
        elif not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"split {text!r}: fractions sum to {total:g}, not 1")
        values += [0.0] * (3 - len(values))
        return cls(values[0], values[1], values[2], seed=seed)


def rank_key(name: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\0{name}".encode("utf-8")).digest()


def part_sizes(n: int, spec: SplitSpec) -> dict[str, int]:
    """Largest-remainder counts per part (ties to the earlier part); every used part gets one image when there are enough."""
    fracs = spec.fractions
    exact = {k: round(n * f, 9) for k, f in fracs.items()}  # 25 * 0.7 is 17.5, not 17.4999...
    sizes = {k: math.floor(v) for k, v in exact.items()}
    # the remainder rounded too: 8 * 0.7 - 5 is 0.5999999999 beside 8 * 0.2 - 1 = 0.6000000001, and the tie went to
    # val (5 / 2 / 1 instead of 6 / 1 / 1; a session-47 audit)
    by_remainder = sorted(SPLIT_NAMES, key=lambda k: (-round(exact[k] - sizes[k], 9), SPLIT_NAMES.index(k)))
    for k in by_remainder[: n - sum(sizes.values())]:
        sizes[k] += 1
    used = spec.used
    if n >= len(used):
        for k in used:
            if sizes[k] == 0:
                donor = max(used, key=lambda d: (sizes[d], -SPLIT_NAMES.index(d)))
                sizes[donor] -= 1
                sizes[k] += 1
    return sizes


def assign_splits(names: Mapping[K, str], strata: Mapping[K, str], spec: SplitSpec,
                  groups: Mapping[K, str] | None = None) -> dict[K, str]:
    """Map each key to 'train', 'val' or 'test'.

    ``names`` gives the string hashed for the ranking (ties broken by the string itself, so equal
    names cannot make the result order-dependent); ``strata`` the group each key is cut within.
    ``groups``: capture groups kept whole (``group_parts``).
    """
    if groups is not None:
        return group_parts(strata, groups, spec)
    groups_of: dict[str, list[K]] = defaultdict(list)
    for key in names:
        groups_of[strata[key]].append(key)
    out: dict[K, str] = {}
    for members in groups_of.values():
        ranked = sorted(members, key=lambda k: (rank_key(names[k], spec.seed), names[k]))
        sizes = part_sizes(len(ranked), spec)
        start = 0
        for part in SPLIT_NAMES:
            for key in ranked[start : start + sizes[part]]:
                out[key] = part
            start += sizes[part]
    return out


def group_parts(strata: Mapping[K, str], groups: Mapping[K, str], spec: SplitSpec) -> dict[K, str]:
    """Whole capture groups to 'train', 'val' or 'test', each stratum's counts as near its parts' sizes as
    whole groups allow: groups largest first (ties by a hash of the name, so the result is the same on every
    machine and in every order), each to the part whose squared shortfall per stratum (relative to the stratum's
    size, so a rare class weighs as much as a common one) it reduces most (ties to the earlier part). A stratum
    left with no training image takes its smallest group back from the held-out parts: a class held out whole
    could not be learnt, only scored."""
    members: dict[str, list[K]] = defaultdict(list)
    for key in strata:
        members[groups[key]].append(key)
    total: dict[str, int] = defaultdict(int)
    for key in strata:
        total[strata[key]] += 1
    want = {s: part_sizes(n, spec) for s, n in total.items()}
    have: dict[str, dict[str, int]] = {s: dict.fromkeys(SPLIT_NAMES, 0) for s in total}
    part_of: dict[str, str] = {}
    order = sorted(members, key=lambda g: (-len(members[g]), rank_key(g, spec.seed), g))
    for g in order:
        per: dict[str, int] = defaultdict(int)
        for key in members[g]:
            per[strata[key]] += 1

        # each stratum's error relative to its size: a rare class weighs as much as a common one
        cost = {part: sum(((have[s][part] + c - want[s][part]) ** 2 - (have[s][part] - want[s][part]) ** 2) / total[s]
                          for s, c in per.items()) for part in spec.used}
        best = min(spec.used, key=lambda part: (cost[part], SPLIT_NAMES.index(part)))
        part_of[g] = best
        for s, c in per.items():
            have[s][best] += c
    if "train" in spec.used:
        for s in sorted(total):
            if have[s]["train"] == 0:
                held = [g for g in order if part_of[g] != "train" and any(strata[k] == s for k in members[g])]
                if held:
                    back = min(held, key=lambda g: (len(members[g]), rank_key(g, spec.seed), g))
                    part_of[back] = "train"
                    for key in members[back]:
                        have[strata[key]]["train"] += 1
    return {key: part_of[groups[key]] for key in strata}


def counts(assignment: Iterable[str]) -> dict[str, int]:
    result = {k: 0 for k in SPLIT_NAMES}
    for part in assignment:
        result[part] += 1
    return result

