"""Is the review queue smooth on 10,000 images? Figures for the gallery and the queue query.

Builds a temporary database with N images (real PNG files, a few hundred distinct contents
under N names, every one indexed like a real folder) plus a prediction per image and family,
then measures, in this process:

- the review service's queue query (merge of three model families + current labels), per sort;
- resetting the gallery model with N items;
- scrolling the whole gallery page by page offscreen (each step repaints the viewport and
  may queue thumbnail decodes on the pool): the median and worst time per page, against the
  time to repaint one page with every thumbnail already cached (the baseline);
- how many thumbnails were decoded (only what came on screen, not N).

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_gallery.py [--images 10000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_images(folder: Path, n: int, distinct: int = 200, side: int = 256) -> None:
    import cv2
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    blobs = []
    for _k in range(distinct):
        img = (rng.random((side, side)) * 80 + 60).astype(np.uint8)
        lo, hi = 30 * side // 256, 220 * side // 256
        cv2.circle(img, (int(rng.integers(lo, hi)), int(rng.integers(lo, hi))), max(2, 12 * side // 256), 255, -1)
        blobs.append(cv2.imencode(".png", img)[1].tobytes())
    for i in range(n):
        sub = folder / f"lot{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"part_{i:05d}.png").write_bytes(blobs[i % distinct])


def offscreen_gallery():
    """The station's gallery (thumbnail cache, model, view) at its usual size, shown offscreen."""
    from app.gui.gallery_model import GalleryModel
    from app.gui.gallery_view import GalleryView
    from app.gui.thumbnails import ThumbnailCache
    cache = ThumbnailCache(size=120)
    model = GalleryModel()
    view = GalleryView(model, cache)
    view.resize(470, 900)
    view.show()
    return cache, model, view


def seed(db, folder_id: int, artifacts) -> None:
    import numpy as np

    from database.dto import ImageQuery, PredictionIn
    mv = {f: db.model_versions.register(f, f"bench-{f}", "/none", activate=True) for f in
          ("classifier", "segmenter", "anomaly")}
    rng = np.random.default_rng(1)
    ref = artifacts.put_map(rng.random((32, 32)).astype(np.float32))
    preds = []
    for im in db.images.query(ImageQuery(folder_id=folder_id, sort="id")):
        c = float(rng.random())
        preds += [PredictionIn(im.id, mv["classifier"].id, predicted_class=("a", "b", "c")[im.id % 3], confidence=c),
                  PredictionIn(im.id, mv["segmenter"].id, target_count=int(rng.integers(0, 4))),
                  PredictionIn(im.id, mv["anomaly"].id, anomaly_score=float(rng.random()), anomaly_map_ref=ref)]
    db.predictions.upsert_many(preds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="gallery-bench-"))
    os.environ["INSPECTION_STATION_HOME"] = str(tmp)

    from PySide6.QtWidgets import QApplication

    from app.services.artifacts import ArtifactStore
    from app.services.review import ReviewService
    from app.services.review_types import QueueFilter
    from app.services.station import open_station

    app = QApplication([])
    t = time.perf_counter()
    make_images(tmp / "images", args.images)
    print(f"wrote {args.images} images in {time.perf_counter() - t:.1f} s")
    db = open_station(f"sqlite:///{(tmp / 'bench.sqlite').as_posix()}")
    svc = ReviewService(db, artifacts=ArtifactStore(tmp / "artifacts"))
    t = time.perf_counter()
    info = svc.open_folder(tmp / "images")
    print(f"indexed {info.image_count} images in {time.perf_counter() - t:.1f} s")
    seed(db, info.id, svc._artifact_store())

    for sort in ("name", "uncertainty", "anomaly"):
        t = time.perf_counter()
        items = svc.queue(QueueFilter(folder_id=info.id, sort=sort))
        print(f"queue query, sort={sort}: {len(items)} items in {(time.perf_counter() - t) * 1000:.0f} ms")

    cache, model, view = offscreen_gallery()
    t = time.perf_counter()
    model.set_items(items)
    app.processEvents()
    print(f"gallery model reset with {len(items)} items: {(time.perf_counter() - t) * 1000:.0f} ms")

    bar = view.verticalScrollBar()
    page = bar.pageStep()
    steps, decoded_before = [], 0
    t_all = time.perf_counter()
    value = 0
    while value <= bar.maximum():
        t = time.perf_counter()
        bar.setValue(value)
        view.viewport().repaint()
        app.processEvents()
        steps.append(time.perf_counter() - t)
        value += page
    scroll_s = time.perf_counter() - t_all
    cache.wait_idle(60_000)
    app.processEvents()
    decoded = cache.decoded_count - decoded_before
    # Baseline: repaint the last page again, every thumbnail on it cached.
    base = []
    for _ in range(20):
        t = time.perf_counter()
        view.viewport().repaint()
        base.append(time.perf_counter() - t)
    med, worst, b = statistics.median(steps) * 1000, max(steps) * 1000, statistics.median(base) * 1000
    print(f"scrolled {len(steps)} pages in {scroll_s:.2f} s: median {med:.1f} ms/page, worst {worst:.1f} ms "
          f"(cached repaint baseline {b:.1f} ms; median/baseline {med / max(b, 1e-6):.1f}x)")
    print(f"thumbnails decoded: {decoded} of {len(items)} (only pages that were on screen)")
    cache.shutdown()
    db.close()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
