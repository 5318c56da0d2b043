"""The GPU check scripts run rarely (on a lent machine, minutes at a time): their CPU paths are pinned here so a
call there is never spent on a script that breaks at its first line."""
from __future__ import annotations

import numpy as np

from benchmarks import gpu_agreement, gpu_check
from inference.results import AnomalyResult, ClassResult, ImageResult, SegmentResult


def test_paper_preset_rows_time_a_training_step_of_every_family_on_the_cpu() -> None:
    rows = gpu_check.paper_presets("cpu", "test_tiny", steps=1)
    assert set(rows) == set(gpu_check.PAPER_RUNS)
    for family, (row,) in rows.items():
        assert "error" not in row, (family, row)
        assert row["backend"] == "torch" and row["precision"] == "fp32"
        assert row["parameters"] > 0 and row["train_images_per_second"] > 0


def test_agreement_counts_differing_answers_per_family() -> None:
    def img(cls=None, seg=None, ano=None) -> ImageResult:
        return ImageResult("k", "p", 4, 4, classifier=cls, segmenter=seg, anomaly=ano)

    a = ClassResult(("free", "crack"), np.array([0.7, 0.3], np.float32), "free", 0.7)
    b = ClassResult(("free", "crack"), np.array([0.4, 0.6], np.float32), "crack", 0.6)
    row = gpu_agreement.compare("classifier", [img(cls=a), img(cls=a)], [img(cls=a), img(cls=b)])
    assert row["answers_differ"] == 1 and abs(row["largest_score_difference"] - 0.3) < 1e-6

    m = np.zeros((4, 4), bool)
    m2 = m.copy()
    m2[0, :2] = True
    m3 = m2.copy()
    m3[1, :2] = True
    row = gpu_agreement.compare("segmenter", [img(seg=SegmentResult(m3, 1))], [img(seg=SegmentResult(m2, 1))])
    assert row["answers_differ"] == 0 and row["mask_iou_min"] == 0.5

    x = np.ones((2, 2), np.float32)
    row = gpu_agreement.compare("anomaly", [img(ano=AnomalyResult(x, 9.0, 10.0))],
                                [img(ano=AnomalyResult(x * np.nan, 11.0, 10.0))])
    assert row["answers_differ"] == 1 and row["non_finite"] == 1
