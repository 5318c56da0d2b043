"""``main.py db upgrade|current``: one line of output, ``error: …`` and status 2 on bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from database.migrate import head_revision


def test_current_then_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    (tmp_path / "station.sqlite").touch()  # an empty file: no schema yet
    assert main(["db", "current", "--db", url]) == 0
    assert "revision (none) (empty" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", url]) == 0
    assert f"revision {head_revision()} (head)" in capsys.readouterr().out
    assert main(["--db", url, "db", "current"]) == 0
    assert "(up to date)" in capsys.readouterr().out


def test_default_database_lives_in_the_data_folder(_private_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (_private_home / "station.sqlite").is_file()


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_corrupt_file_gives_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["db", command, "--db", f"sqlite:///{bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is not a database or is damaged" in err[0]


def test_unreachable_server_gives_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", "postgresql+psycopg://u:pw@127.0.0.1:1/station"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the database 'station' on 127.0.0.1:1")


def test_current_on_a_file_that_does_not_exist_says_so_and_creates_nothing(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a session-44 CLI probe: ``db current`` ("without changing anything") on a mistyped path answered
    "revision (none) (empty …)", exit 0, and left a new folder and an empty database file there."""
    path = tmp_path / "nodir" / "x.sqlite"
    assert main(["db", "current", "--db", f"sqlite:///{path}"]) == 2
    assert f"no database at {path} (nothing was created" in capsys.readouterr().err
    assert not (tmp_path / "nodir").exists()
    # db sweep-maps, even --dry-run, created the file and then failed on its missing tables (a session-47 audit)
    typo = tmp_path / "typo.sqlite"
    assert main(["db", "sweep-maps", "--dry-run", "--db", f"sqlite:///{typo}"]) == 2
    assert f"no database at {typo} (nothing was created" in capsys.readouterr().err
    assert not typo.exists()


def test_a_database_named_from_home_is_the_one_in_home(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A session-46 probe: ``--db sqlite:///~/line3.sqlite`` was checked at ~/line3.sqlite but opened (created
    empty) at ./~/line3.sqlite, and a child process started elsewhere read a third file: the labels seemed gone."""
    from app.services.child_command import absolute_sqlite

    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    assert main(["db", "upgrade", "--db", "sqlite:///~/line3.sqlite"]) == 0
    out = capsys.readouterr().out
    assert f"a new, empty database was created at {home / 'line3.sqlite'}" in out
    assert main(["db", "current", "--db", "sqlite:///~/line3.sqlite"]) == 0
    assert "(up to date)" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", "sqlite:///~/line3.sqlite"]) == 0
    assert "created" not in capsys.readouterr().out  # it was there
    assert not (elsewhere / "~").exists() and (home / "line3.sqlite").is_file()
    assert absolute_sqlite("sqlite:///~/line3.sqlite") == f"sqlite:///{home / 'line3.sqlite'}"
    # the file earlier versions made in a folder named "~" is named, not passed over (the session-46 review)
    (elsewhere / "~").mkdir()
    (home / "line3.sqlite").rename(elsewhere / "~" / "line3.sqlite")
    assert main(["db", "upgrade", "--db", "sqlite:///~/line3.sqlite"]) == 2  # (it would make a new, empty one)
    err = capsys.readouterr().err
    assert f"earlier versions opened it as {elsewhere / '~' / 'line3.sqlite'}" in err and "move that file" in err
    assert not (home / "line3.sqlite").exists()


def test_current_reads_an_older_file_without_changing_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A session-46 probe: ``db current`` ("without changing anything") turned an older file's rollback journal into
    WAL through the station's connection pragmas (its bytes changed)."""
    import hashlib
    import sqlite3

    from sqlalchemy import create_engine

    from database import migrate as mig
    from database import open_database

    path = tmp_path / "old.sqlite"
    url = f"sqlite:///{path}"
    open_database(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        mig.downgrade(conn, "0012_inspector_flag")
    engine.dispose()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["db", "current", "--db", url]) == 0
    assert "older than this version's" in capsys.readouterr().out
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "old.sqlite-wal").exists()


