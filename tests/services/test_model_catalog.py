"""Project ▸ Models…'s service: list versions (bundled ones on a fresh database), activate,
add a model directory after checking it without torch, and read the retrain process's events."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from app.paths import REPO_ROOT
from app.services.model_catalog import ARCHITECTURES, PART_ONLY, ModelCatalog, ModelCatalogError, summarize_metrics
from app.services.prelabel import resolve_models
from app.services.retrain_protocol import (
    RetrainCancelled,
    RetrainDone,
    RetrainError,
    RetrainProgress,
    RetrainStage,
    parse_event,
    retrain_argv,
)
from database.engine import open_database
from inference.bundled import DEFAULT_MODEL, bundled_models
from tests.services.model_fixtures import make_model_dir


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    yield database
    database.close()


def test_a_fresh_database_lists_every_bundled_model_with_each_default_active(db) -> None:
    rows = ModelCatalog(db).rows()
    assert {r.name for r in rows} == {p.name for p in bundled_models()}
    active = {r.family: r.name for r in rows if r.active}
    assert active == DEFAULT_MODEL
    assert all(r.bundled and r.exists and r.parent_name is None for r in rows)
    assert [r.family for r in rows] == sorted((r.family for r in rows),
                                              key=["classifier", "segmenter", "anomaly"].index)
    by_name = {r.name: r for r in rows}
    # what images of a kind training never saw get (group-aware CV), first; then the scored split's figure
    assert by_name["classifier-neu"].summary == "CV acc 0.966 | val acc 0.993 (288 images)"
    # the default since session 26 (segmenter-epochs80.md) beside the ones it replaced, each with both figures
    assert by_name["segmenter-sirst-v3"].summary == ("new scenes IoU 0.648 · Pd 0.901 · Fa 62.1 | "
                                                    "val IoU 0.656 · Pd 0.954 · Fa 101.9 (86 images)")
    assert by_name["segmenter-sirst-v2"].summary == "new scenes IoU 0.624 · Pd 0.894 · Fa 67.9 | val IoU 0.643 · Pd 0.936 · Fa 106.1 (86 images)"
    assert by_name["segmenter-sirst"].summary == "new scenes IoU 0.611 · Pd 0.894 · Fa 83.8 | val IoU 0.699 · Pd 0.927 · Fa 55.5 (86 images)"
    assert by_name["anomaly-magnetic_tile"].summary == ("new tiles image AUROC 0.843 · pixel AUROC 0.801 | "
                                                        "test image AUROC 0.945 · pixel AUROC 0.952 (214 images)")
    assert by_name["classifier-magnetic_tile"].summary == "new tiles acc 0.768 | test acc 0.963 (214 images)"
    assert by_name["anomaly-bottle"].summary.startswith("test image AUROC")  # no group CV for it: none claimed
    # what each was trained on, as its out-of-domain description says (the name's tooltip in the Models dialog)
    assert by_name["classifier-neu-texture"].domain.startswith(
        "1152 training images; the ranges they set (median ± the farthest of them): files grey; long side 200 px; "
        "short side 200 px;")
    assert "files colour" in by_name["segmenter-sirst-v3"].domain and "how the frame is arranged" in \
        by_name["segmenter-sirst-v3"].domain
    # the same rows as pre-labelling resolves: no second registration
    assert {f: v.name for f, v in resolve_models(db, list(DEFAULT_MODEL)).items()} == DEFAULT_MODEL
    assert len(ModelCatalog(db).rows()) == len(rows)
    assert [r.name for r in ModelCatalog(db).rows("anomaly")] == ["anomaly-bottle", "anomaly-magnetic_tile"]


def test_an_active_version_is_kept_and_activate_switches(db, tmp_path: Path) -> None:
    own = make_model_dir(tmp_path / "mine")
    mine = db.model_versions.register("classifier", "mine", str(own), activate=True)
    catalog = ModelCatalog(db)
    assert [r.name for r in catalog.rows("classifier") if r.active] == ["mine"]   # bundled not forced active
    neu = next(r for r in catalog.rows("classifier") if r.name == "classifier-neu")
    row = catalog.activate(neu.id)
    assert row.active and db.model_versions.active("classifier").id == neu.id
    assert not db.model_versions.get(mine.id).active
    assert resolve_models(db, ["classifier"])["classifier"].id == neu.id   # what the next pre-label runs


def test_activate_refuses_a_missing_or_broken_directory(db, tmp_path: Path) -> None:
    gone = db.model_versions.register("classifier", "gone", str(tmp_path / "gone"))
    catalog = ModelCatalog(db)
    catalog.rows()
    with pytest.raises(ModelCatalogError, match="gone cannot be made active: .*which this station does not see, and the database holds no copy"):
        catalog.activate(gone.id)
    with pytest.raises(ModelCatalogError, match="does not exist"):
        catalog.activate(9999)
    assert db.model_versions.active("classifier").name == DEFAULT_MODEL["classifier"]
    assert next(r for r in catalog.rows() if r.name == "gone").exists is False


def test_add_directory_registers_a_valid_model_once_with_its_card(db, tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "cls-ft")
    catalog = ModelCatalog(db)
    row = catalog.add_directory("classifier", d)
    assert row.family == "classifier" and not row.active and row.exists and row.summary == "val acc 0.900"
    assert Path(row.path) == d.resolve()
    assert db.model_versions.get(row.id).card["metrics"] == {"val": {"accuracy": 0.9}}
    assert catalog.add_directory("classifier", d).id == row.id            # already registered
    bundled = catalog.add_directory("classifier", REPO_ROOT / "resources" / "models" / "classifier-neu")
    assert bundled.bundled and bundled.name == "classifier-neu"
    pixel = catalog.add_directory("anomaly", make_model_dir(tmp_path / "pg", "anomaly", "pixel_gaussian", card={}))
    assert pixel.family == "anomaly" and pixel.summary == ""


def _break(case: str, d: Path) -> None:
    if case == "no config":
        (d / "config.json").unlink()
    elif case == "config not json":
        (d / "config.json").write_text("{not json")
    elif case == "config a list":
        (d / "config.json").write_text("[1, 2]")
    elif case == "card not json":
        (d / "card.json").write_text("")
    elif case == "no card":
        (d / "card.json").unlink()
    elif case == "no weights":
        (d / "model.safetensors").unlink()
    elif case == "weights truncated":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[:-8])
    elif case == "weights a pickle":
        (d / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64)
    elif case == "header not json":
        (d / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"abcd")
    elif case == "other family":
        (d / "config.json").write_text(json.dumps({"family": "segmenter", "model": "mim_istd"}))
    elif case == "verifier alone":
        (d / "config.json").write_text(json.dumps({"family": "segmenter", "model": "target_verifier"}))
    elif case == "unknown architecture":
        (d / "config.json").write_text(json.dumps({"model": "resnet50"}))
    elif case == "newer format":
        (d / "config.json").write_text(json.dumps({"model": "memory_mamba", "format": 9}))
    elif case == "card of other family":
        (d / "card.json").write_text(json.dumps({"family": "anomaly"}))
    elif case == "part outside":
        (d / "card.json").write_text(json.dumps({"parts": {"v": "../elsewhere"}}))
    elif case == "part missing":
        (d / "card.json").write_text(json.dumps({"parts": {"v": "verifier"}}))
    elif case in ("weights nan", "weights integers"):  # accepted at Add, refused by every load (a session-47 audit)
        from safetensors.numpy import load_file, save_file
        weights = load_file(str(d / "model.safetensors"))
        first = next(k for k, v in weights.items() if v.dtype == np.float32 and v.size)
        if case == "weights nan":
            weights[first] = np.full_like(weights[first], np.nan)
        else:
            weights = {k: v.astype(np.int32) if v.dtype == np.float32 else v for k, v in weights.items()}
        save_file(weights, str(d / "model.safetensors"))
    elif case == "config family contradicts":  # the refusal read "holds a classifier model, not a classifier model"
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, "family": "segmenter"}))
    elif case == "format a string":  # read "written by a newer version of the station" (a session-47 audit)
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, "format": "1"}))
    elif case == "weights a folder":  # read "model.safetensors is missing"
        (d / "model.safetensors").unlink()
        (d / "model.safetensors").mkdir()
    elif case == "image size zero":
        config = json.loads((d / "config.json").read_text())
        config["config"]["img_size"] = 0
        (d / "config.json").write_text(json.dumps(config))


BROKEN = {
    "no config": "config.json is missing", "config not json": "config.json is not valid JSON",
    "config a list": "config.json does not hold a JSON object", "card not json": "card.json is not valid JSON",
    "no card": "card.json is missing", "no weights": "model.safetensors is missing",
    "weights truncated": "tensor .* byte range", "weights a pickle": "not a safetensors file",
    "header not json": "header is not JSON", "other family": "holds a segmenter model \\(mim_istd\\), not a classifier",
    "verifier alone": "part of a segmenter model directory", "unknown architecture": "unknown model architecture 'resnet50'",
    "newer format": "newer version", "card of other family": "describes an anomaly model",
    "part outside": "must be a sub-directory", "part missing": "part 'v' is missing",
    "weights nan": "non-finite values", "weights integers": "integer values where the model holds real numbers",
    "image size zero": "img_size",
    "config family contradicts": "says family 'segmenter', but its architecture memory_mamba is a classifier model",
    "format a string": "'format' must be a whole number, not '1'",
    "weights a folder": "model.safetensors is not a regular file",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_add_directory_refuses_a_broken_directory_naming_the_problem(db, tmp_path: Path, case: str) -> None:
    d = make_model_dir(tmp_path / "m")
    _break(case, d)
    before = len(db.model_versions.list())
    with pytest.raises(ModelCatalogError, match=BROKEN[case]):
        ModelCatalog(db).add_directory("classifier", d)
    assert len(db.model_versions.list()) == before


def test_a_pretrained_backbone_is_refused_as_a_model_to_run(db, tmp_path: Path) -> None:
    """``main.py pretrain`` writes an ordinary model directory whose head was never trained: a start point
    for ``train --init``, never a version to register or activate."""
    for family, arch in (("classifier", "memory_mamba"), ("segmenter", "mim_istd")):
        d = make_model_dir(tmp_path / family, family, arch, card={"family": family, "kind": "pretrained_backbone"})
        with pytest.raises(ModelCatalogError, match=f"pretrained backbone .*train {family} --init"):
            ModelCatalog(db).add_directory(family, d)


def test_add_directory_refuses_no_folder_and_unknown_family(db, tmp_path: Path) -> None:
    with pytest.raises(ModelCatalogError, match="no such folder"):
        ModelCatalog(db).add_directory("classifier", tmp_path / "nope")
    with pytest.raises(ModelCatalogError, match="unknown family 'detector'"):
        ModelCatalog(db).add_directory("detector", make_model_dir(tmp_path / "m"))


def test_retrained_version_shows_its_parent_and_own_metrics(db, tmp_path: Path) -> None:
    catalog = ModelCatalog(db)
    parent = next(r for r in catalog.rows("segmenter") if r.bundled)
    d = make_model_dir(tmp_path / "seg2", "segmenter", "mim_istd")
    db.model_versions.register("segmenter", "seg-retrained", str(d), parent_id=parent.id,
                               metrics={"iou": 0.8, "pd": 1.0, "fa": 3.25}, card={"metrics": {"val": {"iou": 0.1}}})
    row = next(r for r in catalog.rows("segmenter") if r.name == "seg-retrained")
    assert row.parent_name == "segmenter-sirst" and row.summary == "IoU 0.800 · Pd 1.000 · Fa 3.250"
    assert catalog.row(row.id) == row


def test_a_retrained_version_is_summed_up_by_its_comparison_on_the_reviewed_held_out_images(db, tmp_path) -> None:
    """Seen under Xvfb: a retrained segmenter's row read "held-out IoU 0.980 (1 image)" (the trainer's tenth of
    its training share) while its comparison with the champion said 0.906 on 3 reviewed images it never saw."""
    catalog = ModelCatalog(db)
    parent = next(r for r in catalog.rows("segmenter") if r.bundled)
    d = make_model_dir(tmp_path / "seg3", "segmenter", "mim_istd")
    compared = {"held_out_images": 3, "new": {"iou": 0.9056, "pd": 1.0, "fa": 0.0},
                "parent": {"iou": 1.0, "pd": 1.0, "fa": 0.0}, "parent_name": parent.name}
    db.model_versions.register("segmenter", "seg-retrained", str(d), parent_id=parent.id,
                               metrics={"held_out": {"iou": 0.98, "pd": 1.0, "fa": 0.0, "images": 1}},
                               card={"retraining": {"held_out_comparison": compared}})
    row = next(r for r in catalog.rows("segmenter") if r.name == "seg-retrained")
    assert row.summary == "reviewed held-out IoU 0.906 · Pd 1.000 · Fa 0.000 (3 images)"


def test_a_retrained_classifier_row_leads_with_the_check_on_every_reviewed_label(db, tmp_path) -> None:
    """ADR 0072, seen under Xvfb: the row read "reviewed held-out acc 0.389 (18 images)" while the panel said the
    check on all 100 reviewed labels (what decided) gave 0.610."""
    catalog = ModelCatalog(db)
    d = make_model_dir(tmp_path / "clf", "classifier", "texture_linear")
    simple = {"best_simple": "thumbnail_logreg", "pooled": {"images": 100, "new": {"accuracy": 0.61, "f1": 0.568},
                                                            "simple": {"accuracy": 0.46, "f1": 0.39}, "wins": True}}
    compared = {"held_out_images": 18, "new": {"accuracy": 0.3889, "f1": 0.341}, "simple_answers": simple}
    db.model_versions.register("classifier", "clf-retrained", str(d), card={"retraining": {"held_out_comparison": compared}})
    row = next(r for r in catalog.rows("classifier") if r.name == "clf-retrained")
    assert row.summary == "all 100 reviewed (nested CV) acc 0.610 | held-out acc 0.389 (18 images)"


def test_a_bundled_row_whose_install_copy_was_replaced_becomes_a_new_version(db, tmp_path: Path, monkeypatch) -> None:
    """A session-48 probe upgraded a station in place: the bundled tile anomaly model had been retrained under the same
    name, and the new model answered under the old version, judged by the old card's threshold (62.56 for scores of 0
    to 1: no tile could be called anomalous), listed with both cards' figures. The old version keeps its answers and
    history under a dated name and can no longer run; a new one takes the bundle's name, card and active place."""
    import shutil

    from app.services import model_files, prelabel
    from app.services.model_files import ModelFilesError, local_model_dir
    from app.services.prelabel import bundled_model_dir, read_card, refresh_bundled
    from database import PredictionIn

    root = tmp_path / "models"
    shutil.copytree(bundled_model_dir("anomaly", "anomaly-magnetic_tile"), root / "anomaly-magnetic_tile")
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", root)
    monkeypatch.setattr(model_files, "_FINGERPRINTS", {})
    here = root / "anomaly-magnetic_tile"
    old_card = {**read_card(here), "threshold": 62.56}   # what the earlier install's card said
    # registered by the earlier install at its own folder, still on disk beside the updated one (the review of this
    # fix: the new version kept that path and could never run here)
    earlier = tmp_path / "opt-1.4" / "anomaly-magnetic_tile"
    shutil.copytree(here, earlier)
    (earlier / "card.json").write_text(json.dumps(old_card))
    old = db.model_versions.register("anomaly", here.name, str(earlier), bundled=True, activate=True, card=old_card)
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images
    good_images(tmp_path / "imgs", 1)
    index_folder(db, tmp_path / "imgs")
    image_id = db.images.query()[0].id
    db.predictions.upsert_many([PredictionIn(image_id, old.id, anomaly_score=30.0)])
    save_routing(db, Routing((RoutingRule("*", ("anomaly",), (("anomaly", here.name),)),)))   # named by a rule
    assert db.predictions.current_for_images([image_id], "anomaly")[image_id].model_version_id == old.id
    said = refresh_bundled(db)
    assert len(said) == 1 and "was updated with the install" in str(said[0])
    assert "pre-label the folders again" in str(said[0]) and not said[0].outdated
    new = db.model_versions.active("anomaly")
    assert new.id != old.id and new.name == "anomaly-magnetic_tile" and new.bundled
    assert Path(new.checkpoint_path) == here and local_model_dir(db, new) == here   # this install's folder
    assert image_id not in db.predictions.current_for_images([image_id], "anomaly")   # the old answer counts no more
    assert new.card["threshold"] == read_card(here)["threshold"] != 62.56
    retired = db.model_versions.get(old.id)
    assert retired.name.startswith("anomaly-magnetic_tile (until ") and not retired.bundled and not retired.active
    assert db.predictions.get(image_id, old.id).anomaly_score == 30.0   # its answer is history, kept
    with pytest.raises(ModelFilesError, match="replaced by an update of the station"):
        local_model_dir(db, retired)
    [record] = [a for a in db.model_versions.activations("anomaly") if a.version_id == new.id]
    assert record.previous_id == old.id and record.author == prelabel.UPDATER
    assert refresh_bundled(db) == []   # once
    rows = {r.id: r for r in ModelCatalog(db).rows("anomaly")}
    assert not rows[old.id].exists and "replaced by an update" in rows[old.id].summary   # listed as unable to run
    assert ModelCatalog(db).previous_champion("anomaly") is None   # no roll back to files that are gone
    (here / "card.json").write_text(json.dumps({**read_card(here), "note": "edited after"}))  # files moved again
    with pytest.raises(ModelFilesError, match="holds other files than the ones registered with it: the station "
                                              "was updated; pre-label again"):
        local_model_dir(db, db.model_versions.get(new.id))   # the worker never runs them under this version
    # a station whose install still holds the earlier files (sharing the database): told to update, and it refuses
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", earlier.parent)
    monkeypatch.setattr(model_files, "_FINGERPRINTS", {})
    with pytest.raises(ModelFilesError, match="this station is older than the one that registered them"):
        local_model_dir(db, db.model_versions.get(new.id))
    [note] = refresh_bundled(db)
    assert note.outdated and "update this station" in note.text
    from app.services.prelabel import PrelabelError, submit_routed_prelabel
    with pytest.raises(PrelabelError, match="older than the one registered by an updated station"):
        submit_routed_prelabel(db, folder_id=db.folders.list()[0].id, families=["anomaly"])
    # the other families still pre-label (the review of this fix: every submission was refused)
    save_routing(db, Routing(()))
    db.model_versions.register("classifier", "clf-here", str(REPO_ROOT / "resources" / "models" / "classifier-neu-texture"),
                               activate=True)
    jobs = submit_routed_prelabel(db, folder_id=db.folders.list()[0].id, families=["classifier", "anomaly"])
    assert jobs and all(db.jobs.get(j).params["families"] == ["classifier"] for j in jobs)


