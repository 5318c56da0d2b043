"""Issue 23, item 2: a region drawn from a heatmap, accepted, exports as MVTec ground truth that
``evaluate anomaly`` scores (pixel AUROC and PRO) against."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.services.artifacts import ArtifactStore
from app.services.display import decode_mask_png
from app.services.export import ExportOptions, export_database
from app.services.heat_region import grow_region, threshold_region
from app.services.review import ReviewService, ReviewSettings
from app.services.review_types import LabelState, QueueFilter
from database import open_database
from tests.services.export_fixtures import H, W, write_image
from tests.tiny_models import one_thread, save_tiny_models  # noqa: F401  (one_thread: autouse fixture)


def heat_of(k: int) -> np.ndarray:
    """A model-like map at the image's size: one hot spot per anomalous image, placed by ``k``."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.exp(-((yy - 6 - 2 * k) ** 2 + (xx - 8 - 3 * k) ** 2) / 12.0).astype(np.float32)


@pytest.fixture
def reviewed(tmp_path: Path):
    """Ten images: six reviewed normal, four anomalous whose regions came from their heatmaps
    (two by the threshold slider's function, two by click-to-grow), all accepted."""
    root = tmp_path / "lot1"
    for i in range(10):
        write_image(root / f"p{i:02d}", i)
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    service = ReviewService(db, ReviewSettings(reviewer="tester"), artifacts=ArtifactStore(tmp_path / "art"))
    info = service.open_folder(root)
    ids = [i.image_id for i in service.queue(QueueFilter(folder_id=info.id, sort="name"))]
    regions = {}
    for k, image_id in enumerate(ids):
        if k < 6:
            service.save_label(image_id, LabelState(anomaly_verdict="normal", review_state="accepted"))
            continue
        heat = heat_of(k - 6)
        region = threshold_region(heat, 0.5) if k < 8 else grow_region(heat, 8 + 3 * (k - 6), 6 + 2 * (k - 6))
        assert region.any() and not region.all()
        service.save_label(image_id, LabelState(class_name="dent", anomaly_verdict="anomalous",
                                                anomaly_region=region, review_state="accepted"))
        regions[service.item(image_id).rel_path] = region
    yield db, regions
    db.close()


def test_accepted_regions_export_as_mvtec_ground_truth_and_evaluate_scores_them(tmp_path, reviewed, capsys):
    from app.cli import main

    db, regions = reviewed
    out = tmp_path / "export"
    result = export_database(db, out, ExportOptions(formats=("mvtec",)))
    assert result.formats["mvtec"]["anomalous_without_region"] == 0
    category = out / "mvtec" / "lot1"
    for rel, region in regions.items():
        gt = category / "ground_truth" / "dent" / f"{Path(rel).stem}_mask.png"
        assert (category / "test" / "dent" / rel).is_file()
        mask = decode_mask_png(gt.read_bytes())
        assert mask.shape == (H, W)
        np.testing.assert_array_equal(mask, region)
    test_good = list((category / "test" / "good").glob("*.png"))
    assert test_good and list((category / "train" / "good").glob("*.png"))

    model = save_tiny_models(tmp_path / "models")["anomaly"]
    report = tmp_path / "metrics.json"
    assert main(["evaluate", "anomaly", "--data", str(category), "--model", str(model), "--json", str(report),
                 "--threads", "1"]) == 0
    res = json.loads(report.read_text())
    assert res["n_defect"] == 4 and res["n_good"] == len(test_good)
    assert res["n_pixel_evaluated"] == 4 + len(test_good)  # every exported region was found and scored
    assert 0.0 <= res["pixel_auroc"] <= 1.0 and 0.0 <= res["pro"] <= 1.0
    assert not math.isnan(res["image_auroc"]) and res["skipped"] == []
    assert "PRO@30%" in capsys.readouterr().out
