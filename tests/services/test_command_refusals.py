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


def test_commands_that_need_a_project_refuse_a_database_file_that_is_not_there(tmp_path: Path, capsys) -> None:
    """A mistyped --db made a new, empty database there, then said only "no folder indexed" / "no indexed images" /
    "nothing to export": read as a project that had lost its labels, with a stray file left behind (a session-48
    audit). The worker sat idle on it for good."""
    typo = tmp_path / "projct" / "station.sqlite"
    url = f"sqlite:///{typo.as_posix()}"
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "x.png").write_bytes(b"x")
    for argv in (["export", "--out", str(tmp_path / "out")], ["import", str(tmp_path / "ds")],
                 ["audit", "--out", str(tmp_path / "a.csv")], ["worker", "--once"],
                 ["retrain", "classifier", "--out", str(tmp_path / "models")]):
        assert main([*argv, "--db", url]) == 2, argv
        assert f"no database at {typo} (nothing was created; check --db" in capsys.readouterr().err, argv
    for argv in (["models", "list"], ["routing", "show"], ["classes", "list"]):
        assert main([*argv, "--db", url]) == 2, argv   # the review of this fix: each made an empty project there
        assert f"no database at {typo} (nothing was created; check --db" in capsys.readouterr().err, argv
    assert not typo.parent.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()
    typo.parent.mkdir()
    assert main(["classes", "add", "crack", "--db", url]) == 0   # writing a list starts a project: said
    assert f"a new, empty project database was created at {typo.resolve()}" in capsys.readouterr().out


def test_prelabel_starts_a_project_on_a_new_database_file_and_says_so(tmp_path: Path, capsys) -> None:
    """Starting a project is what ``prelabel`` of a folder is for: its database is made, and said (only the migration
    was logged). A folder that is not there is refused before any database is made or migrated."""
    db = tmp_path / "new" / "station.sqlite"
    url = f"sqlite:///{db.as_posix()}"
    assert main(["prelabel", str(tmp_path / "nope"), "--db", url]) == 2
    assert f"{tmp_path / 'nope'}: folder not found" in capsys.readouterr().err
    assert not db.parent.exists()
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert main(["prelabel", str(folder), "--db", url]) == 0
    assert db.exists()
    assert f"a new, empty project database was created at {db.resolve()}" in capsys.readouterr().out
    assert main(["prelabel", str(folder), "--db", url]) == 0
    assert "a new, empty project database" not in capsys.readouterr().out


def test_a_refused_class_or_routing_edit_and_a_mistyped_environment_database_leave_no_project(tmp_path: Path, capsys,
                                                                                            monkeypatch) -> None:
    """The review of a session-49 fix: ``classes remove``, a refused ``classes add a/b`` and a ``routing set`` of a file
    that is no routing each made the mistyped database first; a mistyped INSPECTION_STATION_DB passed as the station's
    own database for ``classes list``."""
    typo = tmp_path / "typo" / "station.sqlite"
    url = f"sqlite:///{typo.as_posix()}"
    (tmp_path / "bad.json").write_text("not json")
    (tmp_path / "named.json").write_text('{"rules": [{"pattern": "a/*", "families": ["classifier"], '
                                         '"versions": {"classifier": "nope-v9"}}]}')
    for argv in (["classes", "remove", "crack"], ["classes", "add", "a/b"], ["routing", "set", str(tmp_path / "bad.json")],
                 ["classes", "add", "Crazing"],   # the bundled classifier's "crazing": refused once the list is read
                 ["routing", "set", str(tmp_path / "named.json")]):   # a version the new project lacks
        assert main([*argv, "--db", url]) == 2, argv
        capsys.readouterr()
    monkeypatch.setenv("INSPECTION_STATION_DB", url)
    assert main(["classes", "list"]) == 2
    assert f"no database at {typo}" in capsys.readouterr().err
    assert not typo.parent.exists()


def test_a_fresh_station_lists_the_bundled_classifiers_classes_before_its_own(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    """The review of a session-49 fix: on a new station ``classes add blowhole`` saved a list of that one class, the
    bundled classifier's classes left out (they count only once the bundled models are registered, which ``classes``
    did not do), against the README: until a project saves its own list it is the active classifier's."""
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    assert main(["classes", "list"]) == 0
    listed = capsys.readouterr().out
    assert main(["classes", "add", "blowhole"]) == 0
    added = capsys.readouterr().out
    assert "no list and no classifier model" not in listed and "crazing" in listed
    assert "crazing" in added and "blowhole" in added


def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """A session-51 audit: `models list | head -1` and `routing show --json | head -1` sometimes ended in
    "Traceback … BrokenPipeError" on stderr; the reader is gone before the first write here, every time."""
    import os
    import subprocess
    import sys

    assert main(["classes", "add", "crack", "--db", _db(tmp_path)]) == 0
    root = Path(__file__).resolve().parents[2]
    for argv in (["models", "list"], ["routing", "show", "--json"]):
        read, write = os.pipe()
        os.close(read)   # a reader that read nothing and went away
        try:
            proc = subprocess.run([sys.executable, str(root / "main.py"), "--db", _db(tmp_path), *argv], stdout=write,
                                  stderr=subprocess.PIPE, text=True, cwd=root, timeout=120)
        finally:
            os.close(write)
        assert proc.returncode == 141 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, \
            (argv, proc.returncode, proc.stderr)