@pytest.mark.parametrize("with_card", [True, False])
def test_a_bundled_row_an_older_station_registered_with_the_same_card_adopts_the_files(db, with_card) -> None:
    """A row registered before fingerprints were kept, whose card is the one on disk (or none: before 2026-11-23): the
    same model, kept as is; a row with no card stores the one on disk (its summary came from there)."""
    from app.services.model_files import BUNDLE_FINGERPRINT
    from app.services.prelabel import bundled_model_dir, read_card, refresh_bundled
    seg = bundled_model_dir("segmenter", "segmenter-sirst")
    row = db.model_versions.register("segmenter", seg.name, str(seg), bundled=True, activate=True,
                                     card=read_card(seg) if with_card else None)
    assert refresh_bundled(db) == []
    kept = db.model_versions.get(row.id)
    assert kept.active and kept.name == seg.name and kept.config[BUNDLE_FINGERPRINT] and kept.card == read_card(seg)
    row = next(r for r in ModelCatalog(db).rows("segmenter") if r.name == "segmenter-sirst")
    assert row.summary.startswith("new scenes IoU 0.611 · Pd 0.894 · Fa 83.8 | ")


def test_expected_figures_from_a_hostile_card_are_bounded_or_left_out() -> None:
    from app.services.model_catalog import expected_summary
    assert expected_summary(None) == "" and expected_summary({"expected_on_new_data": [1, 2]}) == ""
    assert expected_summary({"expected_on_new_data": {"label": "x", "iou": "0.9"}}) == ""
    assert expected_summary({"expected_on_new_data": {"label": "L" * 5000, "accuracy": 0.5}}) == "L" * 40 + " acc 0.500"
    assert expected_summary({"expected_on_new_data": {"iou": 0.25}}) == "IoU 0.250"


