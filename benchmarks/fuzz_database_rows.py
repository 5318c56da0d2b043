"""Fuzz database rows: a tampered or hand-edited shared database through open, export and the worker.

    PYTHONPATH=. python benchmarks/fuzz_database_rows.py --cases 300 --seed 0 [--minutes 5]

A template station (SQLite) holds a folder of six real images, three with human label histories,
tiny active models, predictions and a queued pre-label job. Each case copies it and rewrites one
to three rows with raw SQL, as a careless script or a tampered shared database would: image paths
with ``../`` or absolute, sizes negative or text, unknown review states, job parameters that are
not JSON or name missing models, job items pointing nowhere, label masks that are not PNGs,
prediction scores that are not JSON, model paths that are files or missing. The station then opens
it, reads the review queue, exports it and runs the worker once.

Findings: an exception other than the station's own refusals (DatabaseError, ExportError), an
unclear message, any change to the label table (labels are only ever appended by a person), the
export changing any row, or the export copying a file from outside the indexed folder.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from fuzz_common import Tally, parser, run_cases, unclear

SECRET = b"outside the indexed folder: must never be exported"

TAMPER = {
    "images": [("rel_path", ("../outside.png", "{outside}", "", "a\x00b.png", "x" * 5000, ".", "sub/../../outside.png")),
               ("width", (-5, 10 ** 12, "abc", None)), ("height", (0, -1, 3.5)),
               ("review_state", ("bogus", "", None)), ("missing", (2, "yes")), ("folder_id", (999,)),
               ("priority", ("high", None))],
    "folders": [("root_path", ("/nonexistent/root", "", "{outside}", "/")), ("name", ("", "x" * 5000))],
    "jobs": [("params", ("not json", "{}", '{"model_versions": {"anomaly": "x"}}', '{"model_versions": 5}',
                         '{"model_versions": {"anomaly": 99999}}', "null", "[]")),
             ("status", ("bogus", "failed", "done")), ("kind", ("unknown-kind", "export")),
             ("progress_total", (-3, 10 ** 9))],
    "job_items": [("image_id", (99999, None)), ("status", ("bogus", "running")), ("attempts", (-1, 10 ** 9)),
                  ("claimed_by", ("ghost:1:dead",))],
    "label_revisions": [("mask_png", (b"not a png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20)),
                        ("review_state", ("bogus",)), ("anomaly_verdict", ("maybe",)),
                        ("class_name", ("x" * 3000, "")), ("from_prediction_id", (99999,))],
    "predictions": [("class_scores", ("garbage", '{"a": "b"}', "[]")), ("mask_png", (b"junk",)),
                    ("flags", ("nope",)), ("confidence", ("high",)), ("anomaly_map_ref", ("../../etc/passwd",))],
    "model_versions": [("checkpoint_path", ("/nonexistent/model", "{outside}", "")),
                       ("family", ("bogus",)), ("metrics", ("not json",))],
}


def table_digest(path: Path, table: str) -> str:
    with sqlite3.connect(path) as con:
        rows = con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def all_digests(path: Path) -> dict[str, str]:
    return {t: table_digest(path, t) for t in TAMPER}


class RowFuzzer:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="fuzz_rows."))
        self.outside = self.tmp / "outside.png"
        self.outside.write_bytes(SECRET)
        self.template = self.tmp / "template.sqlite"
        self.tally = Tally("fuzz_database_rows")
        self.build_template()

    def build_template(self) -> None:
        from app.services.indexing import index_folder
        from app.services.prelabel import submit_prelabel
        from database import LabelChange, ReviewState
        from tests.tiny_models import save_tiny_models
        from tests.worker.helpers import good_images, make_db

        self.models = save_tiny_models(self.tmp / "models")
        self.root = self.tmp / "images"
        good_images(self.root, 6)
        db = make_db(f"sqlite:///{self.template}", self.models)
        try:
            folder = index_folder(db, self.root).folder_id
            images = db.images.query()
            for i, image in enumerate(images[:3]):
                db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
                db.labels.append(image.id, LabelChange(ReviewState.ACCEPTED if i else ReviewState.CORRECTED,
                                                       class_name="crack"), "bob")
            submit_prelabel(db, image_ids=[im.id for im in images[:2]], families=["anomaly"])
            from app.services.artifacts import ArtifactStore
            from app.worker import Worker, WorkerOptions
            Worker(db, WorkerOptions(device="cpu"), artifacts=ArtifactStore(self.tmp / "art")).run(once=True)
            submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"])
        finally:
            db.close()

    def tamper(self, path: Path, rng: random.Random) -> list[str]:
        done = []
        with sqlite3.connect(path) as con:
            for _ in range(rng.randint(1, 3)):
                table = rng.choice(sorted(TAMPER))
                column, values = rng.choice(TAMPER[table])
                value = rng.choice(values)
                if isinstance(value, str):
                    value = value.replace("{outside}", str(self.outside))
                ids = [r[0] for r in con.execute(f"SELECT id FROM {table}")]
                if not ids:
                    continue
                row = rng.choice(ids)
                try:
                    con.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (value, row))
                except sqlite3.IntegrityError:  # the schema's own constraints refuse it: nothing to test
                    continue
                done.append(f"{table}.{column}[{row}]={str(value)[:40]!r}")
        return done

    def case(self, seed: int, rng: random.Random) -> str:
        path = self.tmp / f"case_{seed}.sqlite"
        shutil.copyfile(self.template, path)
        try:
            what = " ".join(self.tamper(path, rng))
            return self.check(seed, path, what)
        finally:
            path.unlink(missing_ok=True)
            for extra in self.tmp.glob(f"case_{seed}*"):
                shutil.rmtree(extra, ignore_errors=True) if extra.is_dir() else extra.unlink(missing_ok=True)

    def check(self, seed: int, path: Path, what: str) -> str:
        from app.services.artifacts import ArtifactStore
        from app.services.export import ExportError, ExportOptions, export_database
        from app.worker import Worker, WorkerOptions
        from database import DatabaseError, open_database

        labels_before = table_digest(path, "label_revisions")
        try:
            db = open_database(f"sqlite:///{path}")
        except DatabaseError as exc:
            self.clear(seed, "open", str(exc), what)
            return "open refused"
        outcome = []
        try:
            for step, run in (("queue", lambda: db.images.query()), ("labels", lambda: db.labels.current_labels())):
                try:
                    run()
                except DatabaseError as exc:
                    self.clear(seed, step, str(exc), what)
            before = all_digests(path)
            out = self.tmp / f"case_{seed}_export"
            try:
                export_database(db, out, ExportOptions(formats=("imagefolder", "csv")))
                outcome.append("exported")
                if any(p.is_file() and p.read_bytes() == SECRET for p in out.rglob("*")):
                    self.tally.finding(seed, "export copied a file from outside the indexed folder", what)
            except (ExportError, DatabaseError) as exc:
                outcome.append("export refused")
                self.clear(seed, "export", str(exc), what)
            if all_digests(path) != before:
                self.tally.finding(seed, "export changed the database", what)
            deadline = time.monotonic() + 60
            try:
                Worker(db, WorkerOptions(device="cpu", poll_s=0.01, stale_after_s=0.0),
                       artifacts=ArtifactStore(self.tmp / f"case_{seed}_art")).run(
                    until=lambda: time.monotonic() > deadline, once=True)
                outcome.append("worker ran")
            except DatabaseError as exc:
                outcome.append("worker refused")
                self.clear(seed, "worker", str(exc), what)
            if time.monotonic() > deadline:
                self.tally.finding(seed, "worker did not finish within 60 s", what)
        finally:
            db.close()
        if table_digest(path, "label_revisions") != labels_before:
            self.tally.finding(seed, "human labels changed", what)
        return ", ".join(outcome)

    def clear(self, seed: int, where: str, message: str, what: str) -> None:
        why = unclear(message)
        if why:
            self.tally.finding(seed, f"unclear {where} message ({why})", f"{what}: {message}")


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    fuzzer = RowFuzzer()
    return run_cases(fuzzer.tally, args, fuzzer.case, fuzzer.tmp)


if __name__ == "__main__":
    raise SystemExit(main())
