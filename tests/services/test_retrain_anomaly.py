"""Retraining an anomaly model that learns from reviewed defects (``tile_defect``): the active version's
kind and settings are kept (``train anomaly --like``), a share of the anomalous images with a drawn region
teaches its heads, the rest stay held out; without enough regions it refuses and says what to do."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main as cli_main
from app.services.export_items import encode_mask
from app.services.export_split import SplitSpec
from app.services.retrain_anomaly import MIN_DEFECT_REGIONS, defects_to_validation
from app.services.retraining import RetrainError, plan_retraining
from database import FileEntry, LabelChange, ReviewState, open_database
from inference.checkpoints import load_model
from inference.training.convert_magnetic_tile import convert
from tests.inference.test_texture_knn import _tiles
from tests.inference.test_tile_defect import _source
from tests.tiny_models import one_thread  # noqa: F401  (one_thread: autouse)

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


@pytest.fixture(scope="module")
def tiny_tile_model(tmp_path_factory) -> Path:
    """A tile_defect model with the ``test_tiny`` settings, trained by the real command (~5 s)."""
    tmp = tmp_path_factory.mktemp("tile")
    convert(_source(tmp / "mt"), tmp / "split", defects_by_split=True)
    out = tmp / "model"
    rc = cli_main(["train", "anomaly", "--data", str(tmp / "split"), "--out", str(out), "--arch", "tile_defect",
                   "--preset", "test_tiny", "--threads", "1", "--cv-folds", "3", "--no-evaluate"])
    assert rc == 0
    return out


def reviewed_tiles(tmp_path: Path, regions: int, without_region: int = 0):
    """A station with 24 good tiles and ``regions`` + ``without_region`` dark-spot tiles reviewed as anomalous
    (the first ``regions`` with the spot drawn), in four capture sessions named like magnetic tile's."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiles"
    root.mkdir()
    names, masks = [], {}
    for i in range(24 + regions + without_region):
        bad = i >= 24
        img = _tiles(1, rng)[0, 0]
        name = f"exp{i % 4 + 1}_num_{i}.png"
        if bad:
            y, x = (int(v) for v in rng.integers(8, 24, 2))
            img[y - 3:y + 3, x - 3:x + 3] = 0.05
            m = np.zeros((SIZE, SIZE), bool)
            m[y - 3:y + 3, x - 3:x + 3] = True
            if i < 24 + regions:
                masks[name] = m
        cv2.imwrite(str(root / name), (img * 255).astype(np.uint8))
        names.append((name, bad))
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_database(url)
    folder = db.folders.add(str(root))
    db.images.sync(folder.id, [FileEntry(n, (root / n).stat().st_size, 0, width=SIZE, height=SIZE) for n, _ in names])
    ids = {i.rel_path: i.id for i in db.images.query()}
    for n, bad in names:
        region = encode_mask(masks[n]) if n in masks else None
        db.labels.append(ids[n], LabelChange(ReviewState.CORRECTED, anomaly_verdict="anomalous" if bad else "normal",
                                             anomaly_mask_png=region), "ann")
    return db, url


def _exported_anomalies(cat: Path) -> Path:
    """An MVTec test split as the export writes it: 10 images of two kinds, 8 of each with a drawn region."""
    for i in range(10):
        for kind in ("crack", "spot"):
            img = cat / "test" / kind / f"p{i}.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            img.write_bytes(b"x")
            if i < 8:
                mask = cat / "ground_truth" / kind / f"p{i}_mask.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                mask.write_bytes(b"m")
    return cat


def test_defects_with_a_region_split_by_name_between_validation_and_test(tmp_path: Path) -> None:
    cat = _exported_anomalies(tmp_path / "cat")
    moved, left = defects_to_validation(cat, SplitSpec(0.8, 0.2, 0.0))
    val = sorted(p.relative_to(cat).as_posix() for p in (cat / "validation").rglob("*.png"))
    assert moved == len(val) and moved + left == 20 and 10 <= moved <= 14  # about four in five of the 16 regions
    for v in val:  # each moved image took its mask along, and only images with a region moved
        kind, name = v.split("/")[1:]
        assert (cat / "validation_ground_truth" / kind / name.replace(".png", "_mask.png")).is_file()
        assert not (cat / "test" / kind / name).exists() and not name.startswith(("p8", "p9"))
    assert all((cat / "test" / k / f"p{i}.png").is_file() for k in ("crack", "spot") for i in (8, 9))
    again = _exported_anomalies(tmp_path / "again")  # the same names split the same way
    assert defects_to_validation(again, SplitSpec(0.8, 0.2, 0.0)) == (moved, left)
    assert sorted(p.relative_to(again).as_posix() for p in (again / "validation").rglob("*.png")) == val


