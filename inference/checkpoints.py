"""Model directories: ``model.safetensors`` + ``config.json`` + ``card.json``.

Never pickle: a checkpoint a user hands us is data, not code. Every failure (missing file,
corrupt tensors, a tensor missing or of the wrong shape, an unknown model) is raised as a
``CheckpointError`` whose message says what is wrong with which file.

Weights may be stored at a lower precision than the model computes in (``save_model(...,
storage_dtype=torch.float16)``: half the bytes, for ensembles bundled with the application); they
are cast back to the model's own dtype when loaded, so a float32 file loads exactly as before.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .families import a_family
from .model_limits import ModelLimitError, TensorEntry, read_json_bounded, read_safetensors_header, shape_mismatches
from .models import registry

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "card.json"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A model directory that cannot be loaded, with the reason."""


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    family: str
    config: Any
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    parts: dict[str, "LoadedModel"] = field(default_factory=dict)  # sub-models named by the card's "parts"


def _config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else dict(config)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _stored(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Floating tensors cast to the storage ``dtype``; refused (ValueError) where a value would not survive the cast."""
    if dtype is None:
        return tensors
    if dtype not in STORAGE_DTYPES.values():
        raise ValueError(f"storage dtype must be one of {sorted(STORAGE_DTYPES)}, not {dtype}")
    out = {}
    for k, v in tensors.items():
        if v.is_floating_point() and v.dtype != dtype:
            cast = v.to(dtype)
            if not torch.isfinite(cast).all() and torch.isfinite(v).all():
                raise ValueError(f"tensor {k} overflows {dtype} (largest magnitude {v.abs().max().item():g})")
            v = cast
        out[k] = v
    return out


def save_model(directory: str | os.PathLike, name: str, model: nn.Module, config: Any, card: dict | None = None,
               storage_dtype: torch.dtype | None = None) -> Path:
    """Write a model directory atomically file by file (a crash leaves the old files or the new).

    ``storage_dtype`` (float16 or bfloat16) stores the floating tensors at that precision; loading
    casts them back to the model's dtype.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _stored({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, storage_dtype)
    tmp = out / (WEIGHTS + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"model": name, "format": str(FORMAT_VERSION)})
    except SafetensorError as exc:  # a full disk comes as safetensors' own error: an OSError, as any other write's
        # (a retraining whose disk filled ended in a traceback: a session-51 audit)
        tmp.unlink(missing_ok=True)
        raise OSError(errno.EIO, f"the weights cannot be written ({exc})", str(tmp)) from exc
    os.replace(tmp, out / WEIGHTS)
    meta = {"format": FORMAT_VERSION, "model": name, "family": registry.spec(name).family, "config": _config_dict(config)}
    if storage_dtype is not None:
        meta["storage_dtype"] = str(storage_dtype).removeprefix("torch.")
    _atomic_write_text(out / CONFIG, json.dumps(meta, indent=2, sort_keys=True))
    if card is not None:
        save_card(out, card)
    return out


def save_card(directory: str | os.PathLike, card: dict) -> None:
    """Rewrite only a model directory's card.json (e.g. test figures recorded after a later step)."""
    _atomic_write_text(Path(directory) / CARD, json.dumps(card, indent=2, sort_keys=True, default=str))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json_bounded(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except ModelLimitError as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError, a document nested too deeply
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def weights_header(weights: Path) -> dict[str, TensorEntry]:
    """The weights file's tensor shapes, read from its header and checked against its size."""
    try:
        return read_safetensors_header(weights)
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except ModelLimitError as exc:
        raise CheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot be read ({exc.strerror or exc})") from None


def check_against_weights(name: str, config: Any, weights: Path) -> None:
    """Build the architecture without memory (torch's meta device) and compare every tensor's shape
    with the weights file's header, so a config that disagrees with its weights (or asks for far
    more than the file holds) is refused before the real model is allocated."""
    header = weights_header(weights)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in registry.build(name, config).state_dict().items()}
    problems = shape_mismatches(shapes, header)
    if problems:
        raise CheckpointError(f"{weights}: does not match its config: " + " | ".join(problems))


