"""Routing rules that name a version (ADR 0059): the worker runs the named version on the rule's
images, its answers are the ones the queue, the label panel and flags read there, an activation
leaves those images alone, and saving other rules re-marks what counts."""
from __future__ import annotations

from dataclasses import replace

import pytest

from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.model_catalog import ModelCatalog
from app.services.prelabel import PrelabelError, submit_routed_prelabel
from app.services.project_settings import save_routing
from app.services.review import ReviewService
from app.services.review_types import QueueFilter
from app.services.routing import Routing, RoutingError, RoutingRule
from tests.worker.helpers import good_images, make_db, run_worker_once

TILE_CLASSES = ["tile-ok", "tile-crack"]


@pytest.fixture
def db(url, tiny_models):
    database = make_db(url, tiny_models)
    yield database
    database.close()




def _tiles_rule(*families: str) -> Routing:
    return Routing((RoutingRule("tiles/*", families or ("classifier", "anomaly"), (("classifier", "classifier-tile"),)),))


def test_a_rules_named_version_runs_and_counts_on_its_images(db, tmp_path, other_models) -> None:
    good_images(tmp_path / "imgs" / "tiles", 3)
    good_images(tmp_path / "imgs" / "steel", 3, seed=1)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    steel = db.model_versions.active("classifier")
    tile = db.model_versions.register("classifier", "classifier-tile", str(other_models["classifier"]),
                                      card={"classes": TILE_CLASSES})
    save_routing(db, _tiles_rule())
    jobs = submit_routed_prelabel(db, folder_id=folder)
    params = {tuple(db.jobs.get(j).params["families"]): db.jobs.get(j).params for j in jobs}
    assert params[("classifier", "anomaly")]["model_versions"]["classifier"] == tile.id
    assert params[("classifier", "anomaly")]["named"] == ["classifier"]
    assert params[("classifier", "segmenter", "anomaly")]["model_versions"]["classifier"] == steel.id
    assert "named" not in params[("classifier", "segmenter", "anomaly")]
    run_worker_once(db, tmp_path)

    svc = ReviewService(db, artifacts=ArtifactStore(tmp_path / "artifacts"))
    rows = svc.queue(QueueFilter(folder_id=folder))
    by_path = {r.rel_path: r for r in rows}
    assert len(rows) == 6 and all(r.predicted_class is not None for r in rows)

    def counted(rel: str) -> dict[str, str]:
        detail = svc.detail(by_path[rel].image_id)
        assert detail.prediction is not None
        return detail.prediction.models

    assert counted("tiles/img_000.png")["classifier"] == "classifier-tile"
    assert counted("steel/img_000.png")["classifier"] == "classifier-tiny"
    assert svc.detail(by_path["tiles/img_001.png"].image_id).classes == tuple(TILE_CLASSES)
    assert svc.detail(by_path["steel/img_001.png"].image_id).classes == ()  # the folder's list stands
    assert svc.filter_classes() == [*svc.classes(), *TILE_CLASSES]  # the class filter offers both
    named = {m.name: m.named_by for m in ModelCatalog(db).rows("classifier")}
    assert named["classifier-tile"] == ("tiles/*",) and named["classifier-tiny"] == ()

    # a new active classifier (no answers yet): the tiles keep the named one's, steel shows none until it runs
    newer = db.model_versions.register("classifier", "classifier-newer", str(other_models["classifier"]))
    ModelCatalog(db).activate(newer.id)
    svc.refresh_models()
    shown = {r.rel_path: r.predicted_class for r in svc.queue(QueueFilter(folder_id=folder))}
    assert all(shown[p] is not None for p in shown if p.startswith("tiles/"))
    assert all(shown[p] is None for p in shown if p.startswith("steel/"))
    submit_routed_prelabel(db, folder_id=folder)  # only what is missing: the new classifier on steel
    run_worker_once(db, tmp_path)
    svc.refresh_models()
    assert counted("tiles/img_002.png")["classifier"] == "classifier-tile"
    assert counted("steel/img_002.png")["classifier"] == "classifier-newer"

    # rules without the name: the tiles go back to the active version, which has not run there
    tiles = [r.image_id for r in rows if r.rel_path.startswith("tiles/")]
    db.images.set_flagged(tiles, True)   # as the tile classifier's answers could have flagged them
    db.predictions.set_current("anomaly", {i: None for i in tiles})   # and no anomaly answer counts there either
    changed = save_routing(db, Routing((RoutingRule("tiles/*", ("classifier", "anomaly")),)))
    assert changed == 3
    shown = {r.rel_path: r.predicted_class for r in svc.queue(QueueFilter(folder_id=folder))}
    assert [shown[p] for p in sorted(shown) if p.startswith("tiles/")] == [None, None, None]
    assert not any(im.flagged for im in db.images.get_many(tiles))  # no answer counts there: no model flag
    assert len(db.predictions.for_images([by_path["tiles/img_000.png"].image_id], tile.id)) == 1  # kept