def test_sweep_maps_removes_the_maps_no_answer_refers_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A session-46 probe: a line writing every part to one file name left a map per part (its answers are deleted
    when the bytes change, its maps never): 5 parts, 5 maps, 1 referenced. ``db sweep-maps`` removes the others,
    old enough that no worker is about to refer to them; ``--dry-run`` only counts."""
    import os

    import numpy as np

    from app.services.artifacts import store_for
    from database import open_database
    from database.dto import FileEntry, PredictionIn

    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = open_database(url)
    store = store_for(url)
    refs = [store.put_map(np.full((4, 4), float(i), np.float32)) for i in range(5)]
    folder = db.folders.add(str(tmp_path / "line"))
    (image,) = db.images.sync(folder.id, [FileEntry("cam1_latest.png", 1, 0)]).added_ids
    version = db.model_versions.register("anomaly", "a1", "/m", activate=True)
    db.predictions.upsert_many([PredictionIn(image, version.id, anomaly_score=0.2, anomaly_map_ref=refs[-1])])
    db.close()
    old = 3 * 86400
    for ref in refs[:4]:
        path = store.root / ref
        os.utime(path, (path.stat().st_atime - old, path.stat().st_mtime - old))
    fresh = store.put_map(np.full((4, 4), 9.0, np.float32))   # written now, its answer not landed yet
    assert main(["db", "sweep-maps", "--db", url, "--dry-run"]) == 0
    assert "would remove 4 map files" in capsys.readouterr().out
    assert all((store.root / r).is_file() for r in refs)
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "removed 4 map files" in capsys.readouterr().out
    assert [(store.root / r).is_file() for r in refs] == [False, False, False, False, True]
    assert (store.root / fresh).is_file()


def test_current_reads_a_wal_file_on_read_only_media(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The session-46 review: a station's file is WAL, and a read-only open cannot make its -shm on read-only media
    ("unable to open database file"); the revision is then read from the file as it stands."""
    import database.engine as engine
    from database import open_database

    url = f"sqlite:///{tmp_path / 'st.sqlite'}"
    open_database(url).close()
    real = engine._file_revision

    def read_only_media(target, *args, **kwargs):
        if "immutable=1" not in target:
            raise engine.DatabaseError("cannot open the database file (unable to open database file).")
        return real(target, *args, **kwargs)
    monkeypatch.setattr(engine, "_file_revision", read_only_media)
    assert main(["db", "current", "--db", url]) == 0
    assert "(up to date)" in capsys.readouterr().out


def test_sweep_maps_sweeps_only_folders_this_database_alone_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The session-46 review: the sweep removed maps another database still used: two files of one stem share a maps
    folder beside them, two projects may share a maps folder, the INSPECTION_STATION_ARTIFACTS folder is every
    database's; and a map stored again (a dedupe) kept its old time, so the sweep took it from its new answer."""
    import os
    import shutil

    import numpy as np

    from app.services.artifacts import ArtifactStore, store_for
    from app.services.project_settings import save_maps_folder
    from database import open_database

    def aged(store_root: Path, ref: str) -> None:
        path = store_root / ref
        os.utime(path, (path.stat().st_atime - 3 * 86400, path.stat().st_mtime - 3 * 86400))

    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    open_database(url).close()
    ref = store_for(url).put_map(np.ones((4, 4), np.float32))
    aged(store_for(url).root, ref)
    shutil.copy(tmp_path / "station.sqlite", tmp_path / "station.db")   # a second database of the same stem
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "not swept (another database file" in capsys.readouterr().err and (store_for(url).root / ref).is_file()
    (tmp_path / "station.db").unlink()

    store = store_for(url)
    store.put_map(np.ones((4, 4), np.float32))   # stored again: in use, touched
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "removed 0 map files" in capsys.readouterr().out and (store.root / ref).is_file()

    shared = tmp_path / "shared"
    shared.mkdir()
    other = ArtifactStore(shared).put_map(np.full((4, 4), 7.0, np.float32))   # another project's map there
    aged(shared, other)
    db = open_database(url)
    db.project_settings.put("maps_folder", str(shared))   # saved by an older version: its marker names no project
    db.close()
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "its marker does not name this project" in capsys.readouterr().err and (shared / other).is_file()
    db = open_database(url)
    save_maps_folder(db, str(shared))    # saved again in Settings: the marker names this project
    db.close()
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert not (shared / other).is_file()  # (only this project writes there now, as the person said by saving it)

    monkeypatch.setenv("INSPECTION_STATION_ARTIFACTS", str(tmp_path / "override"))
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "INSPECTION_STATION_ARTIFACTS: every database" in capsys.readouterr().err


