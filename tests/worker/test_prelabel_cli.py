"""End to end: ``python main.py prelabel FOLDER`` on a folder with good and bad files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from database.engine import open_database
from tests.conftest import ROOT
from tests.worker.helpers import make_db


def _folder(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    (root / "sub").mkdir(parents=True)
    good = {
        "gray": (root / "gray.png", rng.integers(0, 255, (40, 48), dtype=np.uint8)),
        "colour": (root / "sub" / "colour.jpg", rng.integers(0, 255, (36, 30, 3), dtype=np.uint8)),
        "bmp": (root / "sub" / "part.bmp", rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)),
        "tiff16": (root / "deep.tif", rng.integers(0, 65535, (32, 40), dtype=np.uint16)),
        "large": (root / "large.png", rng.integers(0, 255, (1400, 1200), dtype=np.uint8)),
    }
    for path, arr in good.values():
        assert cv2.imwrite(str(path), arr)
    (root / "corrupt.png").write_bytes((root / "gray.png").read_bytes()[:60])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("hello, I am not a picture\n")
    return {k: v[0] for k, v in good.items()}


def _prelabel(tmp_path: Path, url: str, *options: str) -> dict:
    """Run the command on ``tmp_path/parts``; its JSON report."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "main.py", "prelabel", str(tmp_path / "parts"), "--db", url, "--device", "cpu",
         *options, "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_prelabel_folder_with_bad_files(tmp_path: Path, tiny_models, single_thread_env) -> None:
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    make_db(url, tiny_models).close()
    good = _folder(tmp_path / "parts")
    data = _prelabel(tmp_path, url, "--batch-size", "3")
    assert data["images"] == 8
    assert data["predicted"] == {"classifier": 5, "segmenter": 5, "anomaly": 5}
    failed = {Path(f["path"]).name: f["reason"] for f in data["failed"]}
    assert set(failed) == {"corrupt.png", "empty.jpg", "text.png"}
    assert "empty file" in failed["empty.jpg"]
    assert "not a decodable image" in failed["text.png"] and "not a decodable image" in failed["corrupt.png"]
    assert data["seconds"] > 0 and data["images_per_second"] > 0

    db = open_database(url)
    try:
        for path in good.values():
            rel = path.relative_to(tmp_path / "parts").as_posix()
            image = next(im for im in db.images.query() if im.rel_path == rel)
            preds = db.predictions.for_image(image.id)
            assert len(preds) == 3, rel
            seg = next(p for p in preds if p.mask_png is not None)
            mask = cv2.imdecode(np.frombuffer(seg.mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
            assert mask.shape == cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
    finally:
        db.close()


def test_prelabel_follows_the_projects_model_routing(tmp_path: Path, tiny_models, single_thread_env) -> None:
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = make_db(url, tiny_models)
    save_routing(db, Routing((RoutingRule("sub/*", ("anomaly",)), RoutingRule("*.tif", ()))))
    db.close()
    _folder(tmp_path / "parts")
    data = _prelabel(tmp_path, url, "--families", "classifier,anomaly")
    assert sorted(j["families"] for j in data["jobs"]) == [["anomaly"], ["classifier", "anomaly"]]
    assert all(j["state"] == "done" for j in data["jobs"])
    # sub/ (colour.jpg, part.bmp) anomaly only; deep.tif skipped; gray.png and large.png get both
    # requested families; the three broken files fail in the job of both
    assert data["predicted"] == {"classifier": 2, "anomaly": 4}
    assert len(data["failed"]) == 3


def test_prelabel_runs_a_texture_linear_classifier_like_any_other(tmp_path: Path, tiny_models, single_thread_env) -> None:
    """A retrained texture_linear version goes through the worker unchanged: gray, colour, 16-bit and
    large files each get its class scores, and a file it cannot read is a failure, not a crash."""
    from inference.training.classifier_head import texture_matrix, write_texture_linear

    good = _folder(tmp_path / "parts")
    paths = sorted(good.values())
    texture = write_texture_linear(texture_matrix(paths), np.arange(len(paths)) % 2, ["dark", "light"], 1.0,
                                   tmp_path / "texture", {})
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    make_db(url, {**tiny_models, "classifier": texture}).close()
    data = _prelabel(tmp_path, url, "--families", "classifier", "--batch-size", "2")
    assert data["predicted"] == {"classifier": 5} and len(data["failed"]) == 3
    db = open_database(url)
    try:
        for path in paths:
            rel = path.relative_to(tmp_path / "parts").as_posix()
            (pred,) = db.predictions.for_image(next(im for im in db.images.query() if im.rel_path == rel).id)
            assert pred.predicted_class in ("dark", "light") and set(pred.class_scores or {}) == {"dark", "light"}
            assert abs(sum((pred.class_scores or {}).values()) - 1.0) < 1e-3
    finally:
        db.close()


def test_a_rerun_on_a_done_folder_queues_no_empty_job(tmp_path: Path, tiny_models, single_thread_env) -> None:
    """A session-47 audit: each re-run stored one job of 0 images per family set, pushing real jobs out of the Jobs
    panel's newest 20, and said "job N done: 0 images pre-labelled"."""
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    make_db(url, tiny_models).close()
    (tmp_path / "parts").mkdir()
    for i in range(2):
        assert cv2.imwrite(str(tmp_path / "parts" / f"p{i}.png"), np.full((24, 24), 40 * i, np.uint8))
    first = _prelabel(tmp_path, url)
    assert len(first["jobs"]) == 1 and first["predicted"]["classifier"] == 2
    proc = subprocess.run([sys.executable, "main.py", "prelabel", str(tmp_path / "parts"), "--db", url, "--device",
                           "cpu", "--report", str(tmp_path / "again.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["jobs"] == [] and again["predicted"] == first["predicted"]
    assert "nothing new to pre-label" in proc.stderr and "0 images pre-labelled" not in proc.stderr
    # no rate, no empty bar where nothing ran (a session-49 audit: "0.0 images/s", and 0.0 in the report)
    assert again["images_per_second"] is None and "images/s" not in proc.stderr and "0it" not in proc.stderr
    db = open_database(url)
    try:
        assert len(db.jobs.list()) == 1
    finally:
        db.close()


def test_a_rerun_takes_up_the_job_an_interrupted_run_left_open(tmp_path: Path, tiny_models, single_thread_env) -> None:
    """A session-47 audit: after a Ctrl-C or a kill of `prelabel`, running it again queued the same images in a new
    job and left the old one open for good (a later worker claimed every image twice). It is taken up now."""
    from app.services.indexing import index_folder
    from app.services.prelabel import submit_prelabel
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = make_db(url, tiny_models)
    (tmp_path / "parts").mkdir()
    for i in range(3):
        assert cv2.imwrite(str(tmp_path / "parts" / f"p{i}.png"), np.full((24, 24), 60 * i, np.uint8))
    left_open = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "parts").folder_id)  # the interrupted run's
    db.jobs.register_worker("killed")
    batch = db.jobs.claim_items("killed", 1)
    from database import PredictionIn
    versions = db.jobs.get(left_open).params["model_versions"]
    db.jobs.complete_items("killed", [batch.items[0].id],   # the killed run did one image, with every family
                           [PredictionIn(batch.items[0].image_id, v, predicted_class="crazing", confidence=0.9)
                            for v in versions.values()])
    db.close()
    proc = subprocess.run([sys.executable, "main.py", "prelabel", str(tmp_path / "parts"), "--db", url, "--device",
                           "cpu", "--report", str(tmp_path / "r.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [j["id"] for j in report["jobs"]] == [left_open] and report["jobs"][0]["state"] == "done", (report["jobs"], proc.stderr[-2000:])
    assert f"taking up job {left_open}" in proc.stderr and report["predicted"]["classifier"] == 3
    # this run's count and rate are its own (a session-48 probe: 72 images/s, the earlier run's 120 images counted)
    assert f"job {left_open} done: 3 images pre-labelled, 0 failed (2 in this run, 1 by earlier runs or other workers)" in proc.stderr
    assert report["images_per_second"] == pytest.approx(2 / report["seconds"], rel=0.01)
    db = open_database(url)
    try:
        assert [j.id for j in db.jobs.list()] == [left_open]
    finally:
        db.close()


def test_images_another_worker_does_meanwhile_are_not_counted_as_this_runs(tmp_path: Path, tiny_models, monkeypatch,
                                                                          capsys, single_thread_env) -> None:
    """A session-51 audit: with the station's worker on the same folder, `prelabel` said "job 1 done: 120 images
    pre-labelled, 0 failed (112 in this run, 8 by earlier runs)" and a rate over the 120, while the station's worker
    did 80 of them. The run counts its own worker's images, in the line and in the rate."""
    from app.cli import main as cli_main
    from app.worker import Worker
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    make_db(url, tiny_models).close()
    (tmp_path / "parts").mkdir()
    for i in range(4):
        assert cv2.imwrite(str(tmp_path / "parts" / f"p{i}.png"), np.full((24, 24), 50 * i, np.uint8))
    run = Worker.run

    def beside_the_stations_worker(self, *args, **kwargs):
        other = "station:4242:cafe"   # the station's worker takes two of the job's images as this run's starts
        batch = self.db.jobs.claim_items(other, 2, only_jobs=self.options.jobs)
        self.db.jobs.complete_items(other, [it.id for it in batch.items])
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Worker, "run", beside_the_stations_worker)
    monkeypatch.setattr(Worker, "install_signal_handlers", lambda self: None)   # pytest keeps its own Ctrl-C
    report = tmp_path / "r.json"
    assert cli_main(["prelabel", str(tmp_path / "parts"), "--db", url, "--device", "cpu",
                     "--report", str(report)]) == 0
    err = capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["jobs"][0]["state"] == "done", err[-2000:]
    assert "done: 4 images pre-labelled, 0 failed (2 in this run, 2 by earlier runs or other workers)" in err, err[-2000:]
    assert data["images_per_second"] == pytest.approx(2 / data["seconds"], rel=0.01)


def test_models_compare_run_with_a_maps_folder_it_cannot_write_is_one_line(tmp_path: Path, tiny_models,
                                                                          single_thread_env) -> None:
    """The review of session 47: once a maps folder that cannot be written stopped the worker (its images wait,
    none failed for it), `models compare --run` ended in a traceback."""
    from app.services.artifacts import ArtifactStore
    from app.services.indexing import index_folder
    from app.services.prelabel import submit_prelabel
    from app.worker import Worker, WorkerOptions
    from tests.tiny_models import save_tiny_models
    from tests.worker.helpers import good_images
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    db = make_db(url, {"anomaly": tiny_models["anomaly"]})
    good_images(tmp_path / "imgs", 2)
    submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    Worker(db, WorkerOptions(device="cpu", batch_size=4), artifacts=ArtifactStore(tmp_path / "maps0")).run(once=True)
    other = save_tiny_models(tmp_path / "other", seed=1)
    challenger = db.model_versions.register("anomaly", "challenger", str(other["anomaly"]), challenger=True)
    db.close()
    (tmp_path / "db-artifacts").write_text("not a folder")  # the station's maps folder cannot be made
    proc = subprocess.run([sys.executable, "main.py", "--db", url, "models", "compare", str(challenger.id), "--run",
                           "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the anomaly maps cannot be written to" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("open_for", "asked"), [(["anomaly"], None), (["classifier", "segmenter", "anomaly"], "anomaly")])
def test_a_rerun_runs_every_family_asked_whatever_job_was_left_open(tmp_path: Path, tiny_models, single_thread_env,
                                                                     open_for, asked) -> None:
    """The review of session 47: with an anomaly-only job left open, a plain re-run took it up and left the images
    out of its own job, so the classifier and the segmenter never ran; with a three-family job open, `--families
    anomaly` said "nothing new" and ran nothing. An image waits only in a job doing the same work."""
    from app.services.indexing import index_folder
    from app.services.prelabel import submit_prelabel
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = make_db(url, tiny_models)
    (tmp_path / "parts").mkdir()
    for i in range(3):
        assert cv2.imwrite(str(tmp_path / "parts" / f"p{i}.png"), np.full((24, 24), 60 * i, np.uint8))
    submit_prelabel(db, folder_id=index_folder(db, tmp_path / "parts").folder_id, families=open_for)
    db.close()
    report = _prelabel(tmp_path, url, *(["--families", asked] if asked else []))
    assert report["predicted"] == ({"anomaly": 3} if asked else {"classifier": 3, "segmenter": 3, "anomaly": 3})