def test_a_tile_defect_version_is_refitted_like_itself(tiny_tile_model: Path, tmp_path: Path) -> None:
    db, url = reviewed_tiles(tmp_path, regions=14, without_region=2)
    parent = db.model_versions.register("anomaly", "tiles-v1", str(tiny_tile_model), activate=True)
    plan = plan_retraining(db, "anomaly", tmp_path / "work", tmp_path / "out")
    args = list(plan.train_args)
    assert args[args.index("--like") + 1] == str(tiny_tile_model) and "--channels" not in args
    assert args[args.index("--group-by") + 1] == "prefix"  # exp1_… : the capture sessions
    assert plan.start.startswith(f"refitted as tile_defect with {parent.name}'s settings")
    learned = plan.data["defects_learned"]
    assert MIN_DEFECT_REGIONS <= learned < 14 and plan.data["anomalous_test"] == 16 - learned and plan.comparable
    db.close()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--db", url, "retrain", "anomaly", "--progress-json",
                           "--threads", "1", "--name", "tiles-v2"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    done = [json.loads(line) for line in proc.stdout.splitlines()][-1]
    assert done["comparison"]["parent_name"] == "tiles-v1"
    assert done["comparison"]["new"]["image_auroc"] > 0.8  # an obvious dark spot, on held-out reviewed tiles
    db = open_database(url)
    try:
        new = load_model(db.model_versions.get(done["version_id"]).checkpoint_path, family="anomaly")
        old = load_model(tiny_tile_model, family="anomaly")
        assert new.name == "tile_defect" and new.config == old.config  # the same kind and settings, refitted
    finally:
        db.close()


def test_too_few_drawn_regions_refuse_and_say_what_to_do(tiny_tile_model: Path, tmp_path: Path) -> None:
    db, _url = reviewed_tiles(tmp_path, regions=2, without_region=6)
    db.model_versions.register("anomaly", "tiles-v1", str(tiny_tile_model), activate=True)
    with pytest.raises(RetrainError, match=r"tile_defect model: it learns from reviewed anomalous images with a drawn "
                                           r"region.*--from-scratch"):
        plan_retraining(db, "anomaly", tmp_path / "work", tmp_path / "out")
    plan = plan_retraining(db, "anomaly", tmp_path / "work2", tmp_path / "out2", from_scratch=True)
    assert "--like" not in plan.train_args and plan.start.startswith("from scratch on good parts")
    db.close()


def test_like_takes_the_kind_and_settings_and_refuses_a_disagreeing_arch(tiny_tile_model: Path, tmp_path: Path,
                                                                          capsys) -> None:
    rc = cli_main(["train", "anomaly", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--like",
                   str(tiny_tile_model), "--arch", "texture_knn", "--no-evaluate"])
    assert rc == 2 and "disagrees with --like" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model": "memory_mamba", "config": {}}))
    rc = cli_main(["train", "anomaly", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--like",
                   str(tmp_path / "bad"), "--no-evaluate"])
    assert rc == 2 and "not an anomaly model folder" in capsys.readouterr().err


def test_the_held_out_answers_counted_are_those_still_held_out(tiny_tile_model: Path, tmp_path: Path) -> None:
    """Found by a session-45 probe: with every verdict accepted from the active tile_defect version's answers, the
    comparison read "13 of 5 held-out labels are its own answers": the count ran over the anomalous images the
    refit had moved to validation/ to learn from."""
    from app.services.reflag import card_threshold
    from database import PredictionIn
    db, _url = reviewed_tiles(tmp_path, regions=14, without_region=2)
    parent = db.model_versions.register("anomaly", "tiles-v1", str(tiny_tile_model), activate=True,
                                        card={"threshold": {"image": 0.5}})  # as a test run writes it
    threshold = card_threshold(parent.card or {})
    assert threshold == 0.5
    labels = db.labels.current_many([i.id for i in db.images.query()])
    db.predictions.upsert_many([
        PredictionIn(i, parent.id, anomaly_score=(threshold + 1.0 if lab.anomaly_verdict.value == "anomalous" else 0.0))
        for i, lab in labels.items()])
    preds = db.predictions.for_images(list(labels), parent.id)
    for i, lab in labels.items():
        db.labels.append(i, LabelChange(ReviewState.ACCEPTED, anomaly_verdict=lab.anomaly_verdict,
                                        anomaly_mask_png=lab.anomaly_mask_png, from_prediction_id=preds[i].id), "ann")
    plan = plan_retraining(db, "anomaly", tmp_path / "work", tmp_path / "out")
    held = plan.data["held_out"]
    assert plan.data["defects_learned"] >= MIN_DEFECT_REGIONS
    assert plan.data["held_out_parents_answers"] == held  # every one still held out, and none of those learnt from
    db.close()
