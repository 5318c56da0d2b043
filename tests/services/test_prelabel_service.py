"""The Qt-free pre-label API the GUI uses: submit, status with ETA, cancel, worker process handle."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.services.indexing import index_folder
from app.services.prelabel import PrelabelError, cancel_job, job_status, resolve_models, submit_prelabel
from database.engine import open_database
from database.models import utcnow
from tests.tiny_models import save_tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    yield database
    database.close()


def _folder(db, tmp_path: Path, n: int = 3) -> int:
    (tmp_path / "imgs").mkdir()
    for i in range(n):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(b"x" * (i + 1))
    return index_folder(db, tmp_path / "imgs").folder_id


def test_submit_records_versions_and_only_explicit_flag_settings(db, tmp_path: Path, models) -> None:
    folder = _folder(db, tmp_path)
    job_id = submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"], model_dirs=models)
    job = db.jobs.get(job_id)
    assert job.kind == "prelabel" and job.progress_total == 3
    assert job.params["families"] == ["classifier", "anomaly"]
    versions = {f: db.model_versions.get(v) for f, v in job.params["model_versions"].items()}
    assert Path(versions["anomaly"].checkpoint_path) == models["anomaly"].resolve()
    assert "flags" not in job.params  # the worker flags with the project's thresholds of the moment
    # the same directory is the same version next time
    again = submit_prelabel(db, folder_id=folder, families=["anomaly"], model_dirs=models, only_missing=False)
    assert db.jobs.get(again).params["model_versions"]["anomaly"] == versions["anomaly"].id


def test_bad_requests_are_refused_with_a_reason(db, tmp_path: Path, models) -> None:
    folder = _folder(db, tmp_path)
    with pytest.raises(PrelabelError, match="either a folder or"):
        submit_prelabel(db, model_dirs=models)
    with pytest.raises(PrelabelError, match="no model family"):
        submit_prelabel(db, folder_id=folder, families=[], model_dirs=models)
    with pytest.raises(PrelabelError, match="not a model directory"):
        submit_prelabel(db, folder_id=folder, model_dirs={**models, "segmenter": tmp_path})
    with pytest.raises(PrelabelError, match="unknown family"):
        resolve_models(db, ["detector"])


def test_status_has_rate_and_eta_and_cancel_stops_the_job(db, tmp_path: Path, models) -> None:
    folder = _folder(db, tmp_path, n=4)
    job_id = submit_prelabel(db, folder_id=folder, families=["anomaly"], model_dirs=models)
    s = job_status(db, job_id)
    assert (s.state, s.done, s.total, s.fraction, s.eta_seconds) == ("queued", 0, 4, 0.0, None)
    batch = db.jobs.claim_items("test:1:x", 2)
    db.jobs.complete_items("test:1:x", [batch.items[0].id])
    with db.session(write=True) as sess:  # pretend the job started 10 s ago
        from database.models import Job
        sess.get(Job, job_id).started_at = utcnow() - timedelta(seconds=10)
    s = job_status(db, job_id)
    assert s.state == "running" and s.done == 1 and s.fraction == 0.25
    assert 0.05 < s.images_per_second < 0.2 and 20 < s.eta_seconds < 40
    s = cancel_job(db, job_id)
    assert s.cancel_requested and not s.finished  # one item is still in a worker's hands
    db.jobs.release_items("test:1:x", [batch.items[1].id])
    assert job_status(db, job_id).state == "cancelled"
    with pytest.raises(PrelabelError, match="does not exist"):
        job_status(db, 999)


def test_a_version_registered_by_another_station_meanwhile_is_used(db, models, monkeypatch) -> None:
    """Two stations on a new database registered the bundled model at once: one failed its first pre-labelling
    with "already registered" (a raw duplicate-key line on PostgreSQL; a session-47 audit)."""
    from app.services import prelabel

    other = prelabel.bundled_version(db, "classifier")         # the other station, a moment ago
    real = db.model_versions.by_name
    reads: list[str] = []

    def by_name(family: str, name: str):
        reads.append(name)
        return None if len(reads) == 1 else real(family, name)  # the first read was made before the other's commit
    monkeypatch.setattr(db.model_versions, "by_name", by_name)
    assert prelabel.bundled_version(db, "classifier").id == other.id  # this station had read "not there"


def test_a_model_folder_deep_in_the_tree_gets_a_name_that_fits(db, tmp_path: Path, models) -> None:
    """The version's name held the folder's whole path: past 255 characters PostgreSQL refused it with "value too
    long", the dialog blaming the database (a session-47 audit)."""
    import shutil

    from app.services.prelabel import version_for_dir
    deep = tmp_path.joinpath(*(["a_rather_long_folder_name_of_a_line"] * 8)) / "classifier-copy"
    shutil.copytree(models["classifier"], deep)
    version = version_for_dir(db, "classifier", deep)
    assert len(version.name) <= 255 and version.name.startswith("classifier-copy (")
    assert version_for_dir(db, "classifier", deep).id == version.id
    with pytest.raises(ValueError, match="1 to 255 characters"):
        db.model_versions.register("classifier", "x" * 256, str(deep))


def test_a_folder_pre_labelled_again_runs_only_the_families_its_images_lack(db, tmp_path: Path, models) -> None:
    """A session-48 audit: after a new classifier version, pre-labelling the folder again ran the tile anomaly model over
    every image a second time (a job does all its families on each image), rewriting answers it already had."""
    from database import PredictionIn

    folder = _folder(db, tmp_path)
    first = db.jobs.get(submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"], model_dirs=models))
    ids = [im.id for im in db.images.query()]
    anomaly = first.params["model_versions"]["anomaly"]
    db.predictions.upsert_many([PredictionIn(i, anomaly, anomaly_score=0.1) for i in ids])   # the anomaly model answered
    again = db.jobs.get(submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"], model_dirs=models))
    assert again.params["families"] == ["classifier"] and list(again.params["model_versions"]) == ["classifier"]
    assert again.progress_total == 3
    db.predictions.delete_for_images(anomaly, ids[:1])   # one image lacks both: the job runs both
    both = db.jobs.get(submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"], model_dirs=models))
    assert both.params["families"] == ["classifier", "anomaly"]


def test_a_folder_of_new_images_and_images_lacking_one_answer_is_queued_by_what_each_lacks(db, tmp_path: Path,
                                                                                          models) -> None:
    """A job runs each of its families on each of its images: a folder holding new images beside images that lack
    only a new classifier's answers ran the anomaly model again on the latter. They are queued apart."""
    from app.services.prelabel import submit_routed_prelabel
    from database import PredictionIn

    folder = _folder(db, tmp_path)
    first = db.jobs.get(submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"], model_dirs=models))
    ids = sorted(im.id for im in db.images.query())
    anomaly = first.params["model_versions"]["anomaly"]
    db.predictions.upsert_many([PredictionIn(i, anomaly, anomaly_score=0.1) for i in ids[1:]])
    jobs = [db.jobs.get(j) for j in submit_routed_prelabel(db, folder_id=folder, families=["anomaly", "classifier"],
                                                           model_dirs=models)]
    by_families = {tuple(j.params["families"]): j.progress_total for j in jobs}
    assert by_families == {("classifier", "anomaly"): 1, ("classifier",): 2}
