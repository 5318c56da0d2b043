"""The operating point: threshold maths against a brute-force count, the reviewed scores it rests
on, and the per-folder threshold saved with the project and applied by re-flagging."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.services.flags import FlagSettings, FolderThreshold
from app.services.indexing import index_folder
from app.services.operating_point import (
    Costs,
    OperatingPointError,
    ReviewedScores,
    operating_point,
    reviewed_scores,
    save_operating_point,
)
from app.services.project_settings import load_project_settings, save_flag_settings
from app.services.reflag import Reflagged, reflag_project
from database.dto import ImageQuery, LabelChange, PredictionIn
from database.engine import open_database
from database.states import AnomalyVerdict, ReviewState
from tests.worker.helpers import good_images


def _brute(normal, anomalous, costs: Costs, t: float) -> tuple[int, int, float]:
    """Flagged means score > t (app.services.flags): count one image at a time."""
    escapes = sum(1 for s in anomalous if not s > t)
    false_calls = sum(1 for s in normal if s > t)
    return escapes, false_calls, costs.escape * escapes + costs.false_call * false_calls


@pytest.mark.parametrize("seed", range(12))
def test_the_optimum_is_the_cheapest_of_every_possible_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # coarse scores so that ties between images (and between thresholds' costs) happen
    normal = tuple(float(x) for x in np.round(rng.normal(0.3, 0.15, rng.integers(1, 9)), 1))
    anomalous = tuple(float(x) for x in np.round(rng.normal(0.6, 0.2, rng.integers(1, 7)), 1))
    costs = Costs(float(rng.integers(0, 6)), float(rng.integers(1, 4)))
    op = operating_point(ReviewedScores(1, 2, normal, anomalous), costs)
    every = sorted(set(normal + anomalous))
    # every threshold that splits the images differently: each score itself and just below the lowest
    grid = [every[0] - 1.0] + every
    brute = {t: _brute(normal, anomalous, costs, t) for t in grid}
    cheapest = min(c for _, _, c in brute.values())
    assert op.best.cost == pytest.approx(cheapest)
    fewest = min(e for e, _, c in brute.values() if c == cheapest)
    assert op.best.escapes == fewest
    assert (op.best.escapes, op.best.false_calls, op.best.cost) == _brute(normal, anomalous, costs, op.best.threshold)
    for o in op.candidates:  # every row of the table, and the dragged line anywhere
        assert (o.escapes, o.false_calls, o.cost) == _brute(normal, anomalous, costs, o.threshold)
    for t in rng.uniform(-0.5, 1.5, 20):
        got = op.at(float(t))
        assert (got.escapes, got.false_calls, got.cost) == _brute(normal, anomalous, costs, float(t))
    assert sum(op.histogram.normal) == len(normal) and sum(op.histogram.anomalous) == len(anomalous)
    assert len(op.histogram.edges) == len(op.histogram.normal) + 1


def test_ties_go_to_fewer_escapes_and_the_threshold_sits_between_scores() -> None:
    # normal 0.2, 0.5; anomalous 0.4, 0.8; equal costs: t in [0.2, 0.4) costs 1 (a false call),
    # t in [0.5, 0.8) costs 1 too (an escape): the tie goes to the one without an escape
    op = operating_point(ReviewedScores(1, 2, (0.2, 0.5), (0.4, 0.8)), Costs(1.0, 1.0))
    assert op.best.cost == 1 and op.best.escapes == 0
    assert op.best.threshold == pytest.approx(0.3)  # midway between 0.2 and 0.4, lowest of the ties
    costly_escape = operating_point(ReviewedScores(1, 2, (0.2, 0.5), (0.4, 0.8)), Costs(100.0, 1.0))
    assert costly_escape.best.escapes == 0 and costly_escape.best.threshold < 0.4
    costly_call = operating_point(ReviewedScores(1, 2, (0.2, 0.5), (0.4, 0.8)), Costs(1.0, 100.0))
    assert costly_call.best.false_calls == 0 and costly_call.best.threshold >= 0.5


@pytest.mark.parametrize("normal, anomalous, words", [
    ((), (0.5,), "reviewed as normal"),
    ((0.5,), (), "reviewed as anomalous"),
    ((), (), "anomalous or normal"),
])
def test_no_reviewed_image_of_a_kind_is_refused_with_the_counts(normal, anomalous, words) -> None:
    with pytest.raises(OperatingPointError, match=words):
        operating_point(ReviewedScores(1, 2, normal, anomalous), Costs())


@pytest.mark.parametrize("costs", [Costs(-1, 1), Costs(0, 0), Costs(float("nan"), 1)])
def test_unusable_costs_are_refused(costs) -> None:
    with pytest.raises(OperatingPointError, match="cost"):
        operating_point(ReviewedScores(1, 2, (0.1,), (0.9,)), costs)


def test_old_flag_settings_still_read_and_new_ones_round_trip() -> None:
    assert FlagSettings.from_dict({"anomaly_threshold": 0.4}).folder_thresholds == ()
    assert "folder_thresholds" not in FlagSettings().to_dict()  # older stations can still read it
    own = FlagSettings(anomaly_threshold=0.4).with_folder_threshold(FolderThreshold(3, 7, 0.9, 5.0, 1.0))
    assert FlagSettings.from_dict(own.to_dict()) == own
    assert own.for_folder(3, 7).anomaly_threshold == 0.9
    assert own.for_folder(3, 8).anomaly_threshold == 0.4  # another model version: the project's
    assert own.for_folder(4, 7).anomaly_threshold == 0.4
    replaced = own.with_folder_threshold(FolderThreshold(3, 7, 0.7))
    assert replaced.folder_thresholds == (FolderThreshold(3, 7, 0.7),)
    with pytest.raises(ValueError, match="lacks"):
        FlagSettings.from_dict({"folder_thresholds": [{"folder_id": 1}]})


# -- with a database ------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path):
    """Two folders of 6 images, an anomaly version with known scores, some images reviewed."""
    db = open_database(f"sqlite:///{tmp_path / 'p.sqlite'}")
    version = db.model_versions.register("anomaly", "anom-v1", str(tmp_path / "none"),
                                         card={"threshold": {"image": 0.5}}, activate=True)
    folders = []
    for name, seed in (("a", 0), ("b", 1)):
        good_images(tmp_path / name, 6, seed=seed)
        folders.append(index_folder(db, tmp_path / name).folder_id)
    scores = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8]
    for f in folders:
        ims = db.images.query(ImageQuery(folder_id=f, sort="rel_path"))
        db.predictions.upsert_many([PredictionIn(im.id, version.id, anomaly_score=s) for im, s in zip(ims, scores)])
    a = db.images.query(ImageQuery(folder_id=folders[0], sort="rel_path"))
    verdicts = [(0, "normal"), (1, "normal"), (3, "normal"), (4, "anomalous"), (2, "anomalous")]
    for i, verdict in verdicts:  # image 5 unreviewed
        db.labels.append(a[i].id, LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict(verdict)), "ann")
    db.labels.append(a[5].id, LabelChange(ReviewState.REJECTED, anomaly_verdict=AnomalyVerdict.ANOMALOUS), "ann")
    yield db, folders, version.id
    db.close()


def _flagged(db, folder_id: int) -> list[bool]:
    return [im.flagged for im in db.images.query(ImageQuery(folder_id=folder_id, sort="rel_path"))]


def test_reviewed_scores_are_the_verdicts_with_the_versions_scores(project) -> None:
    db, (a, b), vid = project
    scores = reviewed_scores(db, a, vid)
    assert sorted(scores.normal) == [0.1, 0.2, 0.6] and sorted(scores.anomalous) == [0.3, 0.7]
    assert scores.count == 5  # the rejected image is left out
    with pytest.raises(OperatingPointError, match="0 normal, 0 anomalous"):
        operating_point(reviewed_scores(db, b, vid), Costs())


def test_a_saved_folder_threshold_reflags_that_folder_only_and_survives_a_project_reflag(project) -> None:
    db, (a, b), vid = project
    save_flag_settings(db, FlagSettings(anomaly_threshold=0.5))
    reflag_project(db, load_project_settings(db).flags)
    assert _flagged(db, a) == _flagged(db, b) == [False, False, False, True, True, True]
    op = operating_point(reviewed_scores(db, a, vid), Costs(escape=10, false_call=1))
    assert op.best.escapes == 0 and 0.2 < op.best.threshold < 0.3
    assert save_operating_point(db, a, vid, op.best.threshold, op.costs, by="ann") == Reflagged(6, 1, 0)
    assert _flagged(db, a) == [False, False, True, True, True, True]
    assert _flagged(db, b) == [False, False, False, True, True, True]
    stored = load_project_settings(db).flags
    assert stored.anomaly_threshold == 0.5
    assert stored.folder_threshold(a, vid) == FolderThreshold(a, vid, op.best.threshold, 10.0, 1.0)
    reflag_project(db, stored)  # e.g. after the project-wide threshold changes: the override holds
    assert _flagged(db, a) == [False, False, True, True, True, True]
    with pytest.raises(OperatingPointError, match="not an anomaly model"):
        save_operating_point(db, a, vid + 99, 0.3)


def test_two_stations_saving_two_folders_operating_points_at_once_keep_both(project, monkeypatch) -> None:
    """Found by a session-45 probe (PostgreSQL, two stations): each read the thresholds, added its folder's and
    wrote the whole back, so one of the two was lost in 8 of 10 rounds while both were told "saved". Here the other
    station's save lands between this one's read and its write."""
    import app.services.project_settings as settings
    db, (a, b), vid = project
    real, landed = settings.load_project_settings, []

    def read_then_other_station_saves(database, s=None):   # s: a re-flag's transaction (it reads through it)
        now = real(database, s)
        if not landed:
            landed.append(True)
            save_operating_point(db, b, vid, 0.55, by="bob")  # the other station, meanwhile
        return now
    import app.services.operating_point as op_module
    for module in (settings, op_module):  # wherever the thresholds are read before they are written
        monkeypatch.setattr(module, "load_project_settings", read_then_other_station_saves)
    save_operating_point(db, a, vid, 0.25, by="ann")
    stored = real(db).flags
    assert stored.folder_threshold(a, vid).threshold == 0.25 and stored.folder_threshold(b, vid).threshold == 0.55


def test_the_label_panels_verdict_uses_the_folders_threshold(project) -> None:
    from app.services.review import ReviewService, ReviewSettings

    db, (a, b), vid = project
    save_operating_point(db, a, vid, 0.25)
    review = ReviewService(db, ReviewSettings(folder_thresholds=load_project_settings(db).flags.folder_thresholds))
    third_a, third_b = (db.images.query(ImageQuery(folder_id=f, sort="rel_path"))[2].id for f in (a, b))
    assert review.detail(third_a).prediction.threshold == 0.25
    assert review.detail(third_a).prediction.anomalous  # 0.3 > 0.25
    assert review.detail(third_b).prediction.threshold == 0.5  # the card's
    assert not review.detail(third_b).prediction.anomalous


def test_a_class_label_counts_as_a_verdict_by_the_projects_defect_classes(project) -> None:
    """Seen under Xvfb (session 42): 34 tiles labelled free / blowhole / break … and the operating point said "no
    image reviewed as anomalous or normal". A class the project calls not a defect (Settings ▸ Project) is a normal
    part, any other class an anomalous one; an explicit verdict wins; the count from classes is said."""
    db, (a, b), vid = project
    ims = db.images.query(ImageQuery(folder_id=b, sort="rel_path"))   # scores 0.1 … 0.8; no verdict given here
    for im, cls in zip(ims, ["free", "ok", "crack", "blowhole", "free", None]):
        if cls is not None:
            db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name=cls), "ann")
    db.labels.append(ims[4].id, LabelChange(ReviewState.CORRECTED, class_name="free",
                                            anomaly_verdict=AnomalyVerdict.ANOMALOUS), "ann")   # the verdict wins
    scores = reviewed_scores(db, b, vid)
    assert sorted(scores.normal) == [0.1, 0.2] and sorted(scores.anomalous) == [0.3, 0.6, 0.7]
    assert scores.from_classes == 4
    assert operating_point(scores, Costs()).best.escapes == 0
    assert reviewed_scores(db, a, vid).from_classes == 0   # verdicts only there, as before


def test_a_score_the_model_calls_out_of_domain_is_left_out_and_counted(project) -> None:
    """Seen under Xvfb (session 42): a contaminated bottle the bottle model called out of domain (its panel showed no
    score) was reviewed D, and its score joined the operating point's anomalous scores. An answer outside the
    model's domain is no finding (docs/out_of_domain.md): it is left out, and counted."""
    from dataclasses import replace as dc_replace

    from app.services.flags import OUT_OF_DOMAIN

    db, (a, b), vid = project
    ims = db.images.query(ImageQuery(folder_id=a, sort="rel_path"))
    p = db.predictions.get(ims[4].id, vid)   # score 0.7, reviewed anomalous
    db.predictions.upsert_many([dc_replace(PredictionIn(ims[4].id, vid, anomaly_score=p.anomaly_score),
                                           in_domain=0.1, flags=(OUT_OF_DOMAIN,))])
    scores = reviewed_scores(db, a, vid)
    assert sorted(scores.anomalous) == [0.3] and sorted(scores.normal) == [0.1, 0.2, 0.6]
    assert scores.out_of_domain == 1


