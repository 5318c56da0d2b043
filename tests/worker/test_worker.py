"""The worker in-process: predictions and flags stored per image, resume, cancel, stale claims."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.artifacts import ArtifactStore
from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.prelabel import cancel_job, failed_images, job_status, submit_prelabel
from app.worker import Worker, WorkerOptions
from database.dto import ImageQuery
from tests.worker.helpers import good_images, make_db


@pytest.fixture
def db(url, tiny_models):
    """SQLite, and PostgreSQL too when INSPECTION_TEST_POSTGRES_URL is set."""
    database = make_db(url, tiny_models)
    yield database
    database.close()


def _worker(db, tmp_path: Path, **kw) -> Worker:
    return Worker(db, WorkerOptions(device="cpu", batch_size=kw.pop("batch_size", 2), poll_s=0.05, **kw),
                  artifacts=ArtifactStore(tmp_path / "artifacts"))


def test_worker_stores_all_three_families_and_flags(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder, flag_settings=FlagSettings(min_confidence=0.99))
    w = _worker(db, tmp_path)
    stats = w.run(once=True)
    status = job_status(db, job)
    assert (status.state, status.done, status.failed, status.total) == ("done", 3, 1, 4)
    assert stats.per_family == {"classifier": 3, "segmenter": 3, "anomaly": 3}
    [(path, reason)] = failed_images(db, job)
    assert path.endswith("broken.png") and "not a decodable image" in reason
    images = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=folder))}
    assert "not a decodable image" in images["broken.png"].error
    for name in ("img_000.png", "img_001.png", "img_002.png"):
        preds = {p.model_version_id: p for p in db.predictions.for_image(images[name].id)}
        assert len(preds) == 3
        cls = next(p for p in preds.values() if p.predicted_class is not None)
        assert abs(sum(cls.class_scores.values()) - 1) < 1e-4
        assert "low_confidence" in cls.flags  # a random tiny model is never 99 % sure
        seg = next(p for p in preds.values() if p.mask_png is not None)
        mask = cv2.imdecode(np.frombuffer(seg.mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (32, 32) and seg.target_count >= 0
        assert seg.confidence is not None and 0.0 <= seg.confidence <= 1.0  # "label next" reads it (ADR 0071)
        anom = next(p for p in preds.values() if p.anomaly_map_ref is not None)
        assert w.artifacts.get_map(anom.anomaly_map_ref).ndim == 2
        assert images[name].flagged and images[name].priority >= 1


def test_resubmitting_runs_only_images_without_predictions(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    _worker(db, tmp_path).run(once=True)
    good_images(tmp_path / "imgs" / "more", 1, seed=5)
    index_folder(db, tmp_path / "imgs")
    again = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    assert job_status(db, again).total == 1


def test_cancel_stops_a_job_between_batches(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 8)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    w = _worker(db, tmp_path, batch_size=1)
    seen = []

    def on_batch(batch, results) -> None:
        seen.append(len(results))
        if len(seen) == 1:
            cancel_job(db, job)

    w.run(once=True, on_batch=on_batch)
    status = job_status(db, job)
    assert status.state == "cancelled" and status.done < 8
    assert sum(seen) == status.done


def test_a_file_changed_while_its_batch_was_on_the_way_is_pre_labelled_again_on_its_new_bytes(db, tmp_path: Path) -> None:
    """Found by a session-43 probe: a file overwritten (and re-indexed) while its item sat decoded in the worker's
    next batch got the answer made from its old bytes, stored after the re-index had dropped the old one, with the
    old size; nothing redid it (a new pre-label skipped it as done). Its item now goes back to the queue and is
    pre-labelled on the bytes the file holds."""
    import time
    paths = good_images(tmp_path / "imgs", 4)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    target = paths[3]
    seen: list[int] = []

    def on_batch(batch, results) -> None:
        seen.append(len(results))
        if len(seen) == 1:
            time.sleep(1.0)  # the next batch (the target among it) is decoded meanwhile
            img = np.full((48, 48), 255, np.uint8)
            img[::3] = 0
            assert cv2.imwrite(str(target), img)
            assert index_folder(db, tmp_path / "imgs").changed
    _worker(db, tmp_path, batch_size=2).run(once=True, on_batch=on_batch)
    image = {i.rel_path: i for i in db.images.query(ImageQuery(folder_id=folder))}[target.name]
    assert (image.width, image.height) == (48, 48)
    [stored] = [p.anomaly_score for p in db.predictions.for_image(image.id) if p.anomaly_score is not None]
    db.predictions.delete_for_images(db.model_versions.active("anomaly").id, [image.id])
    submit_prelabel(db, image_ids=[image.id], families=["anomaly"])
    _worker(db, tmp_path).run(once=True)
    [fresh] = [p.anomaly_score for p in db.predictions.for_image(image.id) if p.anomaly_score is not None]
    assert stored == pytest.approx(fresh)  # the answer of the bytes the file holds


def test_retrying_the_failed_images_of_a_cancelled_job_leaves_it_cancelled(db, tmp_path: Path) -> None:
    """Found by a session-43 probe: cancelled after its first batch (one image broken), then Retry: the job read
    "done: 1/8 · 1 of 8 images failed" with six images never run. It stays cancelled."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good_images(tmp_path / "imgs", 7)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    seen: list[int] = []

    def on_batch(batch, results) -> None:
        seen.append(len(results))
        if len(seen) == 1:
            cancel_job(db, job)
    _worker(db, tmp_path, batch_size=2).run(once=True, on_batch=on_batch)
    assert db.jobs.requeue_failed(job) == 1
    _worker(db, tmp_path, batch_size=2).run(once=True)
    status = job_status(db, job)
    assert (status.state, status.done, status.failed, status.total) == ("cancelled", 1, 1, 8)


