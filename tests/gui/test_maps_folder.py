"""Two stations on one database (ADR 0061): a heatmap another station's worker made says so instead of an
empty layer, and the project's maps folder, set in Settings, is where the real worker process writes the map
this station then draws.

Seen under Xvfb with two stations on one PostgreSQL database: station B's worker pre-labelled the folder, and
station A showed the anomaly score beside a "Heatmap" layer that drew nothing and said nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from app.commands.gui import build_window  # noqa: E402
from app.gui.settings_dialog import SettingsDialog, apply_settings  # noqa: E402
from app.gui.settings_store import StationSettings  # noqa: E402
from app.services.artifacts import ENV_OVERRIDE, ArtifactStore  # noqa: E402
from app.services.indexing import index_folder  # noqa: E402
from app.services.prelabel import submit_prelabel  # noqa: E402
from app.services.project_settings import load_project_settings  # noqa: E402
from app.services.station import open_station  # noqa: E402
from app.worker import Worker, WorkerOptions  # noqa: E402
from tests.gui.fixtures import copy_demo  # noqa: E402

pytestmark = pytest.mark.gui


def test_a_heatmap_from_another_station_says_so_until_a_shared_maps_folder_holds_it(tmp_path, qtbot, monkeypatch):
    import torch

    from tests.tiny_models import save_tiny_models

    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    torch.set_num_threads(1)
    models = save_tiny_models(tmp_path / "models")
    folder = copy_demo(tmp_path / "steel", "steel", 2)
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for family, path in models.items():
        card = json.loads((Path(path) / "card.json").read_text())
        db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    # Station B's worker pre-labels the folder; its maps stay in B's own folder.
    fid = index_folder(db, folder).folder_id
    submit_prelabel(db, folder_id=fid)
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "station-b-cache")).run(once=True)

    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False, worker_args=("--batch-size", "4"))
    qtbot.addWidget(win)
    win.show()
    win.open_folder(str(folder))
    qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 2, timeout=10000)
    first = win.gallery_model.items()[0].image_id
    win.review.open_image(first)
    heat = win.layer_panel.checks["heatmap"]
    qtbot.waitUntil(lambda: heat.text() == "Heatmap (map not on this station)", timeout=10000)
    assert "Anomaly maps folder" in heat.toolTip() and str(tmp_path / "station-artifacts") in heat.toolTip()
    assert "its map is not on this station" in win.label_panel.pred_anomaly.text()

    shared = tmp_path / "share"
    shared.mkdir()
    dlg = SettingsDialog(win.ctx.settings, win.project.current, win)
    qtbot.addWidget(dlg)
    assert dlg.maps_folder.text() == ""
    dlg.maps_folder.setText("maps")  # not a full path: refused; the dialog's other edits are saved (a session-47
    dlg.min_conf.setValue(0.75)        # audit: a confidence typed beside a bad maps folder was lost with it)
    failures: list[str] = []
    win.project.failed.connect(failures.append)
    apply_settings(win, dlg.result_settings(), dlg.result_project())
    qtbot.waitUntil(lambda: bool(failures), timeout=10000)
    assert "full path" in failures[0] and "the other project settings were" in failures[0]
    assert load_project_settings(db).maps_folder == "" and load_project_settings(db).flags.min_confidence == 0.75
    dlg.maps_folder.setText(str(shared))
    apply_settings(win, dlg.result_settings(), dlg.result_project())
    qtbot.waitUntil(lambda: win.project.current.maps_folder == str(shared), timeout=10000)

    # Pre-label the image again here: the real worker process writes its map to the shared folder.
    assert win.queue.selected_ids() == [first]
    win.actions["prelabel_selection"].trigger()
    qtbot.waitUntil(lambda: len(win.jobs.active) == 1, timeout=10000)
    assert win.jobs.wait(240), "pre-labelling did not finish"
    assert list(shared.rglob("*.npz")), "the worker did not write to the project's maps folder"
    # the open image follows by itself: the version ran again, so its row kept its id (it used to stay as it was)
    qtbot.waitUntil(lambda: heat.text() == "Heatmap", timeout=20000)
    assert "not on this station" not in win.label_panel.pred_anomaly.text()
    win.close()


def test_accept_without_the_maps_region_says_so(service, db, folder, tmp_path, qtbot):
    """An anomalous answer whose map this station does not hold: Accept keeps the verdict and says that the
    model's region is not in the label (it used to be left out silently)."""
    from app.services.artifacts import ArtifactStore
    from tests.gui.conftest import build_window, wait_shown
    from tests.gui.fixtures import seed_predictions

    info = service.open_folder(folder)
    seed_predictions(db, info.id, ArtifactStore(tmp_path / "another-station"))  # maps not in the service's store
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    try:
        hot = next(it.image_id for it in win.gallery_model.items() if it.rel_path == "part_03.png")  # 0.65 > 0.5
        win.review.open_image(hot)
        wait_shown(win, qtbot, hot)
        qtbot.waitUntil(lambda: "not on this station" in win.label_panel.pred_anomaly.text())
        assert win.layer_panel.checks["heatmap"].text() == "Heatmap (map not on this station)"
        said: list[str] = []
        win.review.message.connect(said.append)
        win.review.accept()
        assert any("without the model's region" in m for m in said)
        qtbot.waitUntil(lambda: db.labels.current(hot) is not None and db.labels.current(hot).anomaly_verdict is not None)
        current = db.labels.current(hot)
        assert current.anomaly_verdict == "anomalous" and current.anomaly_mask_png is None
    finally:
        win.close()