def test_summaries_tolerate_odd_metrics() -> None:
    assert summarize_metrics(None) == ""
    assert summarize_metrics({"val": {"accuracy": True, "f1": 0.5}}) == ""
    assert summarize_metrics({"val": {"accuracy": float("nan")}, "test": "x"}) == ""
    assert summarize_metrics({"validation": {"accuracy": 0.5}}) == "validation acc 0.500"
    assert summarize_metrics({"held_out": {"iou": 0.5, "pd": 0.75}, "val": {"iou": 0.1}}) == "held-out IoU 0.500 · Pd 0.750"
    assert summarize_metrics({"iou": 0.5, "split": "test (held out)"}) == "test IoU 0.500"
    # how many images a figure comes from, where the card says (a retraining's dozen held-out reviewed images)
    assert summarize_metrics({"val": {"accuracy": 1.0, "count": 12}}) == "val acc 1.000 (12 images)"
    assert summarize_metrics({"iou": 0.5, "images": 1}) == "IoU 0.500 (1 image)"
    assert summarize_metrics({"test": {"accuracy": 0.5, "n_images": True}}) == "test acc 0.500"


def test_architecture_table_matches_the_model_registry() -> None:
    from inference.models import registry
    for name, family in {**ARCHITECTURES, **PART_ONLY}.items():
        spec = registry.spec(name)
        assert spec.family == family and spec.part_only == (name in PART_ONLY)
    assert {s.name for s in registry.available()} == set(ARCHITECTURES) | set(PART_ONLY)


