"""The ``retrain --progress-json`` process as a caller sees it: its command line and its events.

Retraining runs in a separate process (``python main.py retrain FAMILY --progress-json``, the database URL in its environment)
so that no caller, above all the GUI, ever imports torch or waits on a training. The process
prints one JSON object per line on stdout; this module turns each line into a frozen event.
Anything else it prints (warnings, progress bars of libraries) is not an event and is ignored.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from app.services.child_command import ChildCommand, station_command


@dataclass(frozen=True)
class RetrainStage:
    stage: str            # export | train | compare | refit | domain | register
    message: str
    version: str = ""     # the register stage's: the name of the version being registered ("" where not said)


@dataclass(frozen=True)
class RetrainProgress:
    stage: str
    done: int
    total: int
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


@dataclass(frozen=True)
class RetrainDone:
    version_id: int
    name: str
    family: str
    path: str
    activated: bool
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)
    comparison: dict[str, Any] = field(default_factory=dict, compare=False)   # held-out scores, new vs parent
    notes: tuple[str, ...] = ()   # what the person who asked must know of the run (epochs asked for and not used)


@dataclass(frozen=True)
class RetrainError:
    message: str
    # a refusal's figures: the held-out scores and the simple answers the new version lost to
    comparison: dict[str, Any] = field(default_factory=dict, compare=False)
    # the command declined its input (too few reviewed labels, a name taken, no candidate to fit): nothing broke and
    # nothing changed, so the window says "Not retrained", not "Retraining failed" (seen under Xvfb, session 41)
    not_retrained: bool = False


@dataclass(frozen=True)
class RetrainCancelled:
    pass


RetrainEvent = Union[RetrainStage, RetrainProgress, RetrainDone, RetrainError, RetrainCancelled]


def retrain_argv(db_url: str, family: str, epochs: int | None = None, version: str | None = None,
                 keep_if_worse: bool = False) -> ChildCommand:
    """The command that retrains ``family`` on the reviewed labels of ``db_url`` (``epochs``: None
    lets the command choose; ``version``: a version routing rules name, retrained on its own images;
    ``keep_if_worse``: a classifier that loses to the best simple answer is registered all the same, after an
    inspector read the refusal's figures); the URL travels in the child's environment."""
    args = ["retrain", family, "--progress-json"]
    if epochs is not None:
        args += ["--epochs", str(int(epochs))]
    if version is not None:
        args += ["--version", version]
    if keep_if_worse:
        args.append("--keep-if-worse")
    return station_command(db_url, *args)


# The classifier check's refusal, as the retrain command says it: REFUSED + the verdict + NOT_REGISTERED.
REFUSED = "refused: "
NOT_REGISTERED = "; nothing was registered (--keep-if-worse registers it anyway)"


def refusal_message(verdict: str) -> str:
    return f"{REFUSED}{verdict}{NOT_REGISTERED}"


def is_refusal(event: "RetrainError") -> bool:
    """Whether an error event is the classifier check's refusal (the version lost to the best simple answer; its
    figures travel with it), not a failure."""
    simple = event.comparison.get("simple_answers")
    return event.message.startswith(REFUSED) and isinstance(simple, dict)


def refusal_verdict(event: "RetrainError") -> str:
    """The verdict a refusal's message carries, without the command-line advice around it."""
    return event.message.removeprefix(REFUSED).removesuffix(NOT_REGISTERED)


def pooled_figures(compared: Any) -> Mapping[str, Any] | None:
    """The classifier check's figures on every reviewed label (ADR 0072) in a held-out comparison: its "pooled"
    block, with the new version's and the best simple answer's figures; None where the comparison holds none."""
    simple = compared.get("simple_answers") if isinstance(compared, Mapping) else None
    pooled = simple.get("pooled") if isinstance(simple, Mapping) else None
    if isinstance(pooled, Mapping) and isinstance(pooled.get("new"), Mapping) and isinstance(pooled.get("simple"), Mapping):
        return pooled
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _eta(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def parse_event(line: str | bytes) -> RetrainEvent | None:
    """The event one stdout line holds; None for a line that is not one (a warning, a blank line,
    an object of an unknown kind or with missing fields)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    kind = obj.get("event")
    if kind == "stage" and isinstance(obj.get("stage"), str):
        return RetrainStage(obj["stage"], str(obj.get("message") or ""), str(obj.get("version") or ""))
    if kind == "progress":
        done, total = _int(obj.get("done")), _int(obj.get("total"))
        if done is None or total is None:
            return None
        return RetrainProgress(str(obj.get("stage") or "train"), done, total, _eta(obj.get("eta_s")))
    if kind == "done":
        version_id = _int(obj.get("version_id"))
        if version_id is None:
            return None
        metrics, comparison, notes = obj.get("metrics"), obj.get("comparison"), obj.get("notes")
        return RetrainDone(version_id, str(obj.get("name") or ""), str(obj.get("family") or ""),
                           str(obj.get("path") or ""), bool(obj.get("activated")),
                           metrics if isinstance(metrics, dict) else {},
                           comparison if isinstance(comparison, dict) else {},
                           tuple(str(n) for n in notes if n) if isinstance(notes, list) else ())
    if kind == "error":
        comparison = obj.get("comparison")
        return RetrainError(str(obj.get("message") or "retraining failed"), comparison if isinstance(comparison, dict) else {},
                            obj.get("not_retrained") is True)
    if kind == "cancelled":
        return RetrainCancelled()
    return None
