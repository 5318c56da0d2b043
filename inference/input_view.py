"""How a model version is handed an image: its channel mode and the largest side it is decoded at
(plain Python; no torch, so a Qt-free service can describe images as a model would see them without
loading it: ``app.services.version_fit``).

Why one home: the engine's family adapters decode for prediction with these, and the domain
statistics (``inference.domain``) describe images decoded the same way, so anyone scoring a
version's domain outside the engine must decode exactly as it does.
"""
from __future__ import annotations

from typing import Any, Mapping

# Whole frames up to this side go to the segmenter unshrunk (its helper tiles beyond 1024):
# small targets are a few pixels wide, so shrinking loses them.
SEGMENTER_MAX_SIDE = 1024


class InputViewError(ValueError):
    """A configuration that does not say how its model takes an image."""


def _get(config: Any, key: str) -> Any:
    value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65536:
        raise InputViewError(f"the model configuration's {key} must be a positive whole number, got {str(value)[:40]}")
    return value


def input_view(family: str, config: Any) -> tuple[str, int]:
    """(channel mode "gray" or "rgb", largest side) of ``family``'s model with ``config`` (its config
    object, or the ``config`` mapping of its ``config.json``)."""
    if family == "classifier":
        return ("gray" if _get(config, "in_chans") == 1 else "rgb"), 2 * _get(config, "img_size")  # the helper area-averages the rest of the way
    if family == "segmenter":
        return ("gray" if _get(config, "in_chans") == 1 else "rgb"), SEGMENTER_MAX_SIDE
    if family == "anomaly":
        return ("gray" if _get(config, "in_channels") == 1 else "rgb"), 2 * _get(config, "image_size")
    raise InputViewError(f"unknown family {family!r}")


__all__ = ["input_view", "InputViewError", "SEGMENTER_MAX_SIDE"]
