"""Review flags and priority from predictions."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.services.flags import (
    ANOMALY,
    DEFECT,
    LOW_CONFIDENCE,
    OUT_OF_DOMAIN,
    TARGETS,
    FlagSettings,
    answer_stands,
    flag_result,
    load_flag_settings,
)
from inference.results import AnomalyResult, ClassResult, ImageResult, SegmentResult


def _result(label="free", conf=0.9, targets=0, score=0.1, thr=0.5) -> ImageResult:
    scores = np.array([conf, 1 - conf], np.float32)
    return ImageResult(
        key=1, path="x.png", height=4, width=4,
        classifier=ClassResult(("free", "crack") if label == "free" else (label, "free"), scores, label, conf),
        segmenter=SegmentResult(np.zeros((4, 4), bool), targets),
        anomaly=AnomalyResult(np.zeros((2, 2), np.float32), score, thr),
    )


def test_clean_image_is_not_flagged_and_ranks_by_uncertainty() -> None:
    s = FlagSettings()
    sure, unsure = flag_result(_result(conf=0.95), s), flag_result(_result(conf=0.7), s)
    assert not sure.flagged and not unsure.flagged
    assert 0 <= sure.priority < unsure.priority < 1
    near = flag_result(_result(conf=0.99, score=0.45), s)  # anomaly score at 90 % of its threshold
    assert not near.flagged and near.priority == pytest.approx(0.9)


def test_each_rule_flags_with_its_reason() -> None:
    s = FlagSettings()
    assert flag_result(_result(score=0.9), s).reasons == (ANOMALY,)
    assert flag_result(_result(targets=2), s).reasons == (TARGETS,)
    assert flag_result(_result(label="crack"), s).reasons == (DEFECT,)
    assert flag_result(_result(conf=0.4), s).reasons == (LOW_CONFIDENCE,)
    both = flag_result(_result(score=0.9, targets=3, label="crack", conf=0.5), s)
    assert set(both.reasons) == {ANOMALY, TARGETS, DEFECT, LOW_CONFIDENCE}
    assert both.priority > flag_result(_result(score=0.9), s).priority >= 1


def test_out_of_domain_replaces_that_familys_reasons_only() -> None:
    s = FlagSettings()
    r = _result(label="crack", conf=1.0, score=0.9)  # a sure defect and an anomaly...
    outside = flag_result(replace(r, in_domain={"classifier": 0.1, "anomaly": 0.8}), s)
    # ...but the classifier never saw anything like the image: its answer is no finding.
    assert outside.reasons == (OUT_OF_DOMAIN, ANOMALY) and outside.out_of_domain == ("classifier",)
    assert outside.for_family("classifier") == (OUT_OF_DOMAIN,) and outside.for_family("anomaly") == (ANOMALY,)
    assert outside.for_family("segmenter") == ()
    inside = flag_result(replace(r, in_domain={"classifier": 0.6, "anomaly": 0.8}), s)
    assert set(inside.reasons) == {DEFECT, ANOMALY} and inside.out_of_domain == ()
    # Farther outside ranks higher (severity 1 at the threshold, up to 2 at twice its distance).
    near = flag_result(replace(_result(), in_domain={"segmenter": 0.45}), s)
    far = flag_result(replace(_result(), in_domain={"segmenter": 0.01}), s)
    assert near.reasons == far.reasons == (OUT_OF_DOMAIN,)
    assert 1.0 <= near.priority < far.priority <= 2.0


def test_an_anomaly_out_of_domain_is_withheld_but_the_image_is_flagged() -> None:
    """A foreign image (a sky frame through the tile model) and a badly broken part both fall outside an
    anomaly model's domain: the score is withheld as no finding, and the image is flagged for review."""
    s = FlagSettings()
    far = flag_result(replace(_result(score=0.9), in_domain={"anomaly": 0.1}), s)
    assert far.reasons == (OUT_OF_DOMAIN,) and far.flagged and far.priority >= 1
    assert far.for_family("anomaly") == (OUT_OF_DOMAIN,)
    assert not answer_stands("anomaly", ("anomaly",)) and answer_stands("classifier", ("anomaly",))

def test_thresholds_are_configurable() -> None:
    r = _result(score=0.6, targets=1, label="scratch")
    assert flag_result(r, FlagSettings(anomaly_threshold=0.7, min_targets=2,
                                       good_classes=("scratch",))).reasons == ()
    # no threshold in the card and none configured: never flag on anomaly
    r2 = _result(score=9.0, thr=None)
    assert ANOMALY not in flag_result(r2, FlagSettings()).reasons


def test_settings_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    assert load_flag_settings(path) == FlagSettings()
    s = FlagSettings(anomaly_threshold=0.3, good_classes=("ok",), min_confidence=0.8)
    path.write_text(json.dumps(s.to_dict()), encoding="utf-8")  # an older station's file
    assert load_flag_settings(path) == s
    with pytest.raises(ValueError, match="unknown flag settings"):
        FlagSettings.from_dict({"anomaly_treshold": 1})
    path.write_text('{"min_confidence": 3}')
    with pytest.raises(ValueError, match="min_confidence"):
        load_flag_settings(path)
    # a hand-edited old file's values of the wrong kind (a session-47 audit: "0.5" was stored, then re-flagging raised
    # TypeError and the Settings dialog could not open; "ok" became the classes o and k)
    for bad, says in (({"anomaly_threshold": "0.5"}, "anomaly_threshold must be a number"),
                      ({"anomaly_threshold": float("nan")}, "anomaly_threshold must be a number"),
                      ({"min_confidence": "0.6"}, "min_confidence must be a number"),
                      ({"min_targets": 1.5}, "whole number"), ({"good_classes": "ok"}, "list of class names"),
                      ({"min_targets": float("inf")}, "min_targets must be a number"),  # OverflowError stopped the worker
                      ({"min_targets": 10 ** 400}, "min_targets must be a number")):
        with pytest.raises(ValueError, match=says):
            FlagSettings.from_dict(bad)
    assert FlagSettings.from_dict({"min_targets": 2.0, "anomaly_threshold": 1}).min_targets == 2
    # a deeply nested or huge old file (a session-46 probe: RecursionError past every caller; read whole)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_flag_settings(path)
    with path.open("r+b") as fh:
        fh.truncate(50 << 20)  # sparse
    with pytest.raises(ValueError, match="not flag settings"):
        load_flag_settings(path)
