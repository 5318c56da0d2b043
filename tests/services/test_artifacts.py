"""Content-addressed artifact cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.services.artifacts import ArtifactStore, artifact_root


def test_maps_round_trip_and_dedupe(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    m = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    ref = store.put_map(m)
    assert store.put_map(m.copy()) == ref
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    np.testing.assert_allclose(store.get_map(ref), m, atol=1e-3)
    assert store.put_map(m + 1) != ref


def test_refs_cannot_escape_the_cache(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(ValueError):
        store.get_bytes("../../etc/passwd")


def test_root_sits_next_to_a_sqlite_file(tmp_path: Path) -> None:
    assert artifact_root(f"sqlite:///{tmp_path}/station.sqlite") == tmp_path / "station-artifacts"
    assert artifact_root("postgresql+psycopg://u@h/db").name == "artifacts"


@pytest.mark.parametrize("name", ["st?1", "h%41x", "a b#c"])
def test_a_data_folder_with_url_characters_in_its_name_keeps_its_database_and_artifacts(tmp_path: Path, monkeypatch,
                                                                                        name: str) -> None:
    """Found by a session-45 probe: with the data folder "…/q?z" the database was created as the file "…/q", outside
    it (two folders "st?1" and "st?2" shared one), and with "…/h%41x" in "…/hAx" while the maps stayed in h%41x."""
    from app.paths import default_database_url
    from database.engine import open_database, sqlite_file
    home = tmp_path / name
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(home))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    url = default_database_url()
    assert sqlite_file(url) == home / "station.sqlite"
    assert artifact_root(url).parent == home
    open_database(url).close()
    assert (home / "station.sqlite").is_file()


def test_the_readme_names_the_folder_the_code_uses(tmp_path: Path) -> None:
    """Issue 17: the README said ``<database>-artifacts`` while the folder is ``<name>-artifacts``."""
    import re

    from app.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"`(\w+)\.sqlite` keeps them in\s+`([\w-]+)/`", readme)
    assert documented, "README no longer gives an example of the artifacts folder's name"
    stem, folder = documented.groups()
    assert artifact_root(f"sqlite:///{tmp_path}/{stem}.sqlite") == tmp_path / folder
    assert "<database>-artifacts" not in readme


def test_a_project_maps_folder_is_written_and_this_stations_own_still_read(tmp_path: Path, monkeypatch) -> None:
    """ADR 0061: a project's maps folder is where every worker writes; a map this station kept before the
    project had one is still found in its own folder."""
    from app.services.artifacts import ENV_OVERRIDE, store_for
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    url = f"sqlite:///{tmp_path}/station.sqlite"
    old = store_for(url).put_map(np.ones((4, 4), np.float32))
    (tmp_path / "shared").mkdir()   # a maps folder as saved (ProjectSettings' check marks it)
    from app.services.artifacts import mark_maps_folder
    mark_maps_folder(tmp_path / "shared")
    store = store_for(url, str(tmp_path / "shared"))
    assert store.root == tmp_path / "shared" and store.also == (tmp_path / "station-artifacts",)
    new = store.put_map(np.zeros((4, 4), np.float32))
    assert (tmp_path / "shared" / new).is_file() and not (tmp_path / "station-artifacts" / new).exists()
    np.testing.assert_allclose(store.get_map(old), 1.0)
    monkeypatch.setenv(ENV_OVERRIDE, str(tmp_path / "mounted-here"))  # one machine's path to the share wins
    assert artifact_root(url, str(tmp_path / "shared")) == tmp_path / "mounted-here"


def test_a_map_no_folder_holds_says_where_it_was_looked_for(tmp_path: Path) -> None:
    from app.services.artifacts import MapUnavailable
    made = ArtifactStore(tmp_path / "other-station").put_map(np.ones((4, 4), np.float32))
    store = ArtifactStore(tmp_path / "shared", also=(tmp_path / "mine",))
    with pytest.raises(MapUnavailable) as err:
        store.get_map(made)
    assert err.value.where == (tmp_path / "shared", tmp_path / "mine")
    assert isinstance(err.value, FileNotFoundError)  # callers that treat a cleared cache alike still do


def test_an_unreachable_maps_folder_keeps_the_map_on_this_station(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the share should be")
    store = ArtifactStore(blocked, also=(tmp_path / "mine",))
    ref = store.put_map(np.full((4, 4), 2.0, np.float32))
    assert (tmp_path / "mine" / ref).is_file()
    np.testing.assert_allclose(store.get_map(ref), 2.0)
    with pytest.raises(OSError):  # with nowhere else to go the error is the caller's
        ArtifactStore(blocked).put_map(np.ones((4, 4), np.float32))


def test_a_maps_share_not_mounted_is_not_made_on_this_stations_disk(tmp_path: Path, caplog) -> None:
    """A session-46 probe: with the share unmounted (its folder gone, the mount point left), the worker made the maps
    folder anew on the local disk and wrote there, said nowhere; other stations were told "not on this station" and
    the maps were hidden once the share came back. They go to this station's own folder, and the log says so."""
    mount = tmp_path / "mnt" / "share"
    mount.mkdir(parents=True)   # the empty mount point
    store = ArtifactStore(mount / "maps", also=(tmp_path / "mine",), shared=True)
    ref = store.put_map(np.full((4, 4), 3.0, np.float32))
    assert not (mount / "maps").exists() and (tmp_path / "mine" / ref).is_file()
    assert "is not there" in caplog.text
    # the maps folder the mount point itself (the session-46 review): empty and unmarked while not mounted
    at_mount = ArtifactStore(mount, also=(tmp_path / "mine",), shared=True)
    ref = at_mount.put_map(np.full((4, 4), 4.0, np.float32))
    assert not any(mount.iterdir()) and (tmp_path / "mine" / ref).is_file()
    # a folder saved before the marker existed, holding maps: still written, and marked now
    ArtifactStore(tmp_path / "old").put_map(np.zeros((4, 4), np.float32))
    ArtifactStore(tmp_path / "old", also=(tmp_path / "mine",), shared=True).put_map(np.ones((4, 4), np.float32))
    assert (tmp_path / "old" / ".inspection-maps-folder").is_file() and len(list((tmp_path / "old").iterdir())) == 3


