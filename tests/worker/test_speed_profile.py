"""The project's speed profile reaches the worker through the job (ADR 0025)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import submit_prelabel
from app.services.project_settings import save_speed_profile
from app.worker import Worker, WorkerOptions
from database.dto import ImageQuery
from database.engine import open_database
from inference import segmenter_predict as segmentation
from inference.checkpoints import load_model, save_card
from inference.imageio import read_image
from inference.profiles import apply_profile
from tests.inference.test_profiles import PROFILES, ensemble_dir
from tests.worker.helpers import good_images


def test_a_job_records_the_projects_profile_and_the_worker_runs_it(tmp_path: Path) -> None:
    seg = ensemble_dir(tmp_path / "models", profiles=PROFILES, default_profile="accurate")
    paths = good_images(tmp_path / "imgs", 2, size=40)
    # A threshold at the fast map's median, so that the masks of the two profiles differ.
    loaded = load_model(seg, family="segmenter")
    probability = segmentation.predict_masks(apply_profile(loaded, "fast"), [read_image(paths[0], "gray")])[0].probability
    save_card(seg, {**loaded.card, "threshold": float(np.median(probability))})
    db = open_database(f"sqlite:///{tmp_path / 'p.sqlite'}")
    try:
        db.model_versions.register("segmenter", "seg", str(seg), activate=True)
        folder = index_folder(db, tmp_path / "imgs").folder_id
        default_job = submit_prelabel(db, folder_id=folder, families=["segmenter"], only_missing=False)
        save_speed_profile(db, "fast")
        fast_job = submit_prelabel(db, folder_id=folder, families=["segmenter"], only_missing=False)
        assert "profile" not in db.jobs.get(default_job).params
        assert db.jobs.get(fast_job).params["profile"] == "fast"
        db.jobs.request_cancel(default_job)  # only the fast job runs
        worker = Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.05),
                        artifacts=ArtifactStore(tmp_path / "artifacts"))
        worker.run(once=True)
        loaded = load_model(seg, family="segmenter")
        images = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=folder))}
        differ = 0
        for p in paths:
            [pred] = db.predictions.for_image(images[p.name].id)
            stored = cv2.imdecode(np.frombuffer(pred.mask_png, np.uint8), cv2.IMREAD_GRAYSCALE) > 0
            image = read_image(p, "gray")
            fast = segmentation.predict_masks(apply_profile(loaded, "fast"), [image])[0]
            accurate = segmentation.predict_masks(apply_profile(loaded, "accurate"), [image])[0]
            assert np.array_equal(stored, fast.mask)
            differ += not np.array_equal(fast.mask, accurate.mask)
        assert differ  # else the stored masks could not tell the profiles apart
    finally:
        db.close()
