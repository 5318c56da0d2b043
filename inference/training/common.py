"""Pieces every training loop shares: seeding, devices, schedules, splits, progress, resumable state.

Resume files are written and read by this code only (``torch.load(weights_only=True)``, which
refuses arbitrary objects); the model a user receives is the safetensors directory.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from inference.device import pick_device, set_threads  # noqa: F401  (trainers take them from here too)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def warmup_linear_decay(total_steps: int, warmup_frac: float = 0.05, floor: float = 0.0):
    """LambdaLR factor: linear warm-up, then linear decay to ``floor`` (the MemoryMamba paper's schedule)."""
    warm = max(1, int(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        rest = max(1, total_steps - warm)
        return max(floor, 1.0 - (step - warm) / rest * (1.0 - floor))

    return factor


def warmup_cosine(total_steps: int, warmup_frac: float = 0.05, floor: float = 0.01):
    warm = max(1, int(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def stable_hash(text: str, seed: int = 0) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big")


def deterministic_split(keys: Sequence[str], val_frac: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split by hash rank: the same names always land on the same side, whatever the file order."""
    ranked = sorted(keys, key=lambda k: stable_hash(k, seed))
    n_val = int(round(len(ranked) * val_frac))
    if len(ranked) > 1:
        n_val = min(max(n_val, 1), len(ranked) - 1)
    val = set(ranked[:n_val])
    return [k for k in keys if k not in val], [k for k in keys if k in val]


def signature_text(signature: dict[str, Any]) -> str:
    """What a cached fold result was made from, as text to compare: a fold trained for other data or other settings
    is never taken for this run's (the classifier's out-of-fold logits, the segmenter's fold networks)."""
    return json.dumps(signature, sort_keys=True, default=str)


def files_stamp(root: str | os.PathLike[str]) -> str:
    """A digest of every file under ``root`` (its path there, size and modification time; hidden folders left out):
    what a signature holds so that data corrected in place is not taken for the data a cached result was made from
    (masks re-exported into the same folder kept a segmenter's fold networks: the review of a session-49 fix)."""
    base = Path(root)
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_training_state(path: Path) -> dict[str, Any]:
    """A run's resume state, never unpickled beyond tensors and plain data; a damaged or foreign file is a ValueError in
    one line (a session-47 audit: random bytes, an empty file or a pickle ended in a traceback, torch's own message
    inviting the user to load it with weights_only=False)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch's reader raises on bytes it cannot take
        raise ValueError(f"{path}: not a resume state this station wrote ({type(exc).__name__}); "
                         "drop --resume or use a new --out") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a resume state this station wrote; drop --resume or use a new --out")
    return state


ProgressListener = Callable[[str, int, int], None]  # (task, done, total)
_listeners: list[ProgressListener] = []


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Also send every training bar's position to ``listener`` while the block runs.

    The station's ``retrain`` command runs a training in its own process and forwards these to
    the GUI as JSON lines; a quiet bar (no terminal output) still reports.
    """
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class Progress:
    """A tqdm bar with an ETA that also works when stdout is not a terminal (logs, CI)."""

    def __init__(self, total: int, desc: str, disable: bool = False, initial: int = 0) -> None:
        """``initial``: steps done before (a resumed run); the ETA then counts only this run's pace."""
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, mininterval=1.0, initial=initial)
        self.start = time.monotonic()
        self.done, self.total, self.desc = initial, total, desc  # counted here: a disabled tqdm bar keeps n at 0
        self._notify()

    def update(self, n: int = 1, **postfix: Any) -> None:
        if postfix:
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}, refresh=False)
        self.bar.update(n)
        self.done += n
        self._notify()

    def _notify(self) -> None:
        for listener in list(_listeners):
            listener(self.desc, self.done, self.total)

    def close(self) -> None:
        self.bar.close()


def batched(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def command_line() -> str:
    """The command this process runs, as a person would type it (for cards and records)."""
    import sys

    from inference.shell_words import shell_join
    on_main = Path(sys.argv[0]).name == "main.py"
    return "python main.py " + shell_join(sys.argv[1:]) if on_main else shell_join(sys.argv)
