"""What the prediction marker (``predictions.current_family``, ADR 0058) costs the writes that keep it.

On a copy of a database ``benchmarks/scale.py`` left behind (``--keep DIR``: a prediction per image
and family), in one process:

- a worker's batches: ``--batch`` predictions of the active classifier stored again (updates) and
  of a new version (inserts), timed per batch (median, worst): the insert reads its versions'
  markers in the same transaction;
- an activation that moves the markers: a new classifier version with a prediction for every
  image, activated and rolled back (each moves every row of both versions), timed;
- with ``--routing PATTERN`` (the code after ADR 0059 only): rules naming the new version for the
  images matching PATTERN saved (every image re-marked), saved again (nothing changes), then an
  activation with those rules in force (the active one's images moved, then re-marked), timed; and the
  scope of a retraining of the named and of the active version (ADR 0060: ``version_scope``) with the
  comparison images drawn from it.

Run it on the same database copy with the code before and after the change to compare (the
script uses only the public repositories: ``upsert_many``, ``register``, ``change_active``).

    python benchmarks/current_prediction.py sqlite:////tmp/copy.sqlite [--batch 32] [--batches 50]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from database import open_database  # noqa: E402
from database.dto import PredictionIn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--routing", help="a pattern: time the re-marks of rules naming the new version there")
    args = ap.parse_args()
    db = open_database(args.url)
    with db.engine.connect() as c:
        ids = [int(i) for i in c.execute(text("SELECT id FROM images ORDER BY id")).scalars()]
    active = db.model_versions.active("classifier")
    assert active is not None, "run benchmarks/scale.py first: it leaves an active classifier"
    new = db.model_versions.register("classifier", f"marker-bench-{time.time_ns()}", "/none")
    print(f"{len(ids)} images; active classifier {active.name}; new version {new.name}")

    def batches(version_id: int, offset: int) -> list[float]:
        out = []
        for b in range(args.batches):
            part = ids[offset + b * args.batch: offset + (b + 1) * args.batch]
            preds = [PredictionIn(i, version_id, predicted_class="a", confidence=0.5) for i in part]
            t = time.perf_counter()
            db.predictions.upsert_many(preds)
            out.append(time.perf_counter() - t)
        return out

    for what, vid in (("stored again (active version, updates)", active.id), ("new rows (another version)", new.id)):
        times = batches(vid, 0)
        print(f"worker batch of {args.batch}, {what}: median {statistics.median(times) * 1000:.1f} ms, "
              f"worst {max(times) * 1000:.1f} ms")
    rest = ids[args.batch * args.batches:]
    for k in range(0, len(rest), 20_000):
        db.predictions.upsert_many([PredictionIn(i, new.id, predicted_class="b", confidence=0.5)
                                    for i in rest[k:k + 20_000]])
    for action, vid in (("promote", new.id), ("rollback", active.id)):
        t = time.perf_counter()
        db.model_versions.change_active(vid, "bench", action=action)
        print(f"{action} (both versions predicted all {len(ids)} images): {(time.perf_counter() - t) * 1000:.0f} ms")
    if args.routing:
        remarks(db, args.routing, new.name)
    db.close()
    return 0


def remarks(db, pattern: str, name: str) -> None:
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    rules = Routing((RoutingRule(pattern, ("classifier", "segmenter", "anomaly"), (("classifier", name),)),))
    for what in ("rules naming it saved", "the same rules saved again"):
        t = time.perf_counter()
        changed = save_routing(db, rules)
        print(f"{what} ({pattern}): {changed} rows re-marked in {(time.perf_counter() - t) * 1000:.0f} ms")
    scopes(db, name)
    other = db.model_versions.register("classifier", f"marker-bench-other-{time.time_ns()}", "/none")
    t = time.perf_counter()
    _activate(db, other.id)
    print(f"activate a third version with those rules in force: {(time.perf_counter() - t) * 1000:.0f} ms")


def scopes(db, name: str) -> None:
    """ADR 0060: what finding a version's images costs a retraining (``version_scope``) and a comparison (its
    champion's images, then the 200 most recently reviewed and newest among them)."""
    from app.services.champion import COMPARE_LIMIT, compare_image_ids
    from app.services.retraining import version_scope
    for label, version in (("the named version", name), ("the active version", None)):
        t = time.perf_counter()
        scope = version_scope(db, "classifier", version)
        found = time.perf_counter() - t
        t = time.perf_counter()
        chosen = compare_image_ids(db, COMPARE_LIMIT, scope.images)
        print(f"scope of {label}: {len(scope.images or ())} images found in {found * 1000:.0f} ms; "
              f"{len(chosen)} comparison images among them in {(time.perf_counter() - t) * 1000:.0f} ms")


def _activate(db, version_id: int) -> None:
    """As the Models dialog does (``ModelCatalog.activate``, without its model-folder check)."""
    from app.services.counting_versions import after_activation
    version = db.model_versions.change_active(version_id, "bench", action="activate")
    after_activation(db, version.family)


if __name__ == "__main__":
    sys.exit(main())