def test_retrain_command_and_events() -> None:
    secret = "postgresql+psycopg://inspector:s3cret@dbhost/station"
    cmd = retrain_argv(secret, "classifier")
    assert cmd.argv == (sys.executable, str(REPO_ROOT / "main.py"), "retrain", "classifier", "--progress-json")
    assert cmd.env == {"INSPECTION_STATION_DB": secret} and "s3cret" not in " ".join(cmd.argv)  # not in `ps`
    assert cmd.environment()["INSPECTION_STATION_DB"] == secret
    assert retrain_argv("u", "anomaly", 5).argv[-2:] == ("--epochs", "5")
    assert retrain_argv("u", "classifier", keep_if_worse=True).argv[-1] == "--keep-if-worse"
    from app.services.retrain_protocol import is_refusal
    refusal = parse_event('{"event": "error", "message": "refused: the new version loses ...", '
                          '"comparison": {"simple_answers": {"wins": false}}}')
    assert is_refusal(refusal) and not is_refusal(parse_event('{"event": "error", "message": "refused: no labels"}'))
    assert not refusal.not_retrained
    declined = parse_event('{"event": "error", "message": "too few labels", "not_retrained": true}')
    assert declined.not_retrained and not is_refusal(declined)
    assert not parse_event('{"event": "error", "message": "x", "not_retrained": "yes"}').not_retrained
    assert parse_event('{"event": "stage", "stage": "export", "message": "exporting"}') == \
        RetrainStage("export", "exporting")
    p = parse_event(b'{"event": "progress", "stage": "train", "done": 12, "total": 300, "eta_s": 95.0}\n')
    assert p == RetrainProgress("train", 12, 300, 95.0) and p.fraction == pytest.approx(0.04)
    assert parse_event('{"event": "progress", "done": 1, "total": 0, "eta_s": null}').fraction == 0.0
    done = parse_event('{"event": "done", "version_id": 7, "name": "n", "family": "classifier", "path": "/p", '
                       '"metrics": {"accuracy": 1}, "activated": false}')
    assert done == RetrainDone(7, "n", "classifier", "/p", False) and done.metrics == {"accuracy": 1}
    assert done.comparison == {}
    assert parse_event('{"event": "done", "version_id": 7, "comparison": {"held_out_images": 3}}').comparison == \
        {"held_out_images": 3}
    assert parse_event('{"event": "error", "message": "not enough reviewed labels"}') == \
        RetrainError("not enough reviewed labels")
    refusal = parse_event('{"event": "error", "message": "refused: ...", "comparison": {"simple_answers": {"wins": false}}}')
    assert refusal.comparison == {"simple_answers": {"wins": False}}
    assert parse_event('{"event": "cancelled"}') == RetrainCancelled()
    for junk in ("", "UserWarning: something", "{broken", "[1]", '{"event": "mystery"}',
                 '{"event": "progress", "done": "x", "total": 3}', '{"event": "done"}'):
        assert parse_event(junk) is None


