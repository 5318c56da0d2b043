"""Project ▸ Models…, champion and challenger: the held-out comparison beside the disagreement queue a
real worker process fills (tiny models), both answers side by side with the human label, then one
click promotes the challenger and Roll back returns to the champion, both recorded."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.gui.challenger_panel import DISAGREEMENT_COLUMNS
from app.gui.models_dialog import COLUMNS, ModelsDialog
from app.services.champion import ChampionReview
from app.services.indexing import index_folder
from app.services.model_catalog import ModelCatalog
from app.services.prelabel import start_worker_process
from database.dto import LabelChange
from database.states import ReviewState
from tests.worker.helpers import good_images

pytestmark = [pytest.mark.gui]
WORKER_MS = 240_000  # a worker's first batch includes importing torch on a loaded 2-core machine
COMPARISON = {"held_out_images": 8, "new": {"accuracy": 0.875, "f1": 0.8},
              "parent": {"accuracy": 0.5, "f1": 0.4}, "parent_name": "classifier-tiny"}


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    import torch

    from tests.tiny_models import save_tiny_models
    torch.set_num_threads(1)
    return save_tiny_models(tmp_path_factory.mktemp("models"))["classifier"]


@pytest.fixture
def station(db, db_url, tmp_path, tiny_classifier, monkeypatch):
    """A tiny active classifier and its challenger: the same weights with the class names swapped,
    so the two disagree on every image, as a retrained version registers itself."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    champion = db.model_versions.register("classifier", "classifier-tiny", str(tiny_classifier),
                                          card=json.loads((tiny_classifier / "card.json").read_text()), activate=True)
    swapped = shutil.copytree(tiny_classifier, tmp_path / "swapped")
    card = json.loads((swapped / "card.json").read_text())
    card["classes"] = card["classes"][::-1]
    card["retraining"] = {"held_out_comparison": COMPARISON}
    (swapped / "card.json").write_text(json.dumps(card))
    challenger = db.model_versions.register("classifier", "classifier-swapped", str(swapped), card=card,
                                            parent_id=champion.id, challenger=True)
    good_images(tmp_path / "imgs", 4)
    index_folder(db, tmp_path / "imgs")
    workers = []

    def start_worker() -> None:
        workers.append(start_worker_process(db_url, "cpu", once=True, log_path=tmp_path / "worker.log"))
    yield db, champion, challenger, start_worker
    for w in workers:
        w.stop()


def test_the_disagreement_queue_then_promote_and_roll_back(qtbot, station) -> None:
    db, champion, challenger, start_worker = station
    first = min(im.id for im in db.images.get_many(list(range(1, 10))))
    db.labels.append(first, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    dlg = ModelsDialog(ModelCatalog(db, author=lambda: "ann"), None, interactive=False,
                       review=ChampionReview(db, start_worker=start_worker))
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)   # the versions are read off the GUI thread
    names = [dlg.table.item(r, COLUMNS.index("name")).text() for r in range(dlg.table.rowCount())]
    row = names.index("classifier-swapped")
    assert dlg.table.item(row, COLUMNS.index("active")).text() == "challenger"
    dlg.select(challenger.id)
    panel = dlg.challenger
    qtbot.waitUntil(lambda: panel.held_out.rowCount() == 2, timeout=10000)
    held = [[panel.held_out.item(r, c).text() for c in range(3)] for r in range(2)]
    assert held == [["accuracy", "0.500", "0.875"], ["f1", "0.400", "0.800"]]
    assert panel.held_out.horizontalHeaderItem(1).text() == "classifier-tiny"
    assert "classifier-swapped" in panel.headline.text() and "8 held-out" in panel.held_note.text()
    qtbot.waitUntil(lambda: "0 disagreements in 0 images" in panel.status.text(), timeout=10000)

    panel.find_button.click()   # the worker runs both versions on the 4 images (none predicted yet)
    qtbot.waitUntil(lambda: panel.table.rowCount() == 4, timeout=WORKER_MS)
    assert "4 disagreements in 4 images compared" in panel.status.text()
    cells = {panel.table.item(r, 0).text(): [panel.table.item(r, c).text() for c in range(len(DISAGREEMENT_COLUMNS))]
             for r in range(4)}
    human = [c for c in cells.values() if c[1] != "not reviewed"]
    assert [c[1] for c in human] == ["crack"]
    for _name, _human, champ, chall, why in cells.values():
        a, b = champ.split()[0], chall.split()[0]
        assert {a, b} == {"free", "crack"} and why == f"class {a} → {b}"
    assert len(db.predictions.for_images(list(range(1, 10)), challenger.id)) == 4   # stored as the challenger's
    panel.table.selectRow(0)
    qtbot.waitUntil(lambda: all(label.pixmap() is not None and not label.pixmap().isNull()
                                for label, _ in panel.previews), timeout=10000)
    assert panel.previews[1][1].text().startswith("challenger: ")

    panel.promote_button.click()   # one click: the challenger is the active version
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    assert db.model_versions.active("classifier").id == challenger.id
    assert db.model_versions.challenger("classifier") is None
    assert dlg.rollback_button.isEnabled() and dlg.rollback_button.text() == "Roll back to classifier-tiny"
    dlg.rollback_button.click()
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    assert db.model_versions.active("classifier").id == champion.id
    assert db.model_versions.challenger("classifier").id == challenger.id
    assert not dlg.rollback_button.isEnabled()   # the challenger again: Make active, not a second roll back
    # promote waits while the dialog changes the versions (a second click promoted project-wide: session 44), and is
    # offered again once the change has answered
    qtbot.waitUntil(lambda: panel.pair is not None and panel.promote_button.isEnabled(), timeout=10000)
    panel.promote_button.click()
    assert not panel.promote_button.isEnabled()
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    assert db.model_versions.active("classifier").id == challenger.id
    assert [(a.action, a.version_name, a.author) for a in db.model_versions.activations("classifier")] == [
        ("promote", "classifier-swapped", "ann"), ("rollback", "classifier-tiny", "ann"),
        ("promote", "classifier-swapped", "ann")]


