"""Bounds on what a model directory may ask for, checked before any tensor is allocated.

Why: a model folder is user data. Its ``config.json`` decides how large the network is built
(``num_classes`` 1e9 asked for 512 GB, ``depths`` [1e7] grew for minutes) and its safetensors
header decides how large each tensor is read (a header may claim a 100000×100000 tensor backed
by 16 bytes). Everything here reads only JSON and the header, so it is cheap, imports no torch
(the model catalog checks folders in the GUI with it) and is the one home of these limits: the
catalog (add, activate), the registry (every config built from a dict) and the loader use it.

The limits sit far above every preset and trained model of the station (the largest preset has
``embed_dim`` 96 and 224-pixel inputs) and far below what would exhaust a workstation.
"""
from __future__ import annotations

import json
import math
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# A card's "kind" for a self-supervised start point (``main.py pretrain``): weights for ``train --init``,
# never a model to run or activate (its head was never trained).
PRETRAINED_KIND = "pretrained_backbone"

MAX_JSON_BYTES = 1 << 20  # config.json / card.json: a few KiB in practice
# safetensors JSON header: the station's largest is under 30 KB; 100 MB of small tensors took 1.7 GB and 35 s to
# check (a session-47 audit)
MAX_HEADER_BYTES = 8 << 20
MAX_SEQUENCE = 16  # entries of a list in a config (stage depths, widths per stage, means)
MAX_TEXT = 256  # characters of a string value
MAX_INT = 1 << 20  # any integer field not named below
MAX_FLOAT = 1e6  # any float field not named below (finite)

MAX_IMAGE_SIDE = 1024  # pixels: the largest spatial size a config may ask for (see FIELD_LIMITS)
# Sizes that are a number of pixels: a negative image_size (-24) was refused as "score_margin must be in
# [0, image_size/2), got 0", naming the wrong field, and memory_mamba's and pixel_gaussian's were built (a session-51
# audit).
POSITIVE_FIELDS = frozenset({"img_size", "image_size", "patch_size", "token_size", "sentence_px", "word_px", "patch"})

