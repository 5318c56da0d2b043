"""Folder paths as each machine reaches them (ADR 0065): a share stored as one machine's path is read,
re-opened and pre-labelled at another machine that mounts it elsewhere, as the same folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from database.path_map import ENV, PathMap, PathMapError


def test_prefixes_map_both_ways_on_separator_boundaries() -> None:
    m = PathMap.parse("/mnt/parts=Z:\\parts; /mnt/parts/line9 = /data/line9\n")
    assert m.local("/mnt/parts/line3") == "Z:\\parts\\line3"
    assert m.stored("Z:\\parts\\line3") == "/mnt/parts/line3"
    assert m.local("/mnt/parts/line9/a") == "/data/line9/a"      # the longest stored prefix wins
    assert m.stored("/data/line9/a") == "/mnt/parts/line9/a"
    assert m.local("/mnt/parts2/x") == "/mnt/parts2/x"           # not under /mnt/parts
    assert m.local("/mnt/parts") == "Z:\\parts" and m.stored("/elsewhere") == "/elsewhere"
    # a side that is a whole drive or the root (a session-46 probe: "Z:\\=/mnt/share" gave "/mnt/shareline3", and
    # the share was registered again without its labels)
    drive = PathMap.parse("Z:\\=/mnt/share")
    assert drive.local("Z:\\line3\\lot1") == "/mnt/share/line3/lot1" and drive.stored("/mnt/share/line3") == "Z:\\line3"
    assert drive.local("Z:\\") == "/mnt/share"
    back = PathMap.parse("/mnt/parts=Z:\\")
    assert back.local("/mnt/parts/line3") == "Z:\\line3" and back.stored("Z:\\line3") == "/mnt/parts/line3"
    root = PathMap.parse("/=/mnt/root")
    assert root.local("/home/x") == "/mnt/root/home/x" and root.stored("/mnt/root/home/x") == "/home/x"


@pytest.mark.parametrize("text", ["/mnt/parts", "=Z:\\parts", "/mnt/parts="])
def test_a_broken_map_is_refused_with_its_entry(text: str) -> None:
    with pytest.raises(PathMapError, match="STORED=LOCAL"):
        PathMap.parse(text)


def test_another_machine_reads_and_reopens_the_same_folder(url, tmp_path: Path, monkeypatch) -> None:
    from app.services.indexing import index_folder
    from database.dto import LabelChange
    from database.engine import open_database
    from database.states import ReviewState
    from tests.worker.helpers import good_images

    monkeypatch.delenv(ENV, raising=False)
    db = open_database(url)
    try:
        good_images(tmp_path / "share" / "line3", 3)
        first = index_folder(db, tmp_path / "share" / "line3")   # station A: the share at share/
        image = db.images.query()[0]
        db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="crazing"), "ann")

        shutil.move(str(tmp_path / "share"), str(tmp_path / "mnt-b"))  # station B mounts it at mnt-b/
        monkeypatch.setenv(ENV, f"{tmp_path / 'share'}={tmp_path / 'mnt-b'}")
        [folder] = db.folders.list()
        assert folder.root_path == str(tmp_path / "mnt-b" / "line3")   # as this machine reaches it
        assert db.images.path_of(image.id) == str(tmp_path / "mnt-b" / "line3" / image.rel_path)
        again = index_folder(db, tmp_path / "mnt-b" / "line3")       # opened here: the same folder, nothing moved
        assert again.folder_id == first.folder_id and not again.added and not again.missing
        assert len(db.folders.list()) == 1 and db.labels.current(image.id).class_name == "crazing"
    finally:
        db.close()



def test_a_broken_map_in_the_environment_stops_a_command_with_its_reason(monkeypatch, capsys, tmp_path) -> None:
    from app.cli import main
    from database import open_database
    open_database(f"sqlite:///{tmp_path / 's.sqlite'}").close()   # a project that is there (a missing one is refused)
    monkeypatch.setenv(ENV, "/mnt/parts")
    assert main(["models", "list", "--db", f"sqlite:///{tmp_path / 's.sqlite'}"]) == 2
    assert "is not STORED=LOCAL" in capsys.readouterr().err