def test_claims_of_a_dead_worker_are_requeued_and_finished(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 3)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    dead = "otherhost:999999:deadbeef"
    claimed = db.jobs.claim_items(dead, 2)
    assert len(claimed.items) == 2
    w = _worker(db, tmp_path, stale_after_s=0.0)
    w.run(once=True)
    status = job_status(db, job)
    assert (status.state, status.done) == ("done", 3)


def test_two_workers_split_a_job_without_overlap_sqlite(sqlite_url, tiny_models, tmp_path: Path) -> None:
    _split_between_two_workers(sqlite_url, tiny_models, tmp_path)


@pytest.mark.postgres
def test_two_workers_split_a_job_without_overlap_postgres(pg_url, tiny_models, tmp_path: Path) -> None:
    _split_between_two_workers(pg_url, tiny_models, tmp_path)


@pytest.mark.postgres
def test_a_frozen_workers_transaction_is_ended_before_other_workers_call_it_stale_postgres(
        pg_url, tiny_models, tmp_path: Path) -> None:
    """A session-51 audit: a worker frozen while saving held its images' rows locked for good, and no other worker
    could recover them. Each write transaction of a worker is ended by the server once it waits on the worker half the
    stale-after time (``Database.end_idle_writes_after``)."""
    from sqlalchemy import text
    db = make_db(pg_url, tiny_models)
    try:
        _worker(db, tmp_path, stale_after_s=60.0)
        with db.session(write=True) as s:
            assert s.scalar(text("SHOW idle_in_transaction_session_timeout")) == "30s"
    finally:
        db.close()


def _split_between_two_workers(url: str, models, tmp_path: Path) -> None:
    setup = make_db(url, models)
    good_images(tmp_path / "imgs", 10)
    job = submit_prelabel(setup, folder_id=index_folder(setup, tmp_path / "imgs").folder_id, families=["anomaly"])
    done: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def work(name: str) -> None:
        db = make_db(url, models)
        try:
            w = _worker(db, tmp_path)
            start.wait()
            w.run(once=True, on_batch=lambda batch, results: done[name].extend(r.key.image_id for r in results))
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    a, b = set(done["a"]), set(done["b"])
    assert not a & b and len(done["a"]) + len(done["b"]) == 10 and a and b
    assert job_status(setup, job).done == 10
    vid = setup.jobs.get(job).params["model_versions"]["anomaly"]
    assert len(setup.predictions.image_ids_with(vid)) == 10
    setup.close()


def test_new_thresholds_reflag_stored_predictions_without_models(db, tmp_path: Path) -> None:
    from app.services.reflag import reflag_folder

    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder, families=["classifier", "anomaly"])
    _worker(db, tmp_path).run(once=True)
    calm = FlagSettings(anomaly_threshold=1e9, good_classes=("free", "crack"), min_confidence=0.0)
    assert reflag_folder(db, folder, calm).checked == 3
    images = db.images.query(ImageQuery(folder_id=folder))
    assert not any(im.flagged for im in images) and all(im.priority < 1 for im in images)
    strict = FlagSettings(anomaly_threshold=-1.0, good_classes=("free", "crack"), min_confidence=0.0)
    reflag_folder(db, folder, strict)
    for im in db.images.query(ImageQuery(folder_id=folder)):
        assert im.flagged and im.priority >= 1
        anomaly_rows = [p for p in db.predictions.for_image(im.id) if p.anomaly_score is not None]
        assert anomaly_rows[0].flags == ("anomaly",) and anomaly_rows[0].anomaly_map_ref