def test_a_name_the_project_lacks_is_refused_and_nothing_is_saved(db, tmp_path) -> None:
    good_images(tmp_path / "imgs" / "tiles", 1)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    with pytest.raises(RoutingError, match="classifier-tile"):
        save_routing(db, _tiles_rule())
    db.project_settings.put("routing", _tiles_rule().to_dict())  # written by another program
    with pytest.raises(PrelabelError, match="classifier-tile"):
        submit_routed_prelabel(db, folder_id=folder)
    with pytest.raises(RoutingError, match="does not run segmenter"):
        RoutingRule("tiles/*", ("classifier",), (("segmenter", "x"),))
    assert Routing.from_dict(_tiles_rule().to_dict()) == _tiles_rule()


def test_the_command_line_sets_and_shows_rules_that_name_versions(url, tiny_models, other_models, tmp_path,
                                                                  capsys) -> None:
    import json

    from app.cli import main
    database = make_db(url, tiny_models)
    try:
        database.model_versions.register("classifier", "classifier-tile", str(other_models["classifier"]))
    finally:
        database.close()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(_tiles_rule().to_dict()), encoding="utf-8")
    assert main(["routing", "set", str(rules), "--db", url]) == 0
    assert "1. tiles/* → classifier (classifier-tile), anomaly" in capsys.readouterr().out
    assert main(["routing", "show", "--json", "--db", url]) == 0
    assert Routing.from_dict(json.loads(capsys.readouterr().out)) == _tiles_rule()
    rules.write_text(json.dumps({"rules": [{"pattern": "*", "families": ["classifier"],
                                            "versions": {"classifier": "none-such"}}]}), encoding="utf-8")
    assert main(["routing", "set", str(rules), "--db", url]) == 2
    assert "none-such" in capsys.readouterr().err
    rules.write_bytes(b" " * (2 << 20))  # not a routing file: refused before it is read
    assert main(["routing", "set", str(rules), "--db", url]) == 2
    assert "bytes is not a model routing" in capsys.readouterr().err
    assert main(["routing", "show", "--db", url]) == 0
    assert "classifier (classifier-tile)" in capsys.readouterr().out  # nothing replaced by the refused files


def test_a_folder_threshold_for_a_named_anomaly_version_flags_its_images(db, tmp_path, other_models) -> None:
    from app.services.operating_point import save_operating_point
    good_images(tmp_path / "imgs" / "tiles", 2)
    good_images(tmp_path / "imgs" / "steel", 2, seed=1)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    tile = db.model_versions.register("anomaly", "anomaly-tile", str(other_models["anomaly"]))
    save_routing(db, Routing((RoutingRule("tiles/*", ("anomaly",), (("anomaly", "anomaly-tile"),)),)))
    submit_routed_prelabel(db, folder_id=folder)
    run_worker_once(db, tmp_path)
    svc = ReviewService(db, artifacts=ArtifactStore(tmp_path / "artifacts"))
    rows = {r.rel_path: r.image_id for r in svc.queue(QueueFilter(folder_id=folder))}
    assert save_operating_point(db, folder, tile.id, -1e9).checked == 4   # not the active one, but it counts on the tiles
    from app.services.project_settings import load_project_settings
    svc.update_settings(replace(svc.settings, folder_thresholds=load_project_settings(db).flags.folder_thresholds))
    tile_detail = svc.detail(rows["tiles/img_000.png"]).prediction
    steel_detail = svc.detail(rows["steel/img_000.png"]).prediction
    assert tile_detail is not None and tile_detail.threshold == -1e9 and tile_detail.anomalous
    assert steel_detail is not None and steel_detail.threshold != -1e9   # the active version's: not this folder's
    assert all(im.flagged for im in db.images.get_many([rows["tiles/img_000.png"], rows["tiles/img_001.png"]]))
