"""Group-aware cross-validation folds for data without classes (anomaly tiles): images of one group
(a capture session) never split.

Why (issue 19, item 1): tiles of one capture session share lighting, camera and batch; a fold
that holds some of a session's tiles out while fitting on the rest measures how well the model
knows that session, not how it does on the next one. The rules live in ``groups.py`` (the one home
of grouping rules); this module keeps the names its callers use.
"""
from __future__ import annotations

from inference.training.groups import NAME_GROUPINGS as GROUP_BY
from inference.training.groups import balanced_folds as group_folds
from inference.training.groups import name_group_function as group_function

__all__ = ["GROUP_BY", "group_folds", "group_function", "prefix_group"]


def prefix_group(name: str) -> str:
    """The capture-session prefix of a file name (``groups.image_group``'s ``prefix`` rule)."""
    return group_function("prefix")(name)
