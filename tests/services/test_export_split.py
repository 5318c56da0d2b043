"""The train/val/test split: deterministic, order-free, stratified, exact counts."""
from __future__ import annotations

import random

import pytest

from app.services.export_split import SplitSpec, assign_splits, part_sizes


def classes(n_per: dict[str, int]) -> tuple[dict[str, str], dict[str, str]]:
    names, strata = {}, {}
    for cls, n in n_per.items():
        for i in range(n):
            key = f"{cls}/img_{i:03d}.png"
            names[key] = key
            strata[key] = cls
    return names, strata


def test_same_labels_same_split_whatever_the_order() -> None:
    names, strata = classes({"crack": 40, "good": 25, "scratch": 7})
    spec = SplitSpec(0.7, 0.2, 0.1)
    first = assign_splits(names, strata, spec)
    keys = list(names)
    random.Random(3).shuffle(keys)
    again = assign_splits({k: names[k] for k in keys}, {k: strata[k] for k in keys}, spec)
    assert again == first
    other_seed = assign_splits(names, strata, SplitSpec(0.7, 0.2, 0.1, seed=1))
    assert other_seed != first


def test_stratified_exact_counts_per_class() -> None:
    names, strata = classes({"crack": 40, "good": 25, "scratch": 7})
    parts = assign_splits(names, strata, SplitSpec(0.7, 0.2, 0.1))
    per = {}
    for key, part in parts.items():
        per.setdefault(strata[key], {"train": 0, "val": 0, "test": 0})[part] += 1
    assert per["crack"] == {"train": 28, "val": 8, "test": 4}
    assert per["good"] == {"train": 18, "val": 5, "test": 2}  # 17.5 / 5 / 2.5: a tie goes to train
    assert per["scratch"] == {"train": 5, "val": 1, "test": 1}  # a small class still reaches every part


def test_membership_follows_hashed_name_not_position() -> None:
    names, strata = classes({"crack": 30})
    spec = SplitSpec(0.5, 0.5, 0.0)
    parts = assign_splits(names, strata, spec)
    assert set(parts.values()) == {"train", "val"}
    # Renaming keys (same hashed names) changes nothing; changing the hashed names does.
    renamed = assign_splits({f"id{i}": n for i, n in enumerate(names.values())},
                            {f"id{i}": "crack" for i in range(30)}, spec)
    assert [renamed[f"id{i}"] for i in range(30)] == [parts[k] for k in names]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 101])
def test_part_sizes_sum_and_minimums(n: int) -> None:
    sizes = part_sizes(n, SplitSpec(0.8, 0.1, 0.1))
    assert sum(sizes.values()) == n
    if n >= 3:
        assert min(sizes.values()) >= 1
    assert part_sizes(n, SplitSpec(1.0, 0.0, 0.0)) == {"train": n, "val": 0, "test": 0}


@pytest.mark.parametrize(("n", "expected"), [(8, (6, 1, 1)), (18, (13, 3, 2)), (24, (17, 5, 2))])
def test_a_tie_of_remainders_goes_to_the_earlier_part(n: int, expected: tuple[int, int, int]) -> None:
    """docs/export.md: largest remainders of n x fraction, ties to the earlier part. 8 x 0.7 - 5 is 0.5999999999 in
    floating point beside 8 x 0.2 - 1 = 0.6000000001: the tie went to val (a session-47 audit)."""
    assert tuple(part_sizes(n, SplitSpec(0.7, 0.2, 0.1)).values()) == expected


def test_parse() -> None:
    assert SplitSpec.parse("0.7,0.2,0.1").fractions == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert SplitSpec.parse("70/20/10").fractions == pytest.approx({"train": 0.7, "val": 0.2, "test": 0.1})
    assert SplitSpec.parse("0.8,0.2").used == ("train", "val")
    for bad in ("0.5,0.2", "a,b", "0.5,0.5,0.5,0.5", "-0.1,1.1", ""):
        with pytest.raises(ValueError):
            SplitSpec.parse(bad)


def test_capture_groups_are_kept_whole_and_each_class_keeps_training_images() -> None:
    # six sessions of 10 images (8 free, 2 crack each) and one lone session of a rare class
    strata = {f"exp{s}_{i}": ("class:crack" if i < 2 else "class:free") for s in range(6) for i in range(10)}
    strata |= {f"solo_{i}": "class:fray" for i in range(3)}
    groups = {k: k.split("_")[0] for k in strata}
    spec = SplitSpec(0.8, 0.2, 0.0)
    parts = assign_splits({k: k for k in strata}, strata, spec, groups)
    side = {}
    for k, part in parts.items():
        assert side.setdefault(groups[k], part) == part  # no session on both sides
    held = {g for g, part in side.items() if part == "val"}
    assert 1 <= len(held) <= 2 and "solo" not in held  # about a fifth held out; the lone fray session is learnt
    assert parts == assign_splits({k: k for k in reversed(list(strata))}, dict(reversed(list(strata.items()))),
                                  spec, groups)  # the same whatever the order


def test_a_class_held_out_whole_comes_back_to_training() -> None:
    # the rare class sits only in small sessions that the greedy cut would all send to the held-out part
    # (the big sessions fill the training side's free images; each small one then fits the held-out side best)
    strata = {f"big{s}_{i}": "class:free" for s in range(3) for i in range(14)}
    strata |= {f"tiny{s}_{i}": "class:fray" if i == 0 else "class:free" for s in range(2) for i in range(4)}
    groups = {k: k.split("_")[0] for k in strata}
    parts = assign_splits({k: k for k in strata}, strata, SplitSpec(0.8, 0.2, 0.0), groups)
    fray = [parts[k] for k in strata if strata[k] == "class:fray"]
    assert fray.count("train") == 1 and fray.count("val") == 1
