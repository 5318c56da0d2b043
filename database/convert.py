"""ORM row → frozen DTO, field by field by name (the DTOs mirror their tables)."""
from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def to_dto(row: Any, cls: type[T], **overrides: Any) -> T:
    """Build ``cls`` from the same-named attributes of ``row``; mutable JSON values are copied."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(row, f.name):
            value = getattr(row, f.name)
            values[f.name] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    return cls(**values)
