"""Exports handed a hostile or careless destination or database: source images are never deleted.

Each case here once destroyed or leaked data (issue 17): ``--overwrite`` of a folder that held
indexed images next to an ``export.json``, an output inside an indexed folder (indexed back as
new images), and a stored path with ``../`` that made an export copy a file from outside.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services.export import MANIFEST, ExportError, ExportOptions, export_database, export_items
from database import FileEntry, LabelChange, ReviewState, open_database
from tests.services.export_fixtures import H, W, make_items, write_image


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def items(tmp_path: Path):
    return make_items(tmp_path / "src")


def test_stray_manifest_in_an_image_folder_does_not_allow_overwrite(tmp_path: Path, items) -> None:
    images = tmp_path / "src" / "lot1"
    (images / MANIFEST).write_text('{"exported": 3}')
    before = tree(images)
    with pytest.raises(ExportError, match="only a previous export is overwritten"):
        export_items(list(items.values()), images, ExportOptions(overwrite=True))
    assert tree(images) == before


def test_overwrite_refuses_a_previous_export_with_files_added(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    export_items(list(items.values()), out, ExportOptions(formats=("imagefolder", "csv")))
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert "summary.csv" in listed and all((out / f).is_file() for f in listed)
    (out / "imagefolder" / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(ExportError, match=r"holds files the export did not write \(imagefolder/notes.txt\)"):
        export_items(list(items.values()), out, ExportOptions(formats=("csv",), overwrite=True))
    assert tree(out) == before
    (out / "imagefolder" / "notes.txt").unlink()
    export_items(list(items.values()), out, ExportOptions(formats=("csv",), overwrite=True))
    assert not (out / "imagefolder").exists() and (out / "summary.csv").is_file()


def test_overwrite_refuses_an_unparsable_or_foreign_manifest(tmp_path: Path, items) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"x")
    for text in ("{not json", "[1, 2]", json.dumps({"files": ["a.png"]})):
        (out / MANIFEST).write_text(text)
        with pytest.raises(ExportError, match="only a previous export"):
            export_items(list(items.values()), out, ExportOptions(overwrite=True))
        assert (out / "a.png").read_bytes() == b"x"


@pytest.fixture
def station(tmp_path: Path):
    root = tmp_path / "lot1"
    for i, name in enumerate(("a", "b", "c")):
        write_image(root / name, i)
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    folder = db.folders.add(str(root))
    db.images.sync(folder.id, [FileEntry(f"{n}.png", (root / f"{n}.png").stat().st_size, 0, width=W, height=H)
                               for n in ("a", "b", "c")])
    for info in db.images.query():
        db.labels.append(info.id, LabelChange(ReviewState.ACCEPTED, class_name="good"), "ann")
    yield db, root
    db.close()


@pytest.mark.parametrize("where", ["root", "inside"])
def test_output_inside_an_indexed_folder_is_refused(tmp_path: Path, station, where: str) -> None:
    db, root = station
    out = root if where == "root" else root / "exports" / "today"
    before = tree(root)
    with pytest.raises(ExportError, match="inside the indexed folder"):
        export_database(db, out, ExportOptions(overwrite=True))
    assert tree(root) == before


def test_reexport_from_an_indexed_export_folder_keeps_its_images(tmp_path: Path, station) -> None:
    """The reported loss: an export opened in a second station and re-exported onto itself."""
    db, _root = station
    first = tmp_path / "first"
    export_database(db, first, ExportOptions(formats=("imagefolder",)))
    second = open_database(f"sqlite:///{(tmp_path / 'second.sqlite').as_posix()}")
    try:
        folder = second.folders.add(str(first))
        files = [p for p in first.rglob("*.png")]
        second.images.sync(folder.id, [FileEntry(p.relative_to(first).as_posix(), p.stat().st_size, 0,
                                                 width=W, height=H) for p in files])
        one = second.images.query()[0]
        second.labels.append(one.id, LabelChange(ReviewState.ACCEPTED, class_name="good"), "ann")
        before = tree(first)
        with pytest.raises(ExportError, match="inside the indexed folder"):
            export_database(second, first, ExportOptions(formats=("imagefolder",), overwrite=True))
        assert tree(first) == before
    finally:
        second.close()


def test_replacing_an_export_that_holds_an_indexed_folder_is_refused(tmp_path: Path, station) -> None:
    """Found by a session-44 probe: an earlier export's imagefolder/ opened in the station and labelled there, then
    the export replaced ("replace an earlier export"): the indexed folder's images were deleted (the labelled one then
    missing) and new files put in their place, to be indexed as new images."""
    db, _root = station
    first = tmp_path / "ds"
    export_database(db, first, ExportOptions(formats=("imagefolder",)))
    db.folders.add(str(first / "imagefolder"))
    before = tree(first)
    with pytest.raises(ExportError, match="holds the indexed folder"):
        export_database(db, first, ExportOptions(formats=("imagefolder",), overwrite=True))
    assert tree(first) == before


@pytest.mark.parametrize("stored", ["../secret.png", "{outside}"])
def test_a_stored_path_leading_outside_is_refused_and_reported(tmp_path: Path, station, stored: str) -> None:
    db, root = station
    secret = write_image(tmp_path / "secret", 9)
    stored = stored.format(outside=secret.as_posix())
    folder = db.folders.list()[0]
    db.images.sync(folder.id, [FileEntry(stored, secret.stat().st_size, 0, width=W, height=H)], complete=False)
    tampered = next(i for i in db.images.query() if i.rel_path == stored)
    db.labels.append(tampered.id, LabelChange(ReviewState.ACCEPTED, class_name="crack"), "ann")
    out = tmp_path / "out"
    result = export_database(db, out, ExportOptions(formats=("imagefolder", "csv")))
    assert result.exported == 3
    assert any("leads outside the indexed folder" in s and stored in s for s in result.skipped)
    assert not (out / "imagefolder" / "crack").exists()
    secret_bytes = secret.read_bytes()
    assert all(p.read_bytes() != secret_bytes for p in out.rglob("*") if p.is_file())


def test_a_linked_folder_out_of_the_root_is_refused(tmp_path: Path, station) -> None:
    db, root = station
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "x", 7)
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    folder = db.folders.list()[0]
    db.images.sync(folder.id, [FileEntry("link/x.png", 1, 0, width=W, height=H)], complete=False)
    tampered = next(i for i in db.images.query() if i.rel_path == "link/x.png")
    db.labels.append(tampered.id, LabelChange(ReviewState.ACCEPTED, class_name="crack"), "ann")
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("imagefolder",)))
    assert result.exported == 3 and any("link/x.png: refused" in s for s in result.skipped)


def test_a_tampered_path_of_thousands_of_characters_is_cut_in_the_report(tmp_path: Path, station) -> None:
    """The database-row fuzzer found a 5,000-character stored path repeated whole in the skip reason."""
    db, _ = station
    stored = "../" + "x" * 5000 + "/secret.png"
    folder = db.folders.list()[0]
    db.images.sync(folder.id, [FileEntry(stored, 10, 0, width=W, height=H)], complete=False)
    tampered = next(i for i in db.images.query() if i.rel_path == stored)
    db.labels.append(tampered.id, LabelChange(ReviewState.ACCEPTED, class_name="crack"), "ann")
    result = export_database(db, tmp_path / "out", ExportOptions(formats=("csv",)))
    [reason] = [s for s in result.skipped if "leads outside" in s]
    assert len(reason) < 400 and reason.split(": ")[0].endswith("secret.png") and "…" in reason