def load_state(model: nn.Module, weights: Path) -> None:
    """Load tensors into ``model`` strictly, naming every missing, unexpected or mis-shaped one."""
    header = weights_header(weights)  # bounds what load_file may allocate to what the file holds
    problems = shape_mismatches({k: tuple(v.shape) for k, v in model.state_dict().items()}, header)
    if problems:
        raise CheckpointError(f"{weights}: does not match its config: " + " | ".join(problems))
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    expected = model.state_dict()
    # a float parameter stored as integers: load_state_dict would cast the raw numbers and the model would answer
    # nonsense (a session-44 probe: F32 tensors relabelled I32 loaded, then every image failed "non-finite output")
    kinds = [k for k, v in state.items() if k in expected and expected[k].is_floating_point() and not v.is_floating_point()]
    if kinds:
        raise CheckpointError(f"{weights}: integer values where the model holds real numbers: {', '.join(kinds[:8])}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{weights}: non-finite values in {', '.join(bad[:8])}")
    # lower-precision storage (see save_model's storage_dtype) is computed with at the model's own precision
    state = {k: v.to(expected[k].dtype) if v.is_floating_point() and expected[k].is_floating_point()
             and v.dtype != expected[k].dtype else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)


def checked_config(d: Path, name: str, meta: dict[str, Any]) -> Any:
    """The architecture ``name``'s config from a model folder's ``config.json`` (``meta``), checked against the
    weights file's header without allocating a tensor (``CheckpointError`` says why not). Adding a folder runs it
    too: a session-44 probe added and activated a classifier whose num_classes (9999) disagreed with its 2-class
    weights, and the user learnt it only when every pre-label job failed."""
    def check() -> Any:
        config = registry.config_from_dict(name, meta.get("config", {}))
        check_against_weights(name, config, d / WEIGHTS)
        return config
    return _built(d, name, check)


def _built(d: Path, name: str, make: Callable[[], Any]) -> Any:
    """``make()``, with what a config can make the architecture raise said as a ``CheckpointError``."""
    try:
        return make()
    except (KeyError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{d / CONFIG}: {first[:300]}") from None
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a config the architecture's constructor cannot take
        raise CheckpointError(f"{d / CONFIG}: the {name} model cannot be built from it "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def load_model(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu", family: str | None = None,
    _as_part: bool = False,
) -> LoadedModel:
    """Build and load a model directory; with ``family``, refuse one of another family (CheckpointError),
    and one that only works as a part of another model (a segmenter's verifier given as the segmenter)."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: model directory not found")
    meta = read_json(d / CONFIG)
    name = meta.get("model")
    if not isinstance(name, str):
        raise CheckpointError(f"{d / CONFIG}: no 'model' name")
    fmt = meta.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise CheckpointError(f"{d / CONFIG}: 'format' must be a whole number, not {str(fmt)[:40]!r}")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"{d}: written by a newer version of this application (format {meta['format']})")
    config = checked_config(d, name, meta)
    model = _built(d, name, lambda: registry.build(name, config))
    load_state(model, d / WEIGHTS)
    model.to(map_location).eval()
    found = registry.spec(name).family
    if family is not None and found != family:
        raise CheckpointError(f"{d}: holds {a_family(found)} model, not {a_family(family)} model")
    if family is not None and registry.spec(name).part_only and not _as_part:
        raise CheckpointError(f"{d}: holds a {name}, which is part of {a_family(found)} model directory, "
                              f"not {a_family(family)} model of its own")
    card = read_json(d / CARD) if (d / CARD).exists() else {}
    return LoadedModel(model=model, name=name, family=found, config=config, card=card, path=d,
                       parts=_load_parts(d, card, map_location, found))


def _load_parts(d: Path, card: dict[str, Any], map_location: str | torch.device, family: str) -> dict[str, LoadedModel]:
    """The sub-models a card lists under ``parts`` (name -> sub-directory), e.g. a segmenter's verifier.

    A part is loaded like any model directory (same checks, same family), one level deep only, and
    must live inside its parent so that a card cannot point the loader elsewhere on the disk.
    """
    parts = card.get("parts") or {}
    if not isinstance(parts, dict):
        raise CheckpointError(f"{d / CARD}: 'parts' must map names to sub-directories")
    out = {}
    for part, sub in parts.items():
        sub_dir = (d / str(sub)).resolve()
        if not isinstance(sub, str) or d.resolve() not in sub_dir.parents:
            raise CheckpointError(f"{d / CARD}: part {part!r} must be a sub-directory of the model directory, got {sub!r}")
        loaded = load_model(sub_dir, map_location, family, _as_part=True)
        if loaded.parts:
            raise CheckpointError(f"{sub_dir}: a part may not have parts of its own")
        out[str(part)] = loaded
    return out
