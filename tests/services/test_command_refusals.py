"""Commands refuse bad input in one line that names the real fault (session-48 probes)."""
from __future__ import annotations

from pathlib import Path

from app.cli import main


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"


def test_the_worker_refuses_a_batch_size_of_zero_and_a_stale_time_below_zero(tmp_path: Path, capsys) -> None:
    """Both were taken and the worker exited 0: a batch of 0 claimed nothing, a negative time took every other
    worker for stale."""
    assert main(["worker", "--once", "--batch-size", "0", "--db", _db(tmp_path)]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert main(["worker", "--once", "--stale-after", "-1", "--db", _db(tmp_path)]) == 2
    assert "--stale-after must be more than 0 seconds" in capsys.readouterr().err


def test_import_of_a_path_that_is_not_there_or_not_a_folder_says_so(tmp_path: Path, capsys) -> None:
    """It said "no known dataset layout found; give --format" of a mistyped path or of a file."""
    assert main(["import", str(tmp_path / "nope"), "--db", _db(tmp_path)]) == 2
    assert f"{tmp_path / 'nope'}: not found" in capsys.readouterr().err
    (tmp_path / "img.png").write_bytes(b"x")
    assert main(["import", str(tmp_path / "img.png"), "--db", _db(tmp_path)]) == 2
    assert "not a folder; give the dataset's folder" in capsys.readouterr().err


def test_routing_set_on_a_folder_says_it_is_a_folder(tmp_path: Path, capsys) -> None:
    """It said "no such file" of a folder that is there."""
    (tmp_path / "rules").mkdir()
    assert main(["routing", "set", str(tmp_path / "rules"), "--db", _db(tmp_path)]) == 2
    assert "is a folder; give the rules' JSON file" in capsys.readouterr().err