def test_a_shared_file_that_unpacks_to_too_much_is_not_read(tmp_path: Path, monkeypatch) -> None:
    from app.services import artifacts
    store = ArtifactStore(tmp_path / "shared")
    ref = store.put_map(np.zeros((512, 512), np.float32))  # 512 kB unpacked, a few hundred bytes packed
    monkeypatch.setattr(artifacts, "MAX_ARTIFACT_BYTES", 100_000)
    with pytest.raises(ValueError, match="unpacks to"):
        store.get_map(ref)
    big = tmp_path / "shared" / "ab" / ("ab" + "0" * 62 + ".npz")
    big.parent.mkdir(parents=True, exist_ok=True)
    big.write_bytes(b"\0" * 200_000)
    with pytest.raises(ValueError, match="more than a stored map"):
        store.get_bytes(big.relative_to(tmp_path / "shared").as_posix())


def test_a_map_only_in_this_stations_folder_is_copied_into_the_projects(tmp_path: Path) -> None:
    own = ArtifactStore(tmp_path / "mine")
    ref = own.put_map(np.full((4, 4), 3.0, np.float32))
    store = ArtifactStore(tmp_path / "shared", also=(tmp_path / "mine",))
    assert store.ensure_in_root(ref) and (tmp_path / "shared" / ref).is_file()
    assert store.ensure_in_root(ref)  # already there: nothing to do
    gone = ArtifactStore(tmp_path / "elsewhere").put_map(np.zeros((4, 4), np.float32))
    assert not store.ensure_in_root(gone)  # nowhere here: the worker makes it again


def test_a_maps_folder_stored_as_another_machines_path_is_reached_through_the_path_map(tmp_path, monkeypatch) -> None:
    from app.services.artifacts import ENV_OVERRIDE
    from database.path_map import ENV
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    monkeypatch.setenv(ENV, f"/mnt/maps={tmp_path / 'here'}")
    assert artifact_root("postgresql+psycopg://u@h/db", "/mnt/maps/line3") == tmp_path / "here" / "line3"


def test_a_damaged_map_is_made_again_not_counted_as_there(tmp_path: Path) -> None:
    """A session-46 probe: a truncated map file was counted as there (the image "done" at every pre-label run) and
    never replaced, while the panel said "pre-label the image again to make it anew"."""
    store = ArtifactStore(tmp_path / "maps")
    ref = store.put_map(np.full((4, 4), 5.0, np.float32))
    path = tmp_path / "maps" / ref
    path.write_bytes(path.read_bytes()[:100])
    assert not store.ensure_in_root(ref)   # the worker makes it again...
    assert store.put_map(np.full((4, 4), 5.0, np.float32)) == ref
    np.testing.assert_allclose(store.get_map(ref), 5.0)   # ...and the new one replaces the damaged file
    assert store.ensure_in_root(ref)


def _a_share_with_a_lines_folders(share: Path) -> list[Path]:
    """A share that also holds a line's folders: ``L1/`` part images, ``qc/`` reports, a hexadecimal ``01/``, and a
    file named as a map but in another map's folder."""
    theirs = [share / "L1" / "part_0001.png", share / "qc" / "report.txt", share / "01" / "part_0002.png",
              share / "ab" / "notes.npz", share / "cd" / ("ab" + "0" * 62 + ".npz")]
    for f in theirs:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"not a map")
    return theirs


