"""Build models by name from a config dataclass (or its JSON dict).

Each model module registers itself with ``@register(name, family, ConfigCls)``. Checkpoints
store the name and the config dict, so loading never needs pickle or the original code path.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from inference import families

FAMILIES = families.NAMES
# Modules that register models; imported lazily so `import inference` stays cheap.
MODEL_MODULES = (
    "inference.models.memory_mamba",
    "inference.models.mim_istd",
    "inference.models.pattern_anomaly",
    "inference.models.pixel_gaussian",
    "inference.models.texture_knn",
    "inference.models.tile_defect",
    "inference.models.target_verifier",
    "inference.models.texture_linear",
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    config_cls: type
    model_cls: type[nn.Module]
    part_only: bool = False  # only ever loaded as a part of another model directory (a segmenter's verifier)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, family: str, config_cls: type, part_only: bool = False) -> Callable[[type[nn.Module]], type[nn.Module]]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    listed = families.family(family).part_only if part_only else families.family(family).architectures
    if name not in listed:  # the catalogue is what the torch-free checks read: keep them in step
        raise ValueError(f"{name!r} is not listed as a {family} {'part' if part_only else 'architecture'} "
                         "in inference/families.py")

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        _REGISTRY[name] = ModelSpec(name, family, config_cls, cls, part_only)
        return cls

    return deco


def _load_all() -> None:
    for mod in MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency, not a model not written yet
                raise


def spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}") from None


def available() -> list[ModelSpec]:
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


def config_from_dict(name: str, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass, rejecting unknown keys (a typo must not pass silently) and sizes
    out of bounds (``inference.model_limits``: a config is user data and decides the allocation)."""
    from inference.model_limits import check_config_values

    check_config_values(values, f"config for {name!r}")
    cls = spec(name).config_cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"config for {name!r} has unknown fields: {', '.join(sorted(unknown))}")
    kwargs = {}
    for key, val in values.items():
        # JSON turns tuples into lists; give tuples back where the default is a tuple.
        default = fields[key].default
        _check_type(name, key, val, default)
        kwargs[key] = tuple(val) if isinstance(val, list) and isinstance(default, tuple) else val
    return cls(**kwargs)


def _check_type(name: str, key: str, value: Any, default: Any) -> None:
    """A value of the default's kind (a whole number where one is expected, a list for a tuple), so
    a hand-edited config fails here with its field named, not deep in a constructor."""
    if default is dataclasses.MISSING or default is None:
        return
    if value is None:
        ok = False
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple) and default and all(isinstance(v, str) for v in default):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    else:
        return
    if not ok:
        kind = _kind(default)
        raise ValueError(f"config for {name!r}: {key} must be {kind}, not {str(value)[:40]!r}")


def _kind(default: Any) -> str:
    """What a config value must be, in words, judged by its default."""
    if isinstance(default, tuple):
        return "a list of texts" if default and isinstance(default[0], str) else "a list of numbers"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}[
        next(t for t in (bool, int, float, str) if isinstance(default, t))]


def build(name: str, config: Any = None) -> nn.Module:
    s = spec(name)
    if config is None:
        config = s.config_cls()
    elif isinstance(config, dict):
        config = config_from_dict(name, config)
    return s.model_cls(config)