def test_an_inspectors_flag_stands_over_later_pre_labelling_and_re_flagging(db, tmp_path: Path) -> None:
    """The flag key and the models' flag rules wrote one column: the next pre-label run or threshold
    change undid a flag an inspector had set or cleared (fails before 0012_inspector_flag)."""
    from app.services.reflag import reflag_folder

    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    ids = [im.id for im in db.images.query(ImageQuery(folder_id=folder, sort="id"))]
    db.images.set_inspector_flag([ids[0]], True, "alice")   # flagged by hand before any model ran
    calm = FlagSettings(anomaly_threshold=1e9, good_classes=("free", "crack"), min_confidence=0.0)
    submit_prelabel(db, folder_id=folder, families=["classifier", "anomaly"], flag_settings=calm)
    _worker(db, tmp_path).run(once=True)
    flags = {im.id: im.flagged for im in db.images.query(ImageQuery(folder_id=folder))}
    assert flags == {ids[0]: True, ids[1]: False, ids[2]: False}
    strict = FlagSettings(anomaly_threshold=-1.0, good_classes=("free", "crack"), min_confidence=0.0)
    reflag_folder(db, folder, strict)
    db.images.set_inspector_flag([ids[1]], False, "bob")    # the models flag it; an inspector says no
    reflag_folder(db, folder, strict)
    reflag_folder(db, folder, calm)
    reflag_folder(db, folder, strict)
    got = {im.id: (im.flagged, im.flag_override, im.flag_by) for im in db.images.query(ImageQuery(folder_id=folder))}
    assert got == {ids[0]: (True, True, "alice"), ids[1]: (False, False, "bob"), ids[2]: (True, None, None)}


def test_flags_follow_every_answer_that_counts_after_a_one_family_job_and_after_an_activation(
        db, other_models, tmp_path: Path) -> None:
    """Found by a session-43 probe: a job running one family re-flagged its images from that family alone (the
    classifier's low-confidence answers, still shown, no longer flagged them: the flagged filter lost every image);
    and making another version active left the images flagged, and first in the queue, by the version replaced,
    whose answers no longer count. The worker's batch and an activation now re-flag from the answers that count."""
    from app.services.model_catalog import ModelCatalog
    from app.services.project_settings import change_flag_settings
    good_images(tmp_path / "imgs", 4)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    change_flag_settings(db, FlagSettings(anomaly_threshold=1e9, min_confidence=0.99))  # only the classifier flags
    submit_prelabel(db, folder_id=folder)
    _worker(db, tmp_path).run(once=True)

    def flagged() -> list[bool]:
        return [im.flagged for im in db.images.query(ImageQuery(folder_id=folder, sort="id"))]
    assert flagged() == [True] * 4
    v2 = db.model_versions.register("anomaly", "anomaly-other", str(other_models["anomaly"]))
    ModelCatalog(db).activate(v2.id)
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    _worker(db, tmp_path).run(once=True)
    assert flagged() == [True] * 4  # the classifier's answers still count, and still flag
    c2 = db.model_versions.register("classifier", "classifier-other", str(other_models["classifier"]))
    ModelCatalog(db).activate(c2.id)  # no answer of it yet: no classifier answer counts
    assert flagged() == [False] * 4
    assert all(im.priority == 0.0 for im in db.images.query(ImageQuery(folder_id=folder)))


def test_the_worker_flags_with_the_projects_thresholds_in_the_database(db, tmp_path: Path) -> None:
    """No threshold copied into the job: a change saved by any station applies to the next batch."""
    from app.services.project_settings import save_flag_settings

    good_images(tmp_path / "imgs", 4)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    save_flag_settings(db, FlagSettings(good_classes=("free", "crack"), min_confidence=0.99))
    job = submit_prelabel(db, folder_id=folder, families=["classifier"])
    batches: list[list[int]] = []

    def on_batch(batch, results) -> None:
        batches.append([it.image_id for it in batch.items])
        if len(batches) == 1:  # another station relaxes the threshold while the job runs
            save_flag_settings(db, FlagSettings(good_classes=("free", "crack"), min_confidence=0.0))
    _worker(db, tmp_path, batch_size=2).run(once=True, on_batch=on_batch)
    assert job_status(db, job).done == 4
    first, later = batches[0], [i for b in batches[1:] for i in b]
    assert len(first) == 2 and len(later) == 2
    images = {im.id: im for im in db.images.query(ImageQuery(folder_id=folder))}
    for image_id in first:  # a random tiny classifier is never 99 % sure
        [p] = db.predictions.for_image(image_id)
        assert p.flags == ("low_confidence",) and images[image_id].flagged
    for image_id in later:
        [p] = db.predictions.for_image(image_id)
        assert p.flags == () and not images[image_id].flagged


