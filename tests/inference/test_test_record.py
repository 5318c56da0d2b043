"""What ``evaluate … --record`` refuses to write as a test figure (inference/training/test_record.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.training.test_record import RecordRefused, learnt_from, record_test


def _tree(root: Path, parts: tuple[str, ...]) -> Path:
    for part in parts:
        (root / part / "crack").mkdir(parents=True)
    return root


def test_the_folders_a_model_learnt_from_or_was_chosen_on_are_refused(tmp_path: Path) -> None:
    with_val = _tree(tmp_path / "a", ("train", "val", "test"))
    card = {"data": {"root": str(with_val)}}
    assert learnt_from(card, with_val / "train") == "its training images"
    assert learnt_from(card, with_val / "val") == "the split it was chosen on"
    assert learnt_from(card, with_val) == "the folder it was trained from"
    assert learnt_from(card, with_val / "test") is None  # the frozen split
    # the session-45 review: without val/ the trainer chose its epochs and threshold on test/
    no_val = _tree(tmp_path / "b", ("train", "test"))
    chose_on_test = {"data": {"root": str(no_val), "split": f"{no_val}: train/ and test/"}}
    assert learnt_from(chose_on_test, no_val / "test").startswith("the split it was chosen on")
    # an anomaly model's category (train/good, test/) never has val/: its test/ is the frozen split
    assert learnt_from({"data": {"root": str(no_val), "holdout_good": 3}}, no_val / "test") is None
    assert learnt_from({"data": {"root": "a folder named in words"}}, no_val / "test") is None


def test_a_refused_record_writes_nothing(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t", ("train", "test"))
    model = tmp_path / "m"
    model.mkdir()
    card = {"data": {"root": str(tree), "split": f"{tree}: train/ and test/"}, "metrics": {"cv": {"accuracy": 0.9}}}
    (model / "card.json").write_text(json.dumps(card))
    with pytest.raises(RecordRefused, match="chosen on"):
        record_test(model, {"accuracy": 1.0}, tree / "test", "python main.py evaluate …")
    assert json.loads((model / "card.json").read_text()) == card
