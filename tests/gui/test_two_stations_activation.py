"""A version made active at one station reaches another station's window with its project-settings poll."""
from __future__ import annotations

from app.services.counting_versions import after_activation
from app.services.review import ReviewService, ReviewSettings
from database.engine import open_database
from tests.gui.conftest import build_window, wait_prediction_shown, wait_shown
from tests.gui.fixtures import CLASSES, seed_predictions

TILES = ("blowhole", "break", "crack", "fray", "uneven")


def _buttons(win) -> list[str]:
    return [b.text().split(maxsplit=1)[-1] for b in win.label_panel.class_group.buttons()]


def test_a_version_made_active_at_another_station_reaches_this_window(db, db_url, folder, artifacts, qtbot):
    """A session-48 probe: station A made a classifier of other classes active; station B's class keys, buttons and
    gallery kept the old classifier's for good (more than 50 s), and B's key 1 saved "crazing", a class of a model no
    longer active. The active versions are read with the project's settings, so B's poll follows."""
    svc_a = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    db_b = open_database(db_url)
    svc_b = ReviewService(db_b, ReviewSettings(reviewer="bob"), artifacts=artifacts)
    a = build_window(svc_a, qtbot)
    fid = a.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)
    db.classes.set("classifier", [])        # no project list: the active classifier's classes
    tiles = db.model_versions.register("classifier", "tiles-cls", "/nonexistent", card={"classes": list(TILES)})
    b = build_window(svc_b, qtbot)
    b.open_folder(str(folder))
    wait_shown(b, qtbot)
    wait_prediction_shown(b, qtbot)
    qtbot.waitUntil(lambda: _buttons(b) == list(CLASSES), timeout=5000)
    done = db.model_versions.change_active(tiles.id, "alice", "activate", None)   # Make active at A
    after_activation(db, "classifier", versions=(done.version_id, done.previous_id))
    b.project.reload()                      # B's 20 s poll
    qtbot.waitUntil(lambda: _buttons(b) == list(TILES), timeout=10000)
    a.close()
    b.close()
    db_b.close()
