""""Label next" on a line the segmenter alone runs on (ADR 0071), with the real worker process and tiny models.

Seen as an inspector on an infrared line routed to the segmenter (session 37): the line said "the model routing runs
no classifier on this folder's images, so there is no class to learn here" and P had no batch, while the segmenter's
retraining wanted reviewed frames with masks. A batch computed before the worker had answered kept every frame's
"no segmenter answer yet" after it had."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytest.importorskip("torch")

from app.commands.gui import build_window  # noqa: E402
from app.gui.settings_store import StationSettings  # noqa: E402
from app.services.retraining import MIN_SEGMENTER_FRAMES  # noqa: E402
from app.services.station import open_station  # noqa: E402
from tests.gui.conftest import wait_prediction_shown, wait_saved, wait_shown  # noqa: E402
from tests.gui.fixtures import make_folder  # noqa: E402

pytestmark = pytest.mark.gui


def _key(qtbot, win, key) -> None:
    win.activateWindow()
    win.gallery.setFocus()
    qtbot.keyClick(win.gallery, key)


def test_p_walks_the_segmenters_least_sure_frames_and_the_counter_counts_accepted_masks(tmp_path, qtbot, monkeypatch):
    import torch

    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.tiny_models import save_tiny_models

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    torch.set_num_threads(1)
    models = save_tiny_models(tmp_path / "models")
    root = tmp_path / "ir"
    make_folder(root / "line", n=6)
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for family, path in models.items():
        card = json.loads((Path(path) / "card.json").read_text())
        db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    save_routing(db, Routing((RoutingRule("line/*", ("segmenter",)),)))

    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False, worker_args=("--batch-size", "4"))
    qtbot.addWidget(win)
    win.show()
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: len(win.jobs.active) == 1, timeout=10000)
    assert win.jobs.wait(180), "pre-labelling did not finish"
    ctl = win.label_next

    def answered() -> bool:   # the batch chosen again once the worker's answers (with their confidence) came
        r = ctl.result
        return (r is not None and len(r.proposal.image_ids) == 6
                and not any("no segmenter answer yet" in why for why in r.proposal.reasons.values()))
    qtbot.waitUntil(answered, timeout=30000)
    qtbot.waitUntil(lambda: "6 of 6 frames proposed left" in ctl.line.text(), timeout=10000)
    assert f"segmenter: {MIN_SEGMENTER_FRAMES} more reviewed frames with masks" in ctl.line.text()
    stored = [p.confidence for i in ctl.result.proposal.image_ids for p in db.predictions.for_image(i)]
    assert stored and all(c is not None and 0.0 <= c <= 1.0 for c in stored)

    _key(qtbot, win, Qt.Key.Key_P)
    first = ctl.result.proposal.image_ids[0]
    qtbot.waitUntil(lambda: win.review.image_id == first, timeout=10000)
    wait_shown(win, qtbot, first)
    wait_prediction_shown(win, qtbot)
    _key(qtbot, win, Qt.Key.Key_A)   # the segmenter's answer kept as the mask ("no target" too): one frame counted
    wait_saved(win, qtbot)
    assert db.labels.current(first).mask_png is not None
    qtbot.waitUntil(lambda: f"segmenter: {MIN_SEGMENTER_FRAMES - 1} more" in ctl.line.text(), timeout=15000)
    assert "5 of 6 frames proposed left" in ctl.line.text()
    win.close()
