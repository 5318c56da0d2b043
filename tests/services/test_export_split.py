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


def test_parse() -> None:
    assert SplitSpec.parse("0.7,0.2,0.1").fractions == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert SplitSpec.parse("70/20/10").fractions == pytest.approx({"train": 0.7, "val": 0.2, "test": 0.1})
    assert SplitSpec.parse("0.8,0.2").used == ("train", "val")
    for bad in ("0.5,0.2", "a,b", "0.5,0.5,0.5,0.5", "-0.1,1.1", ""):
        with pytest.raises(ValueError):
            SplitSpec.parse(bad)