@pytest.mark.parametrize("old_name", ["segmenter-sirst", "segmenter-sirst-v2"])
def test_a_station_that_ran_an_earlier_bundled_segmenter_keeps_it_and_sees_the_new_one(db, old_name) -> None:
    """Sessions 23 and 26 shipped a new default segmenter beside the earlier ones: a station whose database has an
    earlier bundle active (registered before the upgrade) keeps pre-labelling with it, with its stored predictions;
    the new default is listed with its own figures, one click away."""
    from app.services.prelabel import bundled_model_dir, read_card
    old = bundled_model_dir("segmenter", old_name)
    db.model_versions.register("segmenter", old.name, str(old), bundled=True, activate=True, card=read_card(old))
    rows = {r.name: r for r in ModelCatalog(db).rows("segmenter")}
    assert rows[old_name].active and not rows["segmenter-sirst-v3"].active
    assert rows["segmenter-sirst-v3"].summary.startswith("new scenes IoU 0.648")
    assert resolve_models(db, ["segmenter"])["segmenter"].name == old_name


def test_a_version_whose_description_cannot_be_read_is_listed_without_one(tmp_path: Path) -> None:
    """A hostile or broken domain.json costs the row its "trained on" text, never the listing."""
    from app.services.model_catalog import trained_on

    assert trained_on(None) == "" and trained_on(tmp_path) == ""   # no folder here; no description in it
    (tmp_path / "domain.json").write_text('{"format": 2, "parts": {"descriptor": {"dim": 999999999}}}')
    (tmp_path / "domain.safetensors").write_bytes(b"\x00" * 16)
    assert trained_on(tmp_path) == ""


