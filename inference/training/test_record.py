"""``evaluate … --record``: a frozen test split's figures written into a model card, one way for every family.

Why one home: the classifier counted each recording and kept the card's other figures, the anomaly command replaced
``metrics`` whole (its cross-validation figures gone, no count; a session-45 probe), and nothing checked what was
scored: the classifier's own training images were recorded as its test figure and shown as such in the station.
docs/protocol.md: a test split is scored once per shipped model, after every choice is fixed, and the count shows it.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RecordRefused(ValueError):
    """The scored images are ones the model learnt from or was chosen on: they give no test figure."""


def learnt_from(card: Mapping[str, Any], scored: Path) -> str | None:
    """What ``scored`` is to the model when it is its training folder (the card's ``data.root``), that folder's
    ``train/``, or its ``val/`` (the split epochs or thresholds were chosen on); None otherwise, or when the card
    names no folder on this machine."""
    data = card.get("data")
    root = data.get("root") if isinstance(data, Mapping) else None
    if not isinstance(root, str) or not root:
        return None
    base = Path(root).expanduser()
    if not base.is_dir():
        return None
    base, scored = base.resolve(), Path(scored).resolve()
    parts = {base: "the folder it was trained from", base / "train": "its training images",
             base / "val": "the split it was chosen on"}
    split = data.get("split") if isinstance(data, Mapping) else None
    if isinstance(split, str) and split.rstrip().endswith("and test/"):  # the classifier's trainer, given no val/,
        # chose on test/ and says so in its card (the session-45 review); an anomaly model's test/ is its frozen one
        parts[base / "test"] = "the split it was chosen on (the tree has no val/)"
    return parts.get(scored)


def record_test(model_dir: Path, figures: Mapping[str, Any], scored: Path, command: str) -> int:
    """Write ``figures`` as the card's ``metrics.test`` (the other metrics kept), with the command and how many
    times a test figure has been recorded; returns that count. ``RecordRefused`` when ``scored`` is data the
    model learnt from or was chosen on (nothing written)."""
    from inference.checkpoints import read_json, save_card

    card = read_json(Path(model_dir) / "card.json")
    why = learnt_from(card, scored)
    if why is not None:
        raise RecordRefused(f"not recorded: {scored} is {why} (the card's data.root); a test figure comes from a "
                            "frozen split the model never saw; nothing was written into the card")
    metrics = dict(card.get("metrics") or {})
    earlier = metrics.get("test")
    times = int(earlier.get("times_recorded", 0)) if isinstance(earlier, Mapping) else 0
    metrics["test"] = {**figures, "command": command, "times_recorded": times + 1}
    save_card(model_dir, {**card, "metrics": metrics})
    return times + 1


def recorded_line(model_dir: Path, times: int) -> str:
    """What ``--record`` says it did. A station that registered the folder keeps the card it read then (a registered
    version is what was registered; ADR 0062): the new figure shows there only for a copy of the folder registered as a new version (a
    session-45 probe found the Models dialog still showing the old figure after "written into card.json")."""
    return (f"test figures written into {Path(model_dir) / 'card.json'} (metrics.test; recorded {times} time(s)); a "
            "station that registered this folder before shows the figures it read then: add a copy of the folder as "
            "a new version to show these")