def test_a_family_without_challenger_says_so(qtbot, db) -> None:
    dlg = ModelsDialog(ModelCatalog(db), None, interactive=False)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    dlg.select(dlg.rows[0].id)
    qtbot.waitUntil(lambda: "has no challenger" in dlg.challenger.headline.text(), timeout=10000)
    assert not dlg.challenger.find_button.isEnabled() and not dlg.challenger.promote_button.isEnabled()
    assert not dlg.rollback_button.isEnabled()


def test_a_challenger_that_cannot_be_loaded_is_said_so_in_the_panel(qtbot, db) -> None:
    """A session-50 audit: with the challenger's weights corrupt the panel read "0 disagreement(s) in 0 image(s)
    compared; 55 image(s) the worker could not read (their reasons are in the Jobs dock)", of fine images, pointing to
    a dock that lists no compare job. It says the compare job's reason, as ``models compare`` does."""
    from app.gui.challenger_panel import ChallengerPanel
    from app.services.champion import Comparison
    panel = ChallengerPanel(ChampionReview(db))
    qtbot.addWidget(panel)
    said = panel._summary(Comparison("classifier", 1, 2, 55, 0, (), failed=55,
                                     cannot_load=("clf-r1", "model.safetensors is not a safetensors file")))
    assert said == ("0 disagreements in 0 images compared; clf-r1 cannot be loaded here: model.safetensors is not "
                    "a safetensors file.")


def test_the_station_records_promotions_as_its_reviewer(qtbot, db, db_url, tmp_path) -> None:
    from app.commands.gui import build_window
    from app.gui.settings_store import StationSettings
    from tests.services.model_fixtures import make_model_dir
    champion = db.model_versions.register("classifier", "a", str(make_model_dir(tmp_path / "a")), activate=True)
    challenger = db.model_versions.register("classifier", "b", str(make_model_dir(tmp_path / "b")),
                                            parent_id=champion.id, challenger=True)
    win = build_window(db, StationSettings(reviewer="ann"), db_url, interactive=False, jobs=False)
    qtbot.addWidget(win)
    win.actions["models"].trigger()
    dlg = win.models_dialog
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    assert dlg.selected_id() == challenger.id   # opened on the challenger
    dlg.make_active()
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
    [record] = db.model_versions.activations("classifier")
    assert (record.action, record.author, record.previous_name) == ("promote", "ann", "a")