# Named fields (and every entry of a list field of that name): the largest value accepted.
FIELD_LIMITS: dict[str, float] = {
    # how many blocks/layers are built: each is Python objects and time, whatever its width
    "depths": 32, "encoder_depth": 64, "decoder_depth": 64, "compare_depth": 64, "heads": 64,
    "axes": 8, "shifts": 64, "context": 64,
    # widths (channels) and outputs
    "num_classes": 10_000, "in_chans": 64, "in_channels": 64, "embed_dim": 4096, "dim": 4096,
    "head_hidden": 8192, "stem_dim": 4096, "head_dim": 4096, "outer_dims": 4096, "inner_dims": 4096,
    "widths": 4096, "d_state": 1024, "position_features": 4096, "coarse_slots": 4096, "fine_slots": 4096,
    # spatial sizes: inputs are resized to these, so they set the memory of every prediction, by their square. 4096
    # let a copy of classifier-neu (img_size 128) allocate 2 GiB for one 40 x 40 image and a worker be killed for
    # memory (a session-51 audit); at 1024 it peaks near 1.5 GB (460 MB at 128), still 4 times the largest preset or
    # bundled model (image_size 256; memory_mamba's paper preset 224). Each must be at least 1 (POSITIVE_FIELDS).
    **dict.fromkeys(POSITIVE_FIELDS, MAX_IMAGE_SIDE),
    "score_margin": MAX_IMAGE_SIDE // 2,
    # kernels (pixels) and blur widths (a Gaussian kernel is about 6 sigma wide)
    "ssm_conv": 63, "memory_conv": 63, "d_conv": 63, "stats_window": 255, "contrast_window": 255,
    "smoothing_sigma": 256, "blur_sigma": 256, "stats_blur": 256,
    # expansion ratios multiply a width
    "ssm_expand": 16, "expand": 16, "mlp_ratio": 16,
    # memory banks (stored as tensors, so also held to the file size)
    "bank_size": 1 << 20, "bank_k": 4096,
}

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class ModelLimitError(ValueError):
    """A model directory that asks for more than the station allows, or whose files disagree."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as its safetensors header describes it (nothing read from the data)."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def regular_file_size(path: Path) -> int:
    """The size of ``path``, a regular file (or a link to one); FileNotFoundError when missing, ``ModelLimitError``
    for a pipe, device or folder: opening a pipe blocks for good (a session-44 probe: a worker loading a version
    whose weights had become a named pipe hung, its heartbeat keeping the job's claim fresh)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ModelLimitError(f"{path} is not a regular file (a pipe, device or folder is never read)")
    return st.st_size


def parse_json(text: str) -> Any:
    """``json.loads``, with a document nested too deeply a ``ValueError`` too: a 6 KB ``domain.json`` of 3000
    nested brackets raised RecursionError, which no reader caught, so a version was registered while Add said it was
    refused, and the Models dialog and ``models list`` then failed for every version (a session-44 probe). One nested
    950 levels (2 KB) parsed, and a card.json so deep passed Add's check, then raised RecursionError in every
    recursive reader after it (registering's ``json_safe``: "was not added: maximum recursion depth exceeded", a
    session-51 audit): more than MAX_JSON_DEPTH levels is refused here, the one reader."""
    deep = ValueError(f"it is nested too deeply: more than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(text)
    except RecursionError:
        raise deep from None
    if _deeper_than(doc, MAX_JSON_DEPTH):
        raise deep
    return doc


# Levels of objects and lists in any JSON the station reads: the deepest it writes or imports is under 10 (a COCO
# polygon, a card's metrics); Python's own recursion stops near 1000, and every reader after the parse recurses.
MAX_JSON_DEPTH = 64


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests objects and lists more than ``limit`` levels; level by level, without recursion."""
    level = [doc] if isinstance(doc, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v) if isinstance(c, (dict, list))]
    return False


def read_json_bounded(path: Path) -> Any:
    """The JSON in ``path`` once its size is known to be small; OSError/ValueError otherwise."""
    size = regular_file_size(path)
    if size > MAX_JSON_BYTES:
        raise ModelLimitError(f"{path} is {size} bytes; a model's JSON file is at most {MAX_JSON_BYTES} bytes")
    return parse_json(path.read_text(encoding="utf-8"))


def check_config_values(values: Mapping[str, Any], where: str = "config.json") -> None:
    """Refuse a config whose sizes are out of bounds (see FIELD_LIMITS), naming the field."""
    if not isinstance(values, Mapping):
        raise ModelLimitError(f"{where}: 'config' must be a JSON object")
    for key, value in values.items():
        _check_value(str(key), value, where, FIELD_LIMITS.get(str(key)))


def _check_value(key: str, value: Any, where: str, limit: float | None, nested: bool = False) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ModelLimitError(f"{where}: {key} is a text of {len(value)} characters (at most {MAX_TEXT})")
        return
    if isinstance(value, (list, tuple)):
        if nested or len(value) > MAX_SEQUENCE:
            raise ModelLimitError(f"{where}: {key} must be a list of at most {MAX_SEQUENCE} numbers")
        for v in value:
            _check_value(key, v, where, limit, nested=True)
        return
    if isinstance(value, int):
        bound = MAX_INT if limit is None else limit
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ModelLimitError(f"{where}: {key} is {value}, not a finite number")
        bound = MAX_FLOAT if limit is None else limit
    else:
        raise ModelLimitError(f"{where}: {key} must be a number, text or list, not {type(value).__name__}")
    if key in POSITIVE_FIELDS and value < 1:
        raise ModelLimitError(f"{where}: {key} = {value:g} must be at least 1 (a size in pixels)")
    if abs(value) > bound:
        raise ModelLimitError(f"{where}: {key} = {value:g} is out of bounds (at most {bound:g}); "
                              "the folder is refused before any memory is taken for it")


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """Each tensor's dtype, shape and size from a safetensors header, checked against the file.

    Every tensor's byte range must lie inside the file and hold exactly shape × dtype bytes, so
    loading can never be asked to allocate more than the file backs. OSError when unreadable.
    """
    size = regular_file_size(path)
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelLimitError(f"{path} is not a safetensors file (too short)")
        n = struct.unpack("<Q", head)[0]
        if MAX_HEADER_BYTES < n <= size - 8:
            raise ModelLimitError(f"{path}: its header of {n} bytes describes more tensors than any model the station "
                                  f"runs (at most {MAX_HEADER_BYTES >> 20} MiB)")
        if n == 0 or 8 + n > size:
            raise ModelLimitError(f"{path} is not a safetensors file (header length {n} does not fit "
                                  f"a {size}-byte file)")
        raw = f.read(n)
    try:
        header = parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelLimitError(f"{path} is not a safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise ModelLimitError(f"{path} is not a safetensors file (its header is not a JSON object)")
    data = size - 8 - n
    out: dict[str, TensorEntry] = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        out[name] = _entry(path, name, t, data)
    if not out:
        raise ModelLimitError(f"{path} holds no tensors")
    return out


def _entry(path: Path, name: str, t: Any, data: int) -> TensorEntry:
    bad = f"{path} is damaged: tensor {name!r}"
    if not isinstance(t, dict):
        raise ModelLimitError(f"{bad} has no valid dtype, shape or byte range")
    dtype, shape, offsets = t.get("dtype"), t.get("shape"), t.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise ModelLimitError(f"{bad} has an unknown dtype {str(dtype)[:20]!r}")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ModelLimitError(f"{bad} has no valid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data):
        raise ModelLimitError(f"{bad} has a byte range outside the file")
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    if nbytes != offsets[1] - offsets[0]:
        raise ModelLimitError(f"{bad} claims shape {tuple(shape)} ({nbytes} bytes) but the file holds "
                              f"{offsets[1] - offsets[0]} bytes for it")
    return TensorEntry(dtype, tuple(shape), nbytes)


def shape_mismatches(expected: Mapping[str, tuple[int, ...]], header: Mapping[str, TensorEntry]) -> list[str]:
    """What differs between the tensors a config builds and those the weights file holds."""
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = sorted(f"{k} {header[k].shape} (model expects {tuple(v)})"
                   for k, v in expected.items() if k in header and header[k].shape != tuple(v))
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:8])}{' …' if len(unexpected) > 8 else ''}")
    if wrong:  # each entry is long: three say enough
        problems.append(f"wrong shapes: {'; '.join(wrong[:3])}{f' and {len(wrong) - 3} more' if len(wrong) > 3 else ''}")
    return problems