def test_json_nested_too_deeply_is_refused_or_set_aside_never_a_crash(db, tmp_path: Path) -> None:
    """Found by a session-44 probe: a 6 KB ``domain.json`` of 3000 nested brackets raised RecursionError, which no
    reader caught: Add said the folder was refused yet registered it, and the Models dialog and ``models list`` then
    failed for every version. A config nested so is refused in one sentence; domain statistics so are set aside (the
    model still predicts) and the list reads."""
    deep = "[" * 3000 + "]" * 3000
    catalog = ModelCatalog(db)
    bad_config = make_model_dir(tmp_path / "deep-config")
    (bad_config / "config.json").write_text(deep)
    with pytest.raises(ModelCatalogError, match="nested too deeply"):
        catalog.add_directory("classifier", bad_config)
    d = make_model_dir(tmp_path / "deep-domain")
    (d / "domain.json").write_text(deep)
    (d / "domain.safetensors").write_bytes(b"\0" * 16)
    row = catalog.add_directory("classifier", d)
    assert any(r.id == row.id for r in catalog.rows())


def test_a_card_nested_deeper_than_the_station_reads_is_refused_at_the_check(db, tmp_path: Path) -> None:
    """Found by a session-51 audit: a card.json nested 950 levels (2 KB) parsed, passed check_model_dir, and
    registering then raised RecursionError in json_safe: "<path> was not added: maximum recursion depth exceeded in
    __instancecheck__". More than 64 levels is refused when the file is read, naming it, and nothing is registered."""
    from app.services.model_catalog import check_model_dir
    d = make_model_dir(tmp_path / "deep-card")
    card = json.loads((d / "card.json").read_text())
    card["notes"] = json.loads("[" * 950 + "]" * 950)
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCatalogError, match=r"card\.json .*nested too deeply: more than 64 levels"):
        check_model_dir("classifier", d)
    before = len(ModelCatalog(db).rows())
    with pytest.raises(ModelCatalogError, match="nested too deeply"):
        ModelCatalog(db).add_directory("classifier", d)
    assert len(ModelCatalog(db).rows()) == before
    card["notes"] = json.loads("[" * 60 + "]" * 60)  # a card nested within the bound is read as before
    (d / "card.json").write_text(json.dumps(card))
    assert check_model_dir("classifier", d)["notes"]