def test_sweep_maps_removes_the_maps_of_answers_whose_image_row_is_gone(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A session-52 audit: the rows of images deleted from a followed folder, once removed by hand (``DELETE FROM
    images WHERE missing`` in the sqlite3 shell, whose foreign keys are off) or by an older version, left their
    answers behind, and ``db sweep-maps`` kept those answers' maps for good ("removed 0 map files"). An answer whose
    image row is gone can never be shown again: its map goes. An image only marked missing keeps its row, answers and
    maps (its file may come back, and shows them again)."""
    import os
    import sqlite3

    import numpy as np

    from app.services.artifacts import store_for
    from database import open_database
    from database.dto import FileEntry, PredictionIn

    path = tmp_path / "station.sqlite"
    url = f"sqlite:///{path}"
    db = open_database(url)
    store = store_for(url)
    refs = [store.put_map(np.full((4, 4), float(i), np.float32)) for i in range(3)]
    folder = db.folders.add(str(tmp_path / "line"))
    names = ["kept.png", "missing.png", "removed.png"]
    ids = db.images.sync(folder.id, [FileEntry(n, 1, 0) for n in names]).added_ids
    version = db.model_versions.register("anomaly", "a1", "/m", activate=True)
    db.predictions.upsert_many([PredictionIn(i, version.id, anomaly_score=0.2, anomaly_map_ref=r)
                                for i, r in zip(ids, refs, strict=True)])
    assert db.images.sync(folder.id, [FileEntry("kept.png", 1, 0)]).missing == 2   # two files deleted
    db.close()
    raw = sqlite3.connect(path)   # the shell's foreign keys are off: the answer of the row removed stays
    raw.execute("DELETE FROM images WHERE rel_path = 'removed.png'")
    raw.commit()
    raw.close()
    for ref in refs:
        p = store.root / ref
        os.utime(p, (p.stat().st_atime - 3 * 86400, p.stat().st_mtime - 3 * 86400))
    assert main(["db", "sweep-maps", "--db", url]) == 0
    assert "removed 1 map file," in capsys.readouterr().out
    assert [(store.root / r).is_file() for r in refs] == [True, True, False]


def test_upgrade_of_an_older_database_says_from_which_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A session-52 audit: opening a 0014 database migrated it to head and said only "schema at revision … (head)" (the
    window: an INFO log line), so nobody learnt that the stations still on the older version would be refused at their
    next start. ``open_database`` now reports the change as data and ``db upgrade`` says it."""
    from database import open_database
    from database.engine import Migration
    from tests.database.old_rows import old_labelled_image

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old_labelled_image(url, "0014_routed_promotion", "a.png", "scratch", "accepted")
    assert main(["db", "upgrade", "--db", url]) == 0
    out = capsys.readouterr().out
    assert (f"The database was upgraded from schema 0014_routed_promotion to {head_revision()}; stations running an "
            "older version must be updated to open it.") in out
    with open_database(url) as db:
        assert db.migration is None   # nothing to do the second time
    old_labelled_image(url2 := f"sqlite:///{tmp_path / 'old2.sqlite'}", "0020_label_watermark", "a.png", "x", "accepted")
    with open_database(url2) as db:
        assert db.migration == Migration("0020_label_watermark", head_revision())
    with open_database(f"sqlite:///{tmp_path / 'new.sqlite'}") as db:
        assert db.migration == Migration(None, head_revision())   # an empty database given its schema: no upgrade
    assert main(["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'new2.sqlite'}"]) == 0
    assert "upgraded" not in capsys.readouterr().out