def test_a_routed_versions_challenger_is_compared_on_its_images_and_promoted_in_the_rules(
        qtbot, db, db_url, tmp_path, tiny_classifier, monkeypatch) -> None:
    """ADR 0060: the tile classifier's challenger is set against the tile classifier, on tile images, by the real
    worker; its promotion names it in the tiles rule and leaves the project's active classifier alone."""
    from app.services.project_settings import readable_routing, save_routing
    from app.services.routing import Routing, RoutingRule

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    card = json.loads((tiny_classifier / "card.json").read_text())
    steel = db.model_versions.register("classifier", "clf-steel", str(shutil.copytree(tiny_classifier, tmp_path / "s")),
                                       card=card, activate=True)
    tile = db.model_versions.register("classifier", "clf-tile", str(tiny_classifier), card=card)
    swapped = shutil.copytree(tiny_classifier, tmp_path / "swapped")
    new_card = {**card, "classes": card["classes"][::-1], "retraining": {"held_out_comparison": {
        **COMPARISON, "parent_name": "clf-tile"}}}
    (swapped / "card.json").write_text(json.dumps(new_card))
    challenger = db.model_versions.register("classifier", "clf-tile-2", str(swapped), card=new_card,
                                            parent_id=tile.id, challenger=True)
    good_images(tmp_path / "imgs" / "tiles", 2)
    good_images(tmp_path / "imgs" / "steel", 3, seed=1)
    index_folder(db, tmp_path / "imgs")
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "clf-tile"),)),)))
    workers = []
    review = ChampionReview(db, start_worker=lambda: workers.append(
        start_worker_process(db_url, "cpu", once=True, log_path=tmp_path / "worker.log")))
    dlg = ModelsDialog(ModelCatalog(db, author=lambda: "ann"), lambda f, e, v: ["true"], interactive=False,
                       review=review)
    qtbot.addWidget(dlg)
    dlg.show()
    try:
        qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
        dlg.select(tile.id)
        assert dlg.retrain_target() == "clf-tile" and dlg.retrain_button.text() == "Retrain clf-tile from its images' labels…"
        dlg.select(steel.id)
        assert dlg.retrain_target() is None and dlg.retrain_button.text() == "Retrain from reviewed labels…"
        dlg.select(challenger.id)
        panel = dlg.challenger
        qtbot.waitUntil(lambda: "champion (routed: tiles/*) <b>clf-tile</b>" in panel.headline.text(), timeout=10000)
        assert panel.promote_button.text() == "Promote for tiles/*"
        panel.find_button.click()   # the worker runs both tile versions on the 2 tile images only
        qtbot.waitUntil(lambda: panel.table.rowCount() == 2, timeout=WORKER_MS)
        assert all(panel.table.item(r, 0).text().startswith("tiles/") for r in range(2))
        assert "2 disagreements in 2 images compared" in panel.status.text()
        dlg.activate_button.click()   # the table's Make active on the challenger promotes it over its champion too
        qtbot.waitUntil(lambda: not dlg.calls.busy and "now answers for tiles/*" in dlg.info.text(), timeout=10000)
        assert readable_routing(db).rules[0].named == {"classifier": "clf-tile-2"}
        assert db.model_versions.active("classifier").id == steel.id
        assert db.model_versions.challenger("classifier") is None
    finally:
        for w in workers:
            w.stop()


def test_a_worker_killed_during_the_comparison_is_said_and_replaced(qtbot, station, db_url, tmp_path,
                                                                     monkeypatch) -> None:
    """Seen under Xvfb (session 41): a kill -9 of the worker during Find disagreements left the comparison at 24 of
    160 for good and the line saying "The worker runs the challenger: 24/160 image(s)…". Now the line says no worker
    runs, and the station's jobs poll (the Jobs dock's) starts a new one, which finishes the comparison (both
    versions on the 4 images: 8 runs)."""
    import os
    import signal

    from app.services.review_jobs import ReviewJobs

    db, _champion, challenger, _start = station
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    jobs = ReviewJobs(db, db_url, device="cpu")
    dlg = ModelsDialog(ModelCatalog(db, author=lambda: "ann"), None, interactive=False,
                       review=ChampionReview(db, start_worker=jobs.ensure_worker, worker_alive=jobs.worker_alive))
    qtbot.addWidget(dlg)
    dlg.show()
    try:
        qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=10000)
        dlg.select(challenger.id)
        panel = dlg.challenger
        qtbot.waitUntil(lambda: "0 disagreements in 0 images" in panel.status.text(), timeout=10000)
        panel.find_button.click()
        qtbot.waitUntil(lambda: jobs.worker_pid() is not None, timeout=10000)
        first = jobs.worker_pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)   # while it still imports torch: nothing of the 4 images is done
        qtbot.waitUntil(lambda: not jobs.worker_alive(), timeout=10000)
        qtbot.waitUntil(lambda: panel.status.text().startswith("Waiting for the worker: 0/8 images run; this "
                                                               "station's worker is not running"), timeout=10000)
        snap = jobs.snapshot()   # the Jobs dock's poll: comparison work waits, so a new worker starts
        assert snap.worker.alive and snap.worker.pid != first
        assert snap.worker.event is not None and "a new one was started" in snap.worker.event
        qtbot.waitUntil(lambda: panel.table.rowCount() == 4, timeout=WORKER_MS)
        assert "4 disagreements in 4 images compared" in panel.status.text()
    finally:
        jobs.stop_worker()


def test_the_comparison_line_words_its_counts_by_them(qtbot, db) -> None:
    """A session-50 audit: the challenger's line read "1 disagreement(s) in 1 image(s) compared; 1 image(s) not run
    by both yet" where every count is known; now "1 disagreement in 1 image compared; 1 image not run by both yet"."""
    from app.gui.challenger_panel import ChallengerPanel
    from app.services.champion import Comparison
    panel = ChallengerPanel(ChampionReview(db))
    qtbot.addWidget(panel)
    one = Comparison("classifier", 1, 2, images=3, compared=1, disagreements=(None,), failed=1,  # type: ignore[arg-type]
                     unreadable=1)
    text = panel._summary(one)
    assert text.startswith("1 disagreement in 1 image compared; 1 image not run by both yet"), text
    assert "; 1 image the worker could not read" in text and "(s)" not in text
    two = Comparison("classifier", 1, 2, images=2, compared=2, disagreements=(None, None))  # type: ignore[arg-type]
    assert panel._summary(two) == "2 disagreements in 2 images compared."
