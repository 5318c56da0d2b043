"""The project's speed profile, chosen in Settings, runs in the real worker process (ADR 0025)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from app.commands.gui import build_window  # noqa: E402
from app.gui.settings_dialog import SettingsDialog, apply_settings  # noqa: E402
from app.gui.settings_store import StationSettings  # noqa: E402
from app.services.project_settings import load_project_settings  # noqa: E402
from app.services.station import open_station  # noqa: E402
from database.dto import ImageQuery  # noqa: E402
from tests.gui.fixtures import copy_demo  # noqa: E402

pytestmark = pytest.mark.gui


def test_a_fast_profile_chosen_in_settings_is_what_the_worker_runs(tmp_path, qtbot, monkeypatch):
    import torch

    from inference import segmenter_predict as segmentation
    from inference.checkpoints import load_model, save_card
    from inference.imageio import read_image
    from inference.profiles import apply_profile
    from tests.inference.test_profiles import PROFILES, ensemble_dir
    from tests.tiny_models import save_tiny_models

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    torch.set_num_threads(1)
    models = save_tiny_models(tmp_path / "models")
    models["segmenter"] = ensemble_dir(tmp_path / "models", profiles=PROFILES, default_profile="accurate")
    folder = copy_demo(tmp_path / "steel", "steel", 3)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    # A threshold at the fast map's median of the first image: the two profiles' masks then differ.
    loaded = load_model(models["segmenter"], family="segmenter")
    first = segmentation.predict_masks(apply_profile(loaded, "fast"), [read_image(paths[0], "gray")])[0]
    save_card(models["segmenter"], {**loaded.card, "threshold": float(np.median(first.probability))})
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for family, path in models.items():
        card = json.loads((Path(path) / "card.json").read_text())
        db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)

    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False, worker_args=("--batch-size", "4"))
    qtbot.addWidget(win)
    win.show()
    dlg = SettingsDialog(win.ctx.settings, win.project.current, win)
    qtbot.addWidget(dlg)
    assert dlg.speed_profile.currentData() == ""  # each model's default until the project chooses
    dlg.speed_profile.setCurrentIndex(dlg.speed_profile.findData("fast"))
    apply_settings(win, dlg.result_settings(), dlg.result_project())
    qtbot.waitUntil(lambda: win.project.current.speed_profile == "fast", timeout=10000)
    assert load_project_settings(db).speed_profile == "fast"
    again = SettingsDialog(win.ctx.settings, win.project.current, win)
    qtbot.addWidget(again)
    assert again.speed_profile.currentText() == "fast"  # the dialog shows the project's choice

    fid = win.open_folder(str(folder))  # pre-labelled automatically, in the worker process
    qtbot.waitUntil(lambda: len(win.jobs.active) == 1, timeout=10000)
    [job] = win.jobs.active
    assert win.jobs.wait(240), "pre-labelling did not finish"
    assert db.jobs.get(job).params["profile"] == "fast"
    version = db.model_versions.active("segmenter").id
    loaded = load_model(models["segmenter"], family="segmenter")
    differ = 0
    for im in db.images.query(ImageQuery(folder_id=fid)):
        [pred] = [p for p in db.predictions.for_image(im.id) if p.model_version_id == version]
        stored = cv2.imdecode(np.frombuffer(pred.mask_png, np.uint8), cv2.IMREAD_GRAYSCALE) > 0
        image = read_image(folder / im.rel_path, "gray")
        fast = segmentation.predict_masks(apply_profile(loaded, "fast"), [image])[0]
        accurate = segmentation.predict_masks(apply_profile(loaded, "accurate"), [image])[0]
        assert np.array_equal(stored, fast.mask)
        differ += not np.array_equal(fast.mask, accurate.mask)
    assert differ  # else the stored masks could not tell the profiles apart
    win.close()
    db.close()