def test_a_score_equal_to_the_threshold_is_not_anomalous_anywhere(tmp_path: Path) -> None:
    """Found by a session-44 probe: the operating point proposes thresholds equal to a reviewed score ("flag none"); at
    such a threshold the queue said "not flagged" (score > threshold, as the model counts) while the label panel and
    the gallery's chip said anomalous (>=), and Accept saved "anomalous"."""
    from app.services.review import ReviewService, ReviewSettings
    from app.services.review_types import LabelState
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    version = db.model_versions.register("anomaly", "anom-v1", str(tmp_path / "none"),
                                         card={"threshold": {"image": 0.8}}, activate=True)
    good_images(tmp_path / "a", 1, seed=0)
    folder_id = index_folder(db, tmp_path / "a").folder_id
    (image,) = db.images.query(ImageQuery(folder_id=folder_id))
    db.predictions.upsert_many([PredictionIn(image.id, version.id, anomaly_score=0.8, counts=True)])
    reflag_project(db, FlagSettings())
    review = ReviewService(db, ReviewSettings())
    detail = review.detail(image.id)
    assert db.images.get(image.id).flagged is False
    assert detail.prediction.anomalous is False
    assert review.accepted_label(detail, LabelState()).anomaly_verdict == "normal"
    db.close()


def test_the_operating_point_rests_on_the_images_the_versions_answer_counts_for(tmp_path: Path) -> None:
    """Found by a session-44 probe: on a folder of tiles (the active tile model) and bottles (a routing rule gives them
    the bottle model), the tile model's operating point read its old scores on the bottles too; its optimum flagged
    every good tile. Those images are left out and counted."""
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    tile = db.model_versions.register("anomaly", "anom-tile", str(tmp_path / "t"), card={"threshold": {"image": 0.5}},
                                      activate=True)
    bottle = db.model_versions.register("anomaly", "anom-bottle", str(tmp_path / "b"), card={"threshold": 9.7})
    good_images(tmp_path / "line" / "tiles", 2, seed=0)
    good_images(tmp_path / "line" / "bottles", 2, seed=1)
    folder_id = index_folder(db, tmp_path / "line").folder_id
    images = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=folder_id))}
    tile_scores = {"tiles/img_000.png": 0.2, "tiles/img_001.png": 0.7, "bottles/img_000.png": 0.9,
                   "bottles/img_001.png": 0.1}
    db.predictions.upsert_many([PredictionIn(images[p], tile.id, anomaly_score=s, counts=True)
                                for p, s in tile_scores.items()])
    db.predictions.upsert_many([PredictionIn(images[p], bottle.id, anomaly_score=5.0) for p in images
                                if p.startswith("bottles/")])
    save_routing(db, Routing((RoutingRule("bottles/*", ("anomaly",), (("anomaly", "anom-bottle"),)),)))
    for path, verdict in (("tiles/img_000.png", "normal"), ("tiles/img_001.png", "anomalous"),
                          ("bottles/img_000.png", "normal"), ("bottles/img_001.png", "anomalous")):
        db.labels.append(images[path], LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict(verdict)),
                         "ann")
    scores = reviewed_scores(db, folder_id, tile.id)
    assert (scores.normal, scores.anomalous, scores.elsewhere) == ((0.2,), (0.7,), 2)
    db.close()


def test_the_project_threshold_never_becomes_a_maps_pixel_threshold(tmp_path: Path) -> None:
    """Found by a session-44 probe: with Settings ▸ Project ▸ Anomaly threshold at 0.5, the tile model's map (pixel
    threshold 2.80 on its card) was scaled 0-1.0 and turned solid red, and Accept saved the whole image as the anomaly
    region, exported as ground truth. Image scores and map values are in other units."""
    from app.services.review import ReviewService, ReviewSettings
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    version = db.model_versions.register("anomaly", "tile", str(tmp_path / "t"),
                                         card={"threshold": {"image": 0.484, "pixel": 2.8}}, activate=True)
    review = ReviewService(db, ReviewSettings(anomaly_threshold=0.5))
    assert review.region_threshold(version.id) == 2.8 and review.region_threshold() == 2.8
    db.close()
