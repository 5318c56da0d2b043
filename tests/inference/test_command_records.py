"""The command a card records is the one this process runs, as typed in the station's shell: one home,
``inference.training.common.command_line`` over ``inference.shell_words.shell_join``.

Why: the trainers each joined ``sys.argv`` their own way; `train segmenter` recorded "main.py train segmenter …"
(no "python"), `segmenter_cv` quoted "python -m …" as one word, and the rest quoted for a POSIX shell even where the
station is on Windows (a session-53 review)."""
from __future__ import annotations

import sys

import pytest

from inference import shell_words
from inference.training.common import command_line


@pytest.mark.parametrize("windows, data", [(False, "'/data/line 2'"), (True, '"D:/data/line 2"')])
def test_a_command_run_through_main_py_is_recorded_as_typed(monkeypatch: pytest.MonkeyPatch, windows: bool,
                                                          data: str) -> None:
    monkeypatch.setattr(shell_words, "WINDOWS", windows)
    where = "D:/data/line 2" if windows else "/data/line 2"
    monkeypatch.setattr(sys, "argv", ["/opt/station/main.py", "train", "segmenter", "--data", where, "--epochs", "3"])
    assert command_line() == f"python main.py train segmenter --data {data} --epochs 3"


def test_a_module_run_is_recorded_with_its_own_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell_words, "WINDOWS", False)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/tool", "--out", "a b"])
    assert command_line() == "/usr/bin/tool --out 'a b'"


def test_train_segmenter_records_the_command_as_typed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`python main.py train segmenter …` recorded "main.py train segmenter …", no "python" (a session-53 review)."""
    from app.cli import main
    from inference.training import segmenter_train

    seen: list[str] = []

    def fake_train(opts):
        seen.append(opts.command)
        return tmp_path / "final"

    monkeypatch.setattr(shell_words, "WINDOWS", False)
    monkeypatch.setattr(segmenter_train, "require_targets", lambda *a, **k: None)
    monkeypatch.setattr(segmenter_train, "train", fake_train)
    argv = ["train", "segmenter", "--data", str(tmp_path / "frames"), "--out", str(tmp_path / "m")]
    monkeypatch.setattr(sys, "argv", ["main.py", *argv])
    assert main(argv) == 0
    assert seen == [f"python main.py train segmenter --data {tmp_path / 'frames'} --out {tmp_path / 'm'}"]


def test_an_anomaly_refit_records_its_paths_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    """`anomaly_stats` recorded "python -m … --model /models/line 2/anomaly", which a shell reads as other words
    (a session-53 review): its arguments are quoted as every other trainer's. The model's loading and fit are faked:
    only the recorded command is read."""
    import shlex
    import types
    from pathlib import Path

    from inference import checkpoints
    from inference.models.pattern_anomaly import PatternAnomaly
    from inference.training import anomaly_stats, anomaly_train

    monkeypatch.setattr(shell_words, "WINDOWS", False)
    fake = PatternAnomaly.__new__(PatternAnomaly)
    monkeypatch.setattr(checkpoints, "load_model",
                        lambda *a, **k: types.SimpleNamespace(model=fake, card={}, config=None, name="x"))
    monkeypatch.setattr(checkpoints, "save_model", lambda *a, **k: None)
    monkeypatch.setattr(anomaly_train, "good_split", lambda *a, **k: (None, [], [], None))
    monkeypatch.setattr(anomaly_stats, "choose_term", lambda *a, **k: (types.SimpleNamespace(config=None), {}))
    seen: list[str] = []
    monkeypatch.setattr(anomaly_stats, "recalibrated_card", lambda *a: seen.append(a[6]) or {})
    argv = ["--model", "/models/line 2/anomaly", "--data", "/data/line 2"]
    monkeypatch.setattr(sys, "argv", ["inference/training/anomaly_stats.py", *argv])
    anomaly_stats.add_stats(Path(argv[1]), Path(argv[3]), log=lambda s: None)
    assert shlex.split(seen[0]) == ["python", "-m", "inference.training.anomaly_stats", *argv]