def test_the_sweep_removes_only_the_stations_own_files(tmp_path: Path) -> None:
    """A session-51 audit: with a maps folder on a share that also held a line's folders, ``db sweep-maps`` removed
    every file older than a day in any two-character folder, part images and reports counted as "map files". Only
    ``map_ref``'s names in their folders, and the station's temporary files, are its own."""
    import os

    from app.services.artifacts import sweep_maps

    share = tmp_path / "share"
    theirs = _a_share_with_a_lines_folders(share)
    kept = ArtifactStore(share).put_map(np.ones((4, 4), np.float32))
    unused = ArtifactStore(share).put_map(np.zeros((4, 4), np.float32))
    leftover = (share / kept).parent / ".tmp-k3x_9q2z"   # a worker killed between writing and renaming
    leftover.write_bytes(b"half a map")
    for f in share.rglob("*"):
        if f.is_file():
            os.utime(f, (f.stat().st_atime - 3 * 86400, f.stat().st_mtime - 3 * 86400))
    swept = sweep_maps(share, lambda: {kept}, 86400)
    assert all(f.is_file() for f in theirs) and (share / kept).is_file()
    assert swept.files == 2 and not (share / unused).exists() and not leftover.exists()


def _an_old_unreferenced_map(root: Path) -> tuple[ArtifactStore, str, Path]:
    """A map no answer refers to, untouched for three days: what the sweep removes."""
    import os
    store = ArtifactStore(root)
    ref = store.put_map(np.full((4, 4), 3.0, np.float32))
    path = root / ref
    old = path.stat().st_mtime - 3 * 86400
    os.utime(path, (old, old))
    return store, ref, path


def test_a_map_stored_again_while_the_sweep_runs_is_not_removed(tmp_path: Path, monkeypatch) -> None:
    """A session-52 audit: ``sweep_maps`` checked a map's age while walking and removed it afterwards, so a map a
    worker stored again in between (a new answer's map, the same as an old unreferenced one: touched, its answer
    landing just after) was removed although fresh, and that answer showed no heatmap. Now the file is set aside and
    removed only if no one stored it since the walk; a worker storing it while it is set aside writes it anew."""
    from app.services import artifacts
    from app.services.artifacts import sweep_maps

    store, ref, path = _an_old_unreferenced_map(tmp_path / "maps")
    calls = []

    def referenced() -> set[str]:   # read again after the walk: the worker stores the map again just then
        calls.append(1)
        if len(calls) == 2:
            assert store.put_map(np.full((4, 4), 3.0, np.float32)) == ref
        return set()

    swept = sweep_maps(tmp_path / "maps", referenced, 86400)
    assert path.is_file() and swept.files == 0   # before: removed, its new answer left without a map
    np.testing.assert_allclose(store.get_map(ref), 3.0)
    assert [f.name for f in path.parent.iterdir()] == [path.name]   # nothing left set aside

    # the worker found the map there and went to touch it, and the sweep set it aside in that moment
    store, ref, path = _an_old_unreferenced_map(tmp_path / "maps2")
    touch = artifacts._Verified.touch

    def swept_meanwhile(verified, target: Path) -> None:
        assert sweep_maps(tmp_path / "maps2", set, 86400).files == 1
        touch(verified, target)

    monkeypatch.setattr(artifacts._Verified, "touch", swept_meanwhile)
    assert store.put_map(np.full((4, 4), 3.0, np.float32)) == ref
    np.testing.assert_allclose(store.get_map(ref), 3.0)   # before: the touch's error passed over, the map gone


def test_a_lines_folders_are_no_proof_of_a_maps_folder(tmp_path: Path) -> None:
    """A session-51 audit: a share holding ``L1/`` was taken for a maps folder saved before markers (any
    two-character folder was proof) and marked; a map is the proof, and ``foreign_entry`` names what is not the
    station's (Settings refuses such a folder)."""
    from app.services.artifacts import is_maps_folder

    share = tmp_path / "share"
    _a_share_with_a_lines_folders(share)
    assert not is_maps_folder(share) and not (share / ".inspection-maps-folder").exists()
    from app.services.artifacts import foreign_entry
    assert foreign_entry(share) == share / "01" / "part_0002.png"
    maps = tmp_path / "maps"
    ArtifactStore(maps).put_map(np.ones((4, 4), np.float32))
    assert foreign_entry(maps) is None and is_maps_folder(maps)


def test_a_map_stored_again_is_not_hashed_again_and_the_store_remembers_a_bounded_number(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """A session-51 audit: a standing worker's record of maps found intact was keyed by (path, size, time), and
    storing a map again touched it (a new time), so the record never matched again and grew for good: 50 maps
    stored 5 times, 200 entries, each map hashed at every store. One entry a map, hashed once, at most ``limit``."""
    import time

    from app.services import file_scan

    hashed: list[Path] = []
    real = file_scan.hash_file
    monkeypatch.setattr(file_scan, "hash_file", lambda path, *a, **kw: hashed.append(path) or real(path, *a, **kw))
    store = ArtifactStore(tmp_path / "maps")
    maps = [np.full((4, 4), float(i), np.float32) for i in range(5)]
    for _ in range(4):
        for m in maps:
            store.put_map(m)
        time.sleep(0.01)   # (a touch then sets another time)
    assert len(store._verified) == 5 and len(hashed) == 5   # hashed when first stored again, not after

    store._verified.limit = 3
    for m in maps:
        store.put_map(m)
    assert len(store._verified) == 3
