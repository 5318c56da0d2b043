"""Screenshots of the real application for the README (docs/screenshots/*.png).

Runs the station offscreen on a private copy of its data (temporary database and settings),
opens the bundled demo project, pre-labels it with the real worker process and the bundled
models, reviews a few images the way an inspector would (accept, correct a class, paint a mask,
mark an anomaly), and grabs the main window in both themes plus the export, import and Models dialogs:

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs/screenshots]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spin(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def settle(app, window) -> None:
    window.thumbs.wait_idle(20_000)
    window.viewer_ctl.loader.wait_idle(20_000)
    spin(app, 0.6)


def pick(window, predicate):
    for it in window.gallery_model.items():
        if predicate(it):
            return it
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for pre-labelling")
    ap.add_argument("--model", action="append", default=[], metavar="FAMILY=DIR",
                    help="use this model directory for a family (repeatable); default: the bundled ones")
    ap.add_argument("--tiny-models", action="store_true",
                    help="pre-label with freshly initialised test_tiny models instead of the bundled ones "
                         "(for a checkout without bundled checkpoints; predictions are then meaningless)")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="station-shots-"))
    os.environ["INSPECTION_STATION_HOME"] = str(home)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import cv2
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from app.commands.gui import DEMO, build_window
    from app.gui.export_dialog import open_export_dialog
    from app.gui.import_dialog import open_import_dialog
    from app.gui.models_dialog import ModelsDialog
    from app.gui.settings_store import StationSettings
    from app.services.retrain_protocol import retrain_argv
    from app.services.station import open_station

    app = QApplication([])
    url = f"sqlite:///{(home / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for spec in args.model:
        import json
        family, _, path = spec.partition("=")
        card = json.loads((Path(path) / "card.json").read_text()) if (Path(path) / "card.json").is_file() else {}
        db.model_versions.register(family, Path(path).name, str(Path(path).resolve()), card=card, activate=True)
    if args.tiny_models:
        import json

        from tests.tiny_models import save_tiny_models
        for family, path in save_tiny_models(home / "models").items():
            card = json.loads((path / "card.json").read_text())
            db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    window = build_window(db, StationSettings(reviewer="A. Inspector", theme="light"), url, interactive=False)
    window.resize(1600, 960)
    window.show()
    # As on a first launch: the demo's model routing, then opening it queues one pre-label job
    # per family set (its images are new).
    window.ctx.prepare_demo(window)
    window.open_folder(str(DEMO))
    window.auto_prelabel.calls.wait_idle(60)
    jobs = sorted(window.jobs.active)
    if not jobs or not window.jobs.wait(args.timeout):
        print("error: pre-labelling the demo project did not finish", file=sys.stderr)
        return 2
    for job in jobs:
        progress = window.jobs.jobs.status(job)
        print(f"pre-labelled {progress.done}/{progress.total} images ({progress.failed} failed) "
              f"with {', '.join(window.jobs.jobs.families_of(job))}")
    window.refresh_models()
    settle(app, window)

    # Review a few images as an inspector would.
    window.queue_panel.set_sort("anomaly")
    spin(app, 0.3)
    items = window.gallery_model.items()
    r = window.review
    for it in items[3:6]:
        window.queue.select(it.image_id)
        spin(app, 0.2)
        r.accept()
    reject = items[-1]
    window.queue.select(reject.image_id)
    spin(app, 0.2)
    r.reject()
    # The demo routes each subfolder to its own family (resources/samples/demo_routing.json).
    # A tile with its heatmap: the inspector marks it anomalous and takes the hottest part of
    # the map as the anomaly region.
    tiles = [it for it in window.gallery_model.items()
             if it.rel_path.startswith("tiles/") and it.anomaly_score is not None]
    tile = max(tiles, key=lambda it: it.anomaly_score) if tiles else items[0]
    window.queue.select(tile.image_id)
    settle(app, window)
    pred = window.ctx.review.detail(tile.image_id).prediction
    w, h = window.viewer.image_size()
    if w and pred is not None and pred.heatmap is not None:
        heat = cv2.resize(pred.heatmap, (w, h), interpolation=cv2.INTER_LINEAR)
        r.set_region(heat >= np.quantile(heat, 0.97))
        r.set_verdict("anomalous")
    window.viewer.set_tool("brush")
    window.layer_panel.sliders["heatmap"].setValue(45)
    window.queue.refresh()
    settle(app, window)
    window.grab().save(str(out / "main_window.png"))

    # An infrared frame with a detected target: the inspector redraws the target a little larger.
    target = pick(window, lambda it: it.rel_path.startswith("infrared/") and (it.target_count or 0) > 0)
    if target is not None:
        window.queue.select(target.image_id)
        settle(app, window)
        pred = window.ctx.review.detail(target.image_id).prediction
        if pred is not None and pred.mask is not None:
            r.set_mask(cv2.dilate(pred.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        window.queue.refresh()
        settle(app, window)
        if pred is not None and pred.mask is not None and pred.mask.any():
            ys, xs = np.nonzero(pred.mask)  # zoomed in on the target, as an inspector checks one
            window.viewer.zoom_by(3.0, anchor_under_mouse=False)
            window.viewer.centerOn(float(xs.mean()), float(ys.mean()))
            spin(app, 0.3)
        window.grab().save(str(out / "infrared_target.png"))

    steel = pick(window, lambda it: it.rel_path.startswith("steel/") and it.predicted_class is not None)
    if steel is not None:
        window.queue.select(steel.image_id)
        settle(app, window)
    window.apply_theme("dark")
    window.actions["compare"].setChecked(True)
    settle(app, window)
    window.grab().save(str(out / "main_window_dark_side_by_side.png"))
    window.actions["compare"].setChecked(False)
    window.apply_theme("light")

    dlg = open_export_dialog(window)
    dlg.out.setText(str(home / "export" / "dataset"))
    dlg.use_split.setChecked(True)
    dlg.show()
    dlg.start()
    dlg.wait(60_000)
    spin(app, 0.5)
    dlg.grab().save(str(out / "export_dialog.png"))
    dlg.close()

    # Import: a class tree from another tool, one of its classes spelt differently, mapped, previewed.
    incoming = home / "incoming"
    steel_items = [it for it in window.gallery_model.items() if it.rel_path.startswith("steel/")][:6]
    for i, it in enumerate(steel_items):
        cls = ("Scratch", "crazing", "patches")[i % 3]
        (incoming / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(it.path, incoming / cls / Path(it.rel_path).name)
    imp = open_import_dialog(window)
    imp.source.setText(str(incoming))
    imp.format.setCurrentIndex(imp.format.findData("imagefolder"))
    imp.scope_all.setChecked(True)
    imp.show()
    imp.start_preview()
    imp.wait(60_000)
    spin(app, 0.3)
    for r in range(imp.mapping.rowCount()):
        if imp.mapping.item(r, 0).text() == "Scratch":
            imp.mapping.cellWidget(r, 1).setCurrentText("scratches")
    imp.start_preview()
    imp.wait(60_000)
    spin(app, 0.5)
    imp.grab().save(str(out / "import_dialog.png"))
    imp.close()

    models = ModelsDialog(window.ctx.models, lambda family, epochs: retrain_argv(url, family, epochs),
                          interactive=False, parent=window)
    models.show()
    models.table.selectRow(0)
    spin(app, 0.3)
    models.grab().save(str(out / "models_dialog.png"))
    models.close()
    window.close()
    db.close()
    shutil.rmtree(home, ignore_errors=True)
    for p in sorted(out.glob("*.png")):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