def test_changed_thresholds_are_saved_and_reflag_every_folder(db, tmp_path: Path) -> None:
    from app.services.project_settings import change_flag_settings, load_project_settings

    good_images(tmp_path / "a", 2)
    good_images(tmp_path / "b", 2, seed=3)
    folders = [index_folder(db, tmp_path / n).folder_id for n in ("a", "b")]
    for f in folders:
        submit_prelabel(db, folder_id=f, families=["anomaly"])
    _worker(db, tmp_path).run(once=True)
    strict = FlagSettings(anomaly_threshold=-1.0)
    assert change_flag_settings(db, strict, by="ann").checked == 4
    assert load_project_settings(db).flags == strict
    assert all(im.flagged for im in db.images.query(ImageQuery()))
    change_flag_settings(db, FlagSettings(anomaly_threshold=1e9))
    assert not any(im.flagged for im in db.images.query(ImageQuery()))


def test_jobs_with_different_models_back_to_back_lose_no_batch(db, tmp_path: Path, monkeypatch) -> None:
    """A batch decodes while the one before it runs; when the two belong to jobs with different
    models (model routing makes one job per family set), loading the second job's models must
    not close the engine the first batch is still decoding on."""
    import time

    from inference.engine import InspectionEngine
    slow = InspectionEngine._decode_one

    def decode_slowly(self, *args, **kw):
        time.sleep(0.15)  # the next batch is claimed while this one is still decoding
        return slow(self, *args, **kw)

    monkeypatch.setattr(InspectionEngine, "_decode_one", decode_slowly)
    good_images(tmp_path / "imgs", 8)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    ids = [im.id for im in db.images.query(ImageQuery(folder_id=folder, sort="id"))]
    a = submit_prelabel(db, image_ids=ids[:4], families=["classifier"])
    b = submit_prelabel(db, image_ids=ids[4:], families=["anomaly"])
    c = submit_prelabel(db, image_ids=ids[:4], families=["segmenter"])
    # batches of 4 on the engine's 2 decode threads: half of each batch waits in the queue
    _worker(db, tmp_path, batch_size=4).run(once=True)
    for job in (a, b, c):
        s = job_status(db, job)
        assert (s.state, s.done, s.failed) == ("done", 4, 0)


def test_the_worker_flags_a_folder_with_its_own_threshold_for_the_active_anomaly_version(db, tmp_path: Path) -> None:
    """Operating point: a folder's threshold for the active anomaly version wins over the project's."""
    from app.services.flags import FolderThreshold
    from app.services.project_settings import save_flag_settings

    good_images(tmp_path / "a", 2)
    good_images(tmp_path / "b", 2, seed=3)
    a, b = (index_folder(db, tmp_path / n).folder_id for n in ("a", "b"))
    vid = db.model_versions.active("anomaly").id
    calm = FlagSettings(anomaly_threshold=1e9)
    save_flag_settings(db, calm.with_folder_threshold(FolderThreshold(a, vid, -1.0))
                       .with_folder_threshold(FolderThreshold(b, vid + 1, -1.0)))  # another version's: unused
    for f in (a, b):
        submit_prelabel(db, folder_id=f, families=["anomaly"])
    _worker(db, tmp_path).run(once=True)
    assert all(im.flagged for im in db.images.query(ImageQuery(folder_id=a)))
    assert not any(im.flagged for im in db.images.query(ImageQuery(folder_id=b)))


def test_stage_times_say_where_the_batches_went(db, tmp_path: Path, monkeypatch) -> None:
    """The worker's per-stage wall seconds (what a slow station's log reports) add up the batch loop:
    a model call that takes 0.05 s shows under "models", not under claiming, decoding or storing."""
    import time

    from inference.engine import InspectionEngine

    real = InspectionEngine.predict_decoded

    def slow(self, items, families=None, lanes=1):
        time.sleep(0.05)
        return real(self, items, families, lanes=lanes)

    monkeypatch.setattr(InspectionEngine, "predict_decoded", slow)
    good_images(tmp_path / "imgs", 4)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    t0 = time.perf_counter()
    stats = _worker(db, tmp_path, batch_size=2).run(once=True)
    wall = time.perf_counter() - t0
    assert stats.batches == 2 and set(stats.seconds) == {"claim", "load", "decode", "models", "store"}
    assert stats.seconds["models"] >= 0.1
    assert all(v >= 0 for v in stats.seconds.values()) and sum(stats.seconds.values()) <= wall


def test_a_short_stale_time_does_not_end_a_healthy_workers_writes() -> None:
    """CI (session 51): with a stale-after of 0 s the server ended a healthy worker's save after 1 s idle between two
    statements on a loaded 2-core machine, failing test_claims_of_a_dead_worker_are_requeued_and_finished on
    PostgreSQL. The idle limit is half the stale time but never under the floor a busy machine needs."""
    from app.worker import IDLE_WRITE_FLOOR_S, idle_write_limit_s
    assert idle_write_limit_s(0.0) == IDLE_WRITE_FLOOR_S >= 10.0
    assert idle_write_limit_s(60.0) == 30.0
