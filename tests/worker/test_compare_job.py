"""The worker runs a challenger on the comparison's images (a ``compare`` job): its predictions are
stored as the challenger's, and the queue's flags and priorities stay the champion's."""
from __future__ import annotations

import pytest

from app.services.champion import COMPARE, find_disagreements, submit_compare
from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.prelabel import job_status, submit_prelabel
from database.dto import ImageQuery
from tests.worker.helpers import good_images, make_db, run_worker_once


@pytest.fixture
def db(url, tiny_models):
    database = make_db(url, tiny_models)
    yield database
    database.close()




@pytest.mark.parametrize("family", ["classifier", "segmenter"])
def test_the_compare_job_stores_challenger_predictions_and_leaves_flags_alone(db, tmp_path, other_models,
                                                                              family) -> None:
    good_images(tmp_path / "imgs", 5)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    champion = db.model_versions.active(family)
    submit_prelabel(db, folder_id=folder, families=[family], flag_settings=FlagSettings(min_confidence=0.99))
    run_worker_once(db, tmp_path)
    ids = [im.id for im in db.images.query(ImageQuery(folder_id=folder))]
    # marks no flag rule gives, so a compare job that re-flagged or re-prioritised would show
    db.images.set_flagged(ids, True)
    db.images.set_priorities({i: 42.0 for i in ids})
    before = {im.id: (im.flagged, im.priority) for im in db.images.query(ImageQuery(folder_id=folder))}
    challenger = db.model_versions.register(family, f"{family}-other", str(other_models[family]),
                                            parent_id=champion.id, challenger=True)
    [job] = submit_compare(db, challenger.id)   # the champion has run them all already
    assert db.jobs.get(job).kind == COMPARE
    run_worker_once(db, tmp_path)
    status = job_status(db, job)
    assert (status.state, status.done, status.failed) == ("done", 5, 0)
    stored = db.predictions.for_images(list(before), challenger.id)
    assert set(stored) == set(before)
    if family == "classifier":
        assert all(p.predicted_class in ("free", "crack") for p in stored.values())
    else:
        assert all(p.mask_png for p in stored.values())
    after = {im.id: (im.flagged, im.priority) for im in db.images.query(ImageQuery(folder_id=folder))}
    assert after == before
    assert db.model_versions.active(family).id == champion.id
    result = find_disagreements(db, challenger.id)
    assert (result.images, result.compared) == (5, 5)
    for d in result.disagreements:
        assert d.champion.text != d.challenger.text or d.iou is not None


def test_the_champions_first_answers_a_compare_job_stores_flag_their_images(db, tmp_path, other_models) -> None:
    """Found by a session-43 probe: "Find disagreements" runs the champion too where it had not answered; those
    answers count, but the compare job wrote no flag, and a later "only new" pre-label skipped the images as done:
    never flagged. Those images are flagged from the answers that count; the others keep theirs."""
    from app.services.project_settings import change_flag_settings
    paths = good_images(tmp_path / "imgs", 5)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    change_flag_settings(db, FlagSettings(min_confidence=0.99, anomaly_threshold=1e9))  # every tiny answer flags
    ids = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=folder))}
    first = [ids[p.name] for p in paths[:3]]
    submit_prelabel(db, image_ids=first, families=["classifier"])
    run_worker_once(db, tmp_path)
    db.images.set_priorities({i: 42.0 for i in first})  # a mark no rule gives: the compare job leaves them alone
    champion = db.model_versions.active("classifier")
    challenger = db.model_versions.register("classifier", "classifier-other", str(other_models["classifier"]),
                                            parent_id=champion.id, challenger=True)
    submit_compare(db, challenger.id)
    run_worker_once(db, tmp_path)
    rows = {im.id: im for im in db.images.query(ImageQuery(folder_id=folder))}
    new = [i for i in rows if i not in first]
    assert all(rows[i].flagged and rows[i].priority > 0 for i in new)
    assert all(rows[i].priority == 42.0 for i in first)
