"""What the per-image class buttons (ADR 0068) cost an image's detail read, against the read before them.

    PYTHONPATH=. python benchmarks/detail_classes.py [--images 20000] [--reads 300] [--db URL] [--json FILE]

Why: the label panel's detail of the shown image (and the ones read ahead) is read off the GUI thread on every move;
since session 35 it also reads the routing, the image's folder and, where the routing runs no classifier, the
classes the labels of its subfolder use. A project of ``--images`` images in three subfolders (steel: the active
classifier; tiles: a rule naming another classifier; bottles: a rule running none), one label in ten, one
classifier answer per steel and tile image. The same random images' details are read with the class buttons as
they are now and as before (``ReviewService._classes_here`` replaced by the old rule: the counting version's
classes, else none), alternating image by image in one process; medians and the ratio are printed.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(db: Any, n: int) -> list[int]:
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database.dto import FileEntry, LabelChange, PredictionIn
    from database.states import ReviewState

    steel = db.model_versions.register("classifier", "steel", "/nowhere", activate=True,
                                       card={"classes": ["crazing", "patches", "scratches"]})
    tile = db.model_versions.register("classifier", "tile", "/nowhere", card={"classes": ["blowhole", "free"]})
    folder = db.folders.add("/data/line")
    subs = ("steel", "tiles", "bottles")
    entries = [FileEntry(f"{subs[i % 3]}/{i:07d}.png", 100, 1, content_hash=f"h{i}") for i in range(n)]
    ids = list(db.images.sync(folder.id, entries).added_ids)
    save_routing(db, Routing((RoutingRule("line/tiles/*", ("classifier", "anomaly"), (("classifier", "tile"),)),
                              RoutingRule("line/bottles/*", ("anomaly",)))))
    rng = random.Random(0)
    for k, image_id in enumerate(ids):
        if k % 10 == 0:
            sub = subs[k % 3]
            name = {"steel": "patches", "tiles": "free", "bottles": rng.choice(["good", "broken"])}[sub]
            db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name=name), "bench")
    answers = [PredictionIn(i, (steel if k % 3 == 0 else tile).id, class_scores={"x": 1.0}, predicted_class="x",
                            confidence=1.0) for k, i in enumerate(ids) if k % 3 != 2]
    db.predictions.upsert_many(answers)
    from app.services.counting_versions import remark
    from app.services.project_settings import readable_routing
    remark(db, readable_routing(db))   # the answers that count, as saving the rules marks them
    return ids


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--db", default="", help="database URL (default: a new SQLite file)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from app.services.review import ReviewService
    from database import open_database

    tmp = tempfile.mkdtemp(prefix="detail-classes-")
    db = open_database(args.db or f"sqlite:///{tmp}/station.sqlite")
    t0 = time.perf_counter()
    ids = build(db, args.images)
    built = time.perf_counter() - t0
    svc = ReviewService(db)
    now = svc._classes_here

    def before(im: Any, prediction: Any) -> tuple[tuple[str, ...], bool]:
        classifier = prediction.version_ids.get("classifier") if prediction is not None else None
        return (tuple(svc.classes_for(classifier)) if classifier is not None else ()), True

    sample = random.Random(1).sample(ids, min(args.reads, len(ids)))
    times: dict[str, list[float]] = {"now": [], "before": []}
    for image_id in sample:   # alternate, so that load on the shared machine falls on both alike
        for name, rule in (("now", now), ("before", before)):
            svc._classes_here = rule  # type: ignore[method-assign]
            t = time.perf_counter()
            svc.detail(image_id)
            times[name].append(1000 * (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    p95 = {k: sorted(v)[int(0.95 * (len(v) - 1))] for k, v in times.items()}
    report = {"images": args.images, "reads": len(sample), "build_s": round(built, 1),
              "median_ms": {k: round(v, 3) for k, v in med.items()}, "p95_ms": {k: round(v, 3) for k, v in p95.items()},
              "ratio_median": round(med["now"] / med["before"], 3)}
    print(f"{args.images} images, {len(sample)} details each way: median {med['before']:.2f} ms before, "
          f"{med['now']:.2f} ms now (x{report['ratio_median']}); p95 {p95['before']:.2f} -> {p95['now']:.2f} ms")
    from json_report import write_report

    write_report(report, args.json)
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
