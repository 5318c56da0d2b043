"""A worker on ``--threads auto`` re-chooses the model thread count before every batch it runs
(ADR 0040), and a fixed count is set once and kept."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import app.worker as worker_module
from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import job_status, submit_prelabel
from app.worker import Worker, WorkerOptions
from tests.worker.helpers import good_images, make_db


@pytest.fixture
def db(url, tiny_models):
    database = make_db(url, tiny_models)
    yield database
    database.close()


class CountingGovernor:
    """Stands in for the machine reading: says 2 threads, counts how often it was asked."""

    instances: list["CountingGovernor"] = []

    def __init__(self) -> None:
        self.applied = 0
        self.threads = 1
        self.free_cores: float | None = None
        CountingGovernor.instances.append(self)

    def apply(self) -> int:
        self.applied += 1
        worker_module.set_threads(1)  # keep the test process on one thread whatever we say
        self.threads, self.free_cores = 2, 2.0
        return 2

    def lanes(self) -> int:
        return self.threads


def _lanes_seen(monkeypatch, governor: type) -> list[int]:
    """Put ``governor`` in the worker's place; the list fills with the lanes each engine call gets."""
    from inference.engine import InspectionEngine

    monkeypatch.setattr(worker_module, "ThreadGovernor", governor)
    seen: list[int] = []
    real = InspectionEngine.predict_decoded

    def spy(self, items, families=None, lanes=1):
        seen.append(lanes)
        return real(self, items, families, lanes=lanes)

    monkeypatch.setattr(InspectionEngine, "predict_decoded", spy)
    return seen


def test_auto_asks_the_governor_before_each_batch(db, tmp_path: Path, monkeypatch) -> None:
    CountingGovernor.instances.clear()
    monkeypatch.setattr(worker_module, "ThreadGovernor", CountingGovernor)
    good_images(tmp_path / "imgs", 6)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    w = Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.01, threads="auto"),
               artifacts=ArtifactStore(tmp_path / "artifacts"))
    stats = w.run(once=True)
    assert job_status(db, job).state == "done"
    assert stats.batches == 3
    assert len(CountingGovernor.instances) == 1 and CountingGovernor.instances[0].applied == 3
    assert stats.batches_by_threads == {2: 3}


def test_a_fixed_count_is_set_once_and_no_governor_runs(db, tmp_path: Path, monkeypatch) -> None:
    CountingGovernor.instances.clear()
    monkeypatch.setattr(worker_module, "ThreadGovernor", CountingGovernor)
    before = torch.get_num_threads()
    try:
        good_images(tmp_path / "imgs", 2)
        folder = index_folder(db, tmp_path / "imgs").folder_id
        submit_prelabel(db, folder_id=folder, families=["anomaly"])
        Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.01, threads=1),
               artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
        assert torch.get_num_threads() == 1
        assert CountingGovernor.instances == []
    finally:
        torch.set_num_threads(before)


def test_the_chosen_count_runs_each_batch_in_that_many_lanes(db, tmp_path: Path, monkeypatch) -> None:
    """ADR 0041: the count the governor gives (or a fixed one) reaches the engine as its lanes, and the
    images predicted in two lanes are all stored."""
    CountingGovernor.instances.clear()
    seen = _lanes_seen(monkeypatch, CountingGovernor)
    good_images(tmp_path / "imgs", 5)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder, families=["anomaly", "classifier"])
    stats = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.01, threads="auto"),
                   artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
    status = job_status(db, job)
    assert status.state == "done" and status.failed == 0
    assert seen == [2, 2] and stats.predicted == 5


class BusyMachineGovernor(CountingGovernor):
    """Another program holds a core: one intra-op thread, but two lanes (ADR 0041, amended)."""

    def apply(self) -> int:
        super().apply()
        self.threads, self.free_cores = 1, 1.0
        return 1

    def lanes(self) -> int:
        return 2


def test_beside_a_busy_program_batches_still_run_in_the_governors_lanes(db, tmp_path: Path, monkeypatch) -> None:
    seen = _lanes_seen(monkeypatch, BusyMachineGovernor)
    good_images(tmp_path / "imgs", 4)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    stats = Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.01, threads="auto"),
                   artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
    assert seen == [2, 2] and stats.batches_by_threads == {2: 2} and stats.predicted == 4
