"""Domain statistics (inference.domain): fitting, scoring, the out-of-fold threshold, bounded files."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from inference.domain import (
    DOMAIN_JSON,
    DOMAIN_WEIGHTS,
    OUT_OF_DOMAIN_BELOW,
    DomainError,
    fit_domain,
    has_domain,
    in_domain_score,
    is_out_of_domain,
    load_domain,
    out_of_fold_distances,
    save_domain,
)


def _cloud(n: int, d: int = 24, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Correlated Gaussian embeddings: a few strong directions plus noise (like pooled features)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((4, d))
    return (rng.standard_normal((n, 4)) @ basis * 2.0 + 0.3 * rng.standard_normal((n, d)) + shift).astype(np.float32)


def test_held_out_images_of_the_domain_pass_and_foreign_ones_are_flagged() -> None:
    stats = fit_domain(_cloud(600), quantile=0.99)
    own = stats.scores(_cloud(400, seed=1))
    foreign = stats.scores(_cloud(200, seed=2, shift=3.0))
    assert np.mean(own < OUT_OF_DOMAIN_BELOW) <= 0.03
    assert np.mean(foreign < OUT_OF_DOMAIN_BELOW) == 1.0
    # Off the training cloud's plane (same mean, new direction) is out too: the residual term sees it.
    off_plane = _cloud(50, seed=3) + 4.0 * np.random.default_rng(4).standard_normal((50, 24)).astype(np.float32)
    assert np.mean(stats.scores(off_plane) < OUT_OF_DOMAIN_BELOW) > 0.9


def test_threshold_is_the_quantile_of_out_of_fold_distances_not_of_the_fit_itself() -> None:
    x = _cloud(300, d=64)
    stats = fit_domain(x, quantile=0.95, seed=0)
    oof = out_of_fold_distances(x, seed=0)
    assert stats.threshold == pytest.approx(float(np.quantile(oof, 0.95)))
    # Scored by the fit that saw them, training images look closer than new ones: a threshold
    # from those would flag more held-out in-domain images.
    assert np.quantile(stats.distances(x), 0.95) < stats.threshold


def test_score_is_one_half_at_the_threshold_and_falls_beyond() -> None:
    assert in_domain_score(np.array([0.0]), 2.0)[0] == 1.0
    assert in_domain_score(np.array([2.0]), 2.0)[0] == pytest.approx(OUT_OF_DOMAIN_BELOW)
    assert in_domain_score(np.array([20.0]), 2.0)[0] < 0.001
    assert is_out_of_domain(0.49) and not is_out_of_domain(0.5) and not is_out_of_domain(None)


def test_fit_refuses_too_few_images_and_bad_values() -> None:
    with pytest.raises(DomainError, match="at least"):
        fit_domain(_cloud(5))
    bad = _cloud(50)
    bad[3, 2] = np.nan
    with pytest.raises(DomainError, match="NaN"):
        fit_domain(bad)
    with pytest.raises(DomainError, match="quantile"):
        fit_domain(_cloud(50), quantile=1.0)
    stats = fit_domain(_cloud(50))
    with pytest.raises(DomainError, match="shape"):
        stats.distances(np.zeros((3, 7)))


def test_save_and_load_round_trip_is_small(tmp_path) -> None:
    stats = fit_domain(_cloud(200, d=256), embedding="test: pooled")
    save_domain(tmp_path, stats, {"source": "cloud"})
    assert has_domain(tmp_path)
    assert (tmp_path / DOMAIN_WEIGHTS).stat().st_size < 200_000
    back = load_domain(tmp_path)
    assert back is not None
    x = _cloud(20, d=256, seed=5)
    np.testing.assert_allclose(back.scores(x), stats.scores(x), rtol=1e-6)
    assert back.embedding == "test: pooled" and back.images == 200
    assert load_domain(tmp_path / "nothing") is None


def _saved(tmp_path):
    save_domain(tmp_path, fit_domain(_cloud(60)))
    return tmp_path


def test_hostile_json_sizes_are_refused_before_reading_arrays(tmp_path) -> None:
    d = _saved(tmp_path)
    meta = json.loads((d / DOMAIN_JSON).read_text())
    meta["dim"] = 10**9
    (d / DOMAIN_JSON).write_text(json.dumps(meta))
    with pytest.raises(DomainError, match="dim"):
        load_domain(d)
    meta["dim"], meta["threshold"] = 24, float("nan")
    (d / DOMAIN_JSON).write_text(json.dumps(meta))  # json writes NaN
    with pytest.raises(DomainError, match="threshold"):
        load_domain(d)
    (d / DOMAIN_JSON).write_text(" " * (2 << 20))  # larger than any model JSON may be
    with pytest.raises(DomainError, match="bytes"):
        load_domain(d)


def test_hostile_safetensors_header_is_refused(tmp_path) -> None:
    d = _saved(tmp_path)
    # A header claiming a huge tensor backed by a few bytes.
    header = json.dumps({"mean": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 16]}}).encode()
    (d / DOMAIN_WEIGHTS).write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(DomainError, match="damaged|claims"):
        load_domain(d)
    # Tensors of the wrong shape for the JSON's sizes.
    other = tmp_path / "other"
    other.mkdir()
    save_domain(other, fit_domain(_cloud(60, d=12)))
    (d / DOMAIN_WEIGHTS).write_bytes((other / DOMAIN_WEIGHTS).read_bytes())
    with pytest.raises(DomainError, match="expected float32"):
        load_domain(d)
    (d / DOMAIN_WEIGHTS).write_bytes(b"\x01")
    with pytest.raises(DomainError, match="unreadable"):
        load_domain(d)


def test_training_images_follow_each_trainers_layout(tmp_path) -> None:
    from inference.domain_fit import training_images

    def touch(*parts: str) -> None:
        p = tmp_path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")

    for c in ("good", "crack"):  # an image folder whose classes include "good"
        touch("cls", "train", c, f"{c}.png")
        touch("cls", "val", c, f"{c}_v.png")
    assert {p.name for p in training_images(tmp_path / "cls")} == {"good.png", "crack.png"}
    touch("mvtec", "tile", "train", "good", "a.png")
    touch("mvtec", "tile", "test", "crack", "b.png")
    assert [p.name for p in training_images(tmp_path / "mvtec")] == ["a.png"]
    touch("sirst", "images", "f1.png")
    touch("sirst", "images", "f2.png")
    (tmp_path / "sirst" / "train.txt").write_text("f1\n")
    assert [p.name for p in training_images(tmp_path / "sirst")] == ["f1.png"]
