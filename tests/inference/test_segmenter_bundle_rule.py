"""The bundle script's rule runs the way its results file says (benchmarks/segmenter_bundle.py build).

Why: which way a tie goes is fixed before a run (a simpler candidate replaces unless the old bundle
wins; a more complex one must win itself); a flipped rule would ship a bundle the protocol refused.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks.segmenter_bundle import build


def _cards(tmp_path: Path, new_iou: float, new_detected: int, new_fa: float) -> argparse.Namespace:
    trained, old = tmp_path / "trained", tmp_path / "old"
    trained.mkdir()
    old.mkdir()
    row = {"iou": new_iou, "niou": new_iou, "pd": new_detected / 424, "fa": new_fa, "detected": new_detected,
           "images": 341, "targets": 424}
    (trained / "card.json").write_text(json.dumps({"cross_validation": {"chosen_additions": ["mirror"],
                                                                        "variants": {"mirror": row}}}))
    (old / "card.json").write_text(json.dumps({"expected_on_new_data": {"iou": 0.6236, "pd": 379 / 424,
                                                                        "fa": 67.88}}))
    return argparse.Namespace(trained=str(trained), old=str(old), out=str(tmp_path / "out"), hardware="test",
                              results="r.md", old_name=None, candidate_must_win=True)


@pytest.mark.parametrize("iou, detected, fa", [
    (0.6240, 379, 67.88),  # IoU up by less than the tolerance, Fa the same: a tie, the old bundle stays
    (0.6400, 378, 50.0),   # a detection lost: never a win
])
def test_a_candidate_that_must_win_and_does_not_is_not_built(tmp_path: Path, iou: float, detected: int,
                                                            fa: float) -> None:
    args = _cards(tmp_path, iou, detected, fa)
    assert build(args) == 3
    assert not (tmp_path / "out").exists()


def test_the_same_tie_replaces_when_the_old_bundle_must_win(tmp_path: Path) -> None:
    """The default orientation (a simpler candidate): a tie is not the old bundle's win, so the build
    goes past the rule (here it stops later, at the domain files this test does not write)."""
    args = _cards(tmp_path, 0.6240, 379, 67.88)
    args.candidate_must_win = False
    with pytest.raises(FileNotFoundError):
        build(args)


def test_a_candidate_that_wins_goes_past_the_rule(tmp_path: Path) -> None:
    args = _cards(tmp_path, 0.6400, 380, 70.0)
    with pytest.raises(FileNotFoundError):  # past the rule: it stops at the domain files not written here
        build(args)
