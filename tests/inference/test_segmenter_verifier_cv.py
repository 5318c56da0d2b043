"""benchmarks/segmenter_verifier_cv.py: the pipeline option (today's bundle or the issue-time one), the maps a
pipeline reads, its summaries and heldout-21.md's rule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.segmenter_scene_cv import RECIPES
from benchmarks.segmenter_verifier_cv import (
    FA_RATIO,
    PIPELINES,
    POINTS,
    compare,
    held_out_rule,
    mean_of,
    parse_args,
    pipeline_maps,
)
from inference.training.segmenter_cv import views_of
from tests.inference.test_segmenter_data import write_tree
from tests.tiny_models import one_thread, save_tiny_models  # noqa: F401  (one_thread: autouse fixture)

RUN = ["--data", "d", "--work", "w", "--out", "o"]


def test_pipeline_option_defaults_and_variants():
    args = parse_args(RUN)
    assert args.pipeline == "shipped" and args.variants == ["shipped", "scene_inner", "nested"]
    args = parse_args([*RUN, "--pipeline", "issue"])
    assert args.pipeline == "issue" and args.variants == ["shipped", "scene_inner"]
    assert parse_args([*RUN, "--pipeline", "issue", "--variants", "shipped"]).variants == ["shipped"]
    with pytest.raises(SystemExit):  # nested needs --alone networks of every member: only the shipped pipeline has them
        parse_args([*RUN, "--pipeline", "issue", "--variants", "shipped,nested"])
    with pytest.raises(SystemExit):
        parse_args([*RUN, "--pipeline", "today"])
    with pytest.raises(SystemExit):
        parse_args(["--pipeline", "issue"])  # no --data / --work / --out
    with pytest.raises(SystemExit):
        parse_args(["--compare", "a.json"])  # two summaries
    assert parse_args(["--compare", "a.json", "b.json"]).compare == [Path("a.json"), Path("b.json")]


def test_pipelines_are_the_two_cards():
    shipped, issue = PIPELINES["shipped"], PIPELINES["issue"]
    for pipe in (shipped, issue):
        assert views_of(pipe.use) == pipe.views and "size_limit" in pipe.use
        assert all(m in RECIPES for m in pipe.members)
    assert shipped.recipes("base") == ["base"] and shipped.views == "h"
    assert issue.recipes("base") == ["base", "conv"] and issue.views is True and RECIPES["conv"]["inner"] == "conv"
    # today's row names are those of helper Q's reports, so its JSONs stay comparable
    assert shipped.rows()["shipped"] == "shipped settings + verifier (shipped recipe, per fold)"
    assert shipped.rows()["none"] == "shipped settings, no verifier"
    assert issue.rows()["shipped"] != shipped.rows()["shipped"]


def test_pipeline_maps_average_members_over_views(tmp_path):
    from inference.training.segmenter_data import SegTree, load_frames

    root = write_tree(tmp_path / "d", n=3)
    frames = load_frames(SegTree.open(root), ["f0", "f1", "f2"], 1)[0]
    a = save_tiny_models(tmp_path / "a", seed=0)["segmenter"]
    b = save_tiny_models(tmp_path / "b", seed=1)["segmenter"]
    both = pipeline_maps([[a, b]], [frames], True, tmp_path / "maps" / "ab")
    assert sorted(both) == ["f0", "f1", "f2"]
    for f in frames:
        assert both[f.stem].shape == f.mask.shape and 0 <= both[f.stem].min() <= both[f.stem].max() <= 1
    assert (tmp_path / "maps" / "ab_fold0_flips1.npz").is_file()
    alone = [pipeline_maps([[n]], [frames], True, tmp_path / "maps" / name) for n, name in ((a, "a"), (b, "b"))]
    for f in frames:
        np.testing.assert_allclose(both[f.stem], (alone[0][f.stem] + alone[1][f.stem]) / 2, atol=1e-6)
    mirror = pipeline_maps([[a]], [frames], "h", tmp_path / "maps" / "a")
    assert (tmp_path / "maps" / "a_fold0_flipsh.npz").is_file()
    assert any(not np.allclose(mirror[f.stem], alone[0][f.stem]) for f in frames)  # two views are not four
    again = pipeline_maps([[a, b]], [frames], True, tmp_path / "maps" / "ab")  # read back from the cache
    assert all(np.array_equal(again[s], both[s]) for s in both)


def _row(iou: float, niou: float, pd: float, fa: float) -> dict:
    return {k: {"mean": v, "min": v, "max": v} for k, v in (("iou", iou), ("niou", niou), ("pd", pd), ("fa", fa))}


def test_held_out_rule_each_bound():
    issue = _row(0.62, 0.63, 0.90, 80.0)
    assert held_out_rule(_row(0.62 - POINTS, 0.63 - POINTS, 0.90 - POINTS, 80.0 * FA_RATIO), issue)["met"]
    assert held_out_rule(_row(0.70, 0.70, 0.95, 10.0), issue)["met"]
    for k, bad in (("iou", _row(0.614, 0.63, 0.90, 80.0)), ("niou", _row(0.62, 0.624, 0.90, 80.0)),
                   ("pd", _row(0.62, 0.63, 0.894, 80.0)), ("fa", _row(0.62, 0.63, 0.90, 88.1))):
        verdict = held_out_rule(bad, issue)
        assert not verdict["met"] and not verdict["checks"][k]["met"]
        assert all(c["met"] for j, c in verdict["checks"].items() if j != k)
    assert held_out_rule(_row(0.6, 0.6, 0.9, 88.0), _row(0.6, 0.6, 0.9, 80.0))["checks"]["fa"]["ratio"] == pytest.approx(1.1)


def _report(path: Path, pipeline: str | None, seed: int, iou: float, fa: float) -> Path:
    pipe = PIPELINES[pipeline or "shipped"]
    pooled = {"iou": iou, "niou": iou, "pd": 0.9, "fa": fa, "detected": 380}
    report = {"verifier_options": {"seed": seed},
              "rows": {pipe.rows()["none"]: {"pooled": {**pooled, "fa": 99.0}}, pipe.rows()["shipped"]: {"pooled": pooled}}}
    if pipeline is not None:  # helper Q's reports carry no pipeline: they are the shipped one
        report["pipeline"] = pipeline
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def test_mean_of_and_compare(tmp_path):
    today = mean_of([_report(tmp_path / "t0.json", None, 0, 0.60, 80.0), _report(tmp_path / "t1.json", "shipped", 1, 0.62, 90.0)])
    assert today["pipeline"] == "shipped" and today["seeds"] == [0, 1]
    row = today["rows"][PIPELINES["shipped"].rows()["shipped"]]
    assert row["iou"]["mean"] == pytest.approx(0.61) and row["fa"]["min"] == 80.0 and row["fa"]["max"] == 90.0
    issue = mean_of([_report(tmp_path / "i0.json", "issue", 0, 0.63, 80.0)])
    (tmp_path / "today.json").write_text(json.dumps(today))
    (tmp_path / "issue.json").write_text(json.dumps(issue))
    verdict = compare(tmp_path / "today.json", tmp_path / "issue.json")
    assert not verdict["met"] and not verdict["checks"]["iou"]["met"] and verdict["checks"]["fa"]["met"]
    assert verdict["checks"]["iou"]["difference"] == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="shipped then an issue"):
        compare(tmp_path / "issue.json", tmp_path / "today.json")
    with pytest.raises(ValueError, match="different pipelines"):
        mean_of([tmp_path / "t0.json", tmp_path / "i0.json"])
