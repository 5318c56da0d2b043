"""Project settings in the database: defaults, round trip, the one-time import of older stations'
files and QSettings thresholds, and the routing line the Jobs dock shows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.project_settings import (
    AUTO_PRELABEL,
    FLAGS,
    ROUTING,
    SPEED_PROFILE,
    ProjectSettings,
    ProjectSettingsError,
    adopt_legacy_settings,
    legacy_flag_settings_path,
    legacy_routing_path,
    load_project_settings,
    routing_overview,
    save_auto_prelabel,
    save_flag_settings,
    save_routing,
    save_speed_profile,
)
from app.services.routing import Routing, RoutingRule
from database.engine import open_database
from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)


@pytest.fixture
def db(url):  # noqa: F811
    database = open_database(url)
    yield database
    database.close()


def test_a_new_project_has_the_defaults_and_keeps_what_is_saved(db) -> None:
    assert load_project_settings(db) == ProjectSettings()
    assert load_project_settings(db).auto_prelabel is True
    flags = FlagSettings(anomaly_threshold=0.8, min_targets=2, good_classes=("ok",), min_confidence=0.3)
    routing = Routing((RoutingRule("ir/*", ("segmenter",)),))
    save_flag_settings(db, flags, by="ann")
    save_routing(db, routing)
    save_auto_prelabel(db, False)
    assert load_project_settings(db) == ProjectSettings(flags=flags, auto_prelabel=False, routing=routing)
    save_speed_profile(db, "fast")
    assert load_project_settings(db).speed_profile == "fast"
    with pytest.raises(ProjectSettingsError, match="unknown speed profile"):
        save_speed_profile(db, "turbo")


@pytest.mark.parametrize("key, value, words", [
    (FLAGS, {"min_confidence": 7}, "flag thresholds"),
    (ROUTING, {"rules": [{"pattern": "*", "families": ["x"]}]}, "model routing"),
    (AUTO_PRELABEL, "yes", "auto pre-label"),
    (SPEED_PROFILE, "turbo", "speed profile"),
])
def test_a_hand_broken_value_is_named_not_guessed(db, key, value, words) -> None:
    db.project_settings.put(key, value)
    with pytest.raises(ProjectSettingsError, match=words):
        load_project_settings(db)


def test_older_stations_files_and_thresholds_are_imported_once(tmp_path: Path) -> None:
    station_url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    legacy_flag_settings_path(station_url).write_text(json.dumps({"min_targets": 3, "min_confidence": 0.5}))
    rules = {"rules": [{"pattern": "ir/*", "families": ["segmenter"]}]}
    legacy_routing_path(station_url).write_text(json.dumps(rules))
    with open_database(station_url) as db:
        # Before the import the files are still what everyone uses (a worker started first).
        assert load_project_settings(db).flags.min_targets == 3
        written = adopt_legacy_settings(db, {"anomaly_threshold": 0.9, "min_confidence": 0.6})
        assert sorted(written) == [FLAGS, ROUTING]
        s = load_project_settings(db)
        # the file's values, with the threshold the window used (QSettings) on top; the default
        # min_confidence in QSettings does not overwrite the file's own
        assert s.flags == FlagSettings(anomaly_threshold=0.9, min_targets=3, min_confidence=0.5)
        assert s.routing == Routing.from_dict(rules)
        # once: later file edits and other users' QSettings no longer change the project
        legacy_flag_settings_path(station_url).write_text(json.dumps({"min_targets": 9}))
        assert adopt_legacy_settings(db, {"anomaly_threshold": 0.1}) == []
        assert load_project_settings(db).flags.min_targets == 3
        assert load_project_settings(db).flags.anomaly_threshold == 0.9
        assert legacy_routing_path(station_url).exists()  # the user's file is left where it was


def test_a_broken_legacy_file_is_reported_and_nothing_is_imported(tmp_path: Path) -> None:
    station_url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    legacy_routing_path(station_url).write_text("{not json")
    with open_database(station_url) as db:
        with pytest.raises(ProjectSettingsError, match="model_routing.json"):
            adopt_legacy_settings(db, {"anomaly_threshold": 0.4})
        assert db.project_settings.all() == {}
        assert legacy_routing_path(station_url).read_text() == "{not json"


def test_without_legacy_values_the_import_stores_the_default_flags_and_no_rules(db) -> None:
    """No rules are stored for a project that never had any: stored empty, they read as rules saved empty on
    purpose, and the demo's routing was never adopted at the README's first launch (found under Xvfb, session 45)."""
    from app.paths import SAMPLES
    from app.services.review_jobs import ReviewJobs
    from app.services.routing import load_routing
    assert adopt_legacy_settings(db, {"anomaly_threshold": None, "min_confidence": 0.6}) == [FLAGS]
    assert load_project_settings(db) == ProjectSettings()
    assert ROUTING not in db.project_settings.all()
    assert adopt_legacy_settings(db) == []  # once
    demo = load_routing(SAMPLES / "demo_routing.json")
    jobs = ReviewJobs(db, db.url)
    assert jobs.adopt_routing(demo) and load_project_settings(db).routing == demo


def test_routing_overview_names_the_subfolders_and_what_runs_there(db, tmp_path: Path) -> None:
    root = tmp_path / "line"
    for rel in ("infrared/a.png", "infrared/b.png", "steel/c.png", "top.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * len(rel))
    folder = index_folder(db, root).folder_id
    fams = ["classifier", "segmenter", "anomaly"]
    text = routing_overview(db, folder, Routing(), fams)
    assert text == ("No model routing: every family (classifier, segmenter, anomaly) runs on every image in "
                    "infrared/, steel/ and at its top level.")
    routed = Routing((RoutingRule("infrared/*", ("segmenter",)), RoutingRule("steel/*", ("classifier",))))
    assert routing_overview(db, folder, routed, fams) == (
        "Model routing: (top level) → classifier, segmenter, anomaly; infrared/ → segmenter; steel/ → classifier")


def test_routing_overview_says_once_what_several_subfolders_share(db, tmp_path: Path) -> None:
    """Seen under Xvfb (session 40): seven lots routed by one rule read "lot_exp0/ → classifier (classifier-magnetic_tile),
    anomaly; lot_exp1/ → classifier (classifier-magnetic_tile), anomaly; …", cut off before it said anything new."""
    root = tmp_path / "tiles"
    for k in range(8):
        (root / f"lot_{k}").mkdir(parents=True)
        (root / f"lot_{k}" / "t.png").write_bytes(b"x" * (k + 1))
    folder = index_folder(db, root).folder_id
    fams = ["classifier", "segmenter", "anomaly"]
    one = Routing((RoutingRule("tiles/*", ("classifier", "anomaly"), (("classifier", "classifier-tile"),)),))
    assert routing_overview(db, folder, one, fams) == (
        "Model routing: all 8 subfolders → classifier (classifier-tile), anomaly")
    split = Routing((RoutingRule("tiles/lot_7/*", ("anomaly",)),) + one.rules)
    assert routing_overview(db, folder, split, fams) == (
        "Model routing: lot_0/, lot_1/, lot_2/ and 4 more → classifier (classifier-tile), anomaly; lot_7/ → anomaly")