def test_a_folder_that_cannot_be_shared_is_refused_at_add_saying_why(db, tmp_path: Path) -> None:
    """Found by a session-44 probe: a valid model beside 300 small text files was added without a word, none of its
    files kept in the database, and other stations were told to open the station that made it (it never helps)."""
    d = make_model_dir(tmp_path / "crowded")
    for i in range(300):
        (d / f"log{i}.txt").write_text("x")
    with pytest.raises(ModelCatalogError, match="cannot be shared with the other stations"):
        ModelCatalog(db).add_directory("classifier", d)
    assert not any(Path(v.checkpoint_path).resolve() == d.resolve() for v in db.model_versions.list("classifier"))


def test_a_segmenter_trainers_own_figure_is_called_validation_not_held_out() -> None:
    """A session-46 probe: with no reviewed frame held out, `models list` read "held-out IoU 0.000 · Pd 0.000 · Fa
    0.000 (2 images)": the trainer's tenth of its training frames, on which it chose its epoch and threshold."""
    from app.services.retraining import headline_metrics
    metrics = headline_metrics({"held_out_metrics": {"iou": 0.0, "pd": 0.0, "fa": 0.0, "images": 2}})
    assert summarize_metrics(metrics) == "validation IoU 0.000 · Pd 0.000 · Fa 0.000 (2 images)"