def test_a_threshold_change_is_written_over_a_folders_operating_point_saved_meanwhile(db, monkeypatch) -> None:
    """The session-45 review: Settings' OK read the thresholds, changed the project's, and wrote them all back, so a
    folder's operating point another station saved between the read and the write was lost."""
    import dataclasses

    import app.services.project_settings as settings
    from app.services.flags import FolderThreshold
    from app.services.project_settings import change_flag_settings, update_flag_settings
    real, landed = settings.load_project_settings, []

    def read_then_other_station_saves(database, s=None):   # s: a re-flag's transaction (it reads through it)
        now = real(database, s)
        if not landed:
            landed.append(True)
            update_flag_settings(db, lambda f: f.with_folder_threshold(FolderThreshold(7, 3, 0.42, None, None)))
        return now
    monkeypatch.setattr(settings, "load_project_settings", read_then_other_station_saves)
    change_flag_settings(db, lambda f: dataclasses.replace(f, anomaly_threshold=0.77))
    stored = real(db).flags
    assert stored.anomaly_threshold == 0.77 and stored.folder_threshold(7, 3).threshold == 0.42


def test_an_old_routing_file_that_cannot_be_read_leaves_the_stored_thresholds_in_force(tmp_path: Path) -> None:
    """A session-46 probe: a broken old routing file beside a database storing thresholds but no rules failed every
    settings load, so the station and its worker flagged with the defaults, not the stored 0.85."""
    import dataclasses

    from app.services.project_settings import update_flag_settings
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    try:
        assert adopt_legacy_settings(db) == [FLAGS]
        update_flag_settings(db, lambda f: dataclasses.replace(f, min_confidence=0.85))
        legacy_routing_path(db.url).write_text('{"rules": [')
        settings = load_project_settings(db)
        assert settings.flags.min_confidence == 0.85 and settings.routing == Routing()
        with pytest.raises(ProjectSettingsError, match="model_routing.json"):  # the adoption still says it
            adopt_legacy_settings(db)
        from app.commands.gui import start_project_settings
        started = start_project_settings(db)  # the window's start: the stored thresholds, not the defaults
        assert started is not None and started.flags.min_confidence == 0.85
    finally:
        db.close()


def test_an_old_stations_routing_file_is_read_as_it_was_then(tmp_path: Path) -> None:
    """The session-46 review: a rule's "comment" key in an older station's file (which it read) made the stricter
    parser drop every rule of it, every family then running on every image."""
    station_url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    legacy_routing_path(station_url).write_text(json.dumps(
        {"rules": [{"pattern": "infrared/*", "families": ["segmenter"], "comment": "IR line"}]}))
    with open_database(station_url) as db:
        assert adopt_legacy_settings(db) == [FLAGS, ROUTING]
        assert load_project_settings(db).routing.families_for("infrared/a.png") == ("segmenter",)


def test_an_old_stations_file_is_not_read_again_once_its_key_is_stored(tmp_path: Path) -> None:
    """The session-45 review: with no rules stored (a project that never had any), the old flags file beside the
    database was read at every load; one this version cannot read failed every settings load, the thresholds
    stored in the database ignored (workers flagged with the defaults)."""
    import dataclasses

    from app.services.project_settings import legacy_flag_settings_path, update_flag_settings
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    try:
        assert adopt_legacy_settings(db) == [FLAGS]
        update_flag_settings(db, lambda f: dataclasses.replace(f, anomaly_threshold=0.77))
        legacy_flag_settings_path(db.url).write_text(json.dumps({"old_key": 1}))
        assert load_project_settings(db).flags.anomaly_threshold == 0.77
    finally:
        db.close()
