"""Per-family descriptor features of domain statistics (ADR 0038): an anomaly model's domain
leaves out what a defect changes and keeps what a camera, product or sensor changes."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inference.domain import (
    DOMAIN_JSON,
    OUT_OF_DOMAIN_BELOW,
    DomainError,
    fit_domain,
    load_domain,
    save_domain,
)
from inference.domain_fit import DEFAULT_PARTS, family_descriptor_features, family_parts
from inference.families import families, family
from inference.image_descriptor import DESCRIPTOR_DIM, DESCRIPTOR_VERSION, FEATURES, describe_images

ANOMALY = family_descriptor_features("anomaly")


def _good(seed: int, level: float | None = None, h: int = 160, w: int = 160) -> np.ndarray:
    """A good part: one texture kind, brightness varying a little from part to part (``level``:
    its offset, else drawn within +-0.04)."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.5) * 0.5
    offset = rng.uniform(-0.04, 0.04) if level is None else level
    return np.clip(0.5 + offset + 0.1 * tex * 5, 0, 1).astype(np.float32)


def _dark_blob(x: np.ndarray) -> np.ndarray:
    """A large dark blob: a disc of radius 15 % of the short side (7 % of the area) at near black."""
    h, w = x.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (int(w * 0.55), int(h * 0.45)), int(0.15 * min(h, w)), 1, -1)
    out = x.copy()
    out[mask.astype(bool)] = 0.02
    return out


def _fit(names: tuple[str, ...]):  # type: ignore[no-untyped-def]
    train = describe_images([_good(i) for i in range(80)])
    return fit_domain({"descriptor": train}, parts=DEFAULT_PARTS, descriptor=DESCRIPTOR_VERSION,
                      descriptor_features=names)


def _out(stats, images: list[np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return stats.scores({"descriptor": describe_images(images)}) < OUT_OF_DOMAIN_BELOW


def test_the_anomaly_domain_keeps_a_large_local_defect_in_and_a_camera_change_out() -> None:
    stats = _fit(ANOMALY)
    # Held-out parts of brightness inside the training parts' (not at its very edge, where half a
    # unit of the grey median decides).
    probes = [_good(1000 + i, level) for i, level in enumerate(np.linspace(-0.025, 0.025, 10))]
    assert not _out(stats, probes).any()                       # good held-out parts
    assert not _out(stats, [_dark_blob(p) for p in probes]).any()  # a large dark blob: still in domain
    assert _out(stats, [p[:128, :128] for p in probes]).all()     # another size
    assert _out(stats, [np.repeat(p[:, :, None], 3, axis=2) for p in probes]).all()  # colour file, grey trained
    assert _out(stats, [p * 0.5 for p in probes]).all()         # global gain (half exposure)
    # The whole descriptor (every family before ADR 0038, classifier and segmenter still) calls the
    # blob foreign: what the anomaly family's features leave out is what moved it.
    assert _out(_fit(()), [_dark_blob(p) for p in probes]).all()


def test_only_the_segmenter_family_reads_the_frames_symmetry_and_fit_follows_the_family() -> None:
    """ADR 0067: the segmenter's parts add the symmetry; every other family keeps ADR 0028's parts."""
    from inference.domain import PARTS

    assert family_parts("segmenter") == ("descriptor", "descriptor_range", "symmetry")
    assert family_parts("no-such-family") == DEFAULT_PARTS
    for fam in families():
        assert set(family_parts(fam.name)) <= set(PARTS), fam.name
        if fam.name != "segmenter":
            assert family_parts(fam.name) == DEFAULT_PARTS, fam.name


def test_only_the_anomaly_family_narrows_its_description() -> None:
    assert family_descriptor_features("classifier") == () and family_descriptor_features("segmenter") == ()
    assert family_descriptor_features("no-such-family") == ()
    assert ANOMALY and set(ANOMALY) <= set(FEATURES)
    for fam in families():
        assert set(fam.domain_descriptor_features) <= set(FEATURES), fam.name
    # Acquisition-level only: nothing a local defect changes (detail, block contrast, grey tails).
    assert not [n for n in family("anomaly").domain_descriptor_features
                if n.startswith(("log_grad", "log_lap", "log_block", "clipped", "grey_q01", "grey_q05",
                                 "grey_q95", "grey_q99"))]


def test_all_features_fit_exactly_as_before() -> None:
    train = describe_images([_good(i) for i in range(40)])
    before = fit_domain({"descriptor": train}, parts=DEFAULT_PARTS)
    every = fit_domain({"descriptor": train}, parts=DEFAULT_PARTS, descriptor_features=FEATURES)
    assert before.descriptor_features == () and every.descriptor_features == FEATURES
    probe = describe_images([_good(99), _dark_blob(_good(98))])
    np.testing.assert_allclose(every.distances({"descriptor": probe}), before.distances({"descriptor": probe}))


def test_named_features_round_trip_and_older_files_read_all(tmp_path) -> None:
    stats = _fit(ANOMALY)
    save_domain(tmp_path, stats)
    meta = json.loads((tmp_path / DOMAIN_JSON).read_text())
    assert meta["descriptor_features"] == list(ANOMALY)
    back = load_domain(tmp_path, DESCRIPTOR_VERSION)
    assert back is not None and back.descriptor_features == ANOMALY
    x = describe_images([_good(5), _dark_blob(_good(6))])
    np.testing.assert_allclose(back.scores({"descriptor": x}), stats.scores({"descriptor": x}), rtol=1e-6)
    # A file of before ADR 0038 names no features: it reads all of them.
    old = tmp_path / "old"
    old.mkdir()
    save_domain(old, _fit(()))
    assert "descriptor_features" not in json.loads((old / DOMAIN_JSON).read_text())
    loaded = load_domain(old, DESCRIPTOR_VERSION)
    assert loaded is not None and loaded.descriptor_features == ()
    assert loaded.parts["descriptor_range"].dim == DESCRIPTOR_DIM


def test_damaged_feature_names_are_refused(tmp_path) -> None:
    save_domain(tmp_path, _fit(ANOMALY))
    meta = json.loads((tmp_path / DOMAIN_JSON).read_text())
    for bad in (["no_such_feature"] * len(ANOMALY), list(ANOMALY[:-1]), "log_long_side", [list(ANOMALY)]):
        (tmp_path / DOMAIN_JSON).write_text(json.dumps({**meta, "descriptor_features": bad}))
        with pytest.raises(DomainError):
            load_domain(tmp_path, DESCRIPTOR_VERSION)
    with pytest.raises(DomainError, match="descriptor features"):
        fit_domain({"descriptor": describe_images([_good(i) for i in range(20)])}, descriptor_features=("nope",))


@pytest.mark.parametrize("name", ["classifier-neu", "segmenter-sirst", "segmenter-sirst-v2", "segmenter-sirst-v3",
                                  "classifier-magnetic_tile",
                                  "anomaly-magnetic_tile", "anomaly-bottle"])
def test_bundled_models_read_their_familys_features(name: str) -> None:
    from pathlib import Path

    from inference.checkpoints import read_json

    d = Path(__file__).resolve().parents[2] / "resources" / "models" / name
    if not (d / DOMAIN_JSON).is_file():
        pytest.skip(f"{name} is not bundled in this checkout")
    stats = load_domain(d, DESCRIPTOR_VERSION)
    assert stats is not None
    wanted = family_descriptor_features(str(read_json(d / "config.json")["family"]))
    assert stats.descriptor_features == wanted  # classifier and segmenter: () = all 31, as before
    assert stats.parts["descriptor_range"].dim == (len(wanted) or DESCRIPTOR_DIM)
    family = str(read_json(d / "config.json")["family"])
    assert tuple(stats.parts) == family_parts(family)  # the segmenter's also reads the symmetry (ADR 0067)


def test_a_description_with_the_symmetry_part_round_trips_and_a_damaged_one_is_refused(tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    from inference.domain import DOMAIN_WEIGHTS, fit_domain, load_domain, save_domain
    from inference.image_descriptor import symmetry_images

    images = [_good(i) for i in range(40)]
    feats = {"descriptor": describe_images(images), "symmetry": symmetry_images(images)}
    stats = fit_domain(feats, parts=family_parts("segmenter"), descriptor=DESCRIPTOR_VERSION)
    save_domain(tmp_path, stats)
    loaded = load_domain(tmp_path, DESCRIPTOR_VERSION)
    assert loaded is not None and tuple(loaded.parts) == family_parts("segmenter")
    assert loaded.features == ("descriptor", "symmetry")
    assert np.allclose(loaded.scores(feats), stats.scores(feats), atol=1e-5)
    turned = [np.rot90(im).copy() for im in images[:5]]   # the same texture turned: symmetry alike, in domain
    assert (loaded.scores({"descriptor": describe_images(turned), "symmetry": symmetry_images(turned)}) >= 0.5).all()
    with pytest.raises(DomainError, match="features missing for: symmetry"):
        loaded.scores({"descriptor": feats["descriptor"]})
    # A file whose symmetry part claims five numbers (arrays and JSON agreeing) is refused before use.
    arrays = load_file(str(tmp_path / DOMAIN_WEIGHTS))
    k = arrays["symmetry.components"].shape[0]
    arrays.update({"symmetry.mean": np.zeros(5, np.float32), "symmetry.components": np.zeros((k, 5), np.float32)})
    save_file(arrays, str(tmp_path / DOMAIN_WEIGHTS))
    meta = json.loads((tmp_path / DOMAIN_JSON).read_text())
    meta["parts"]["symmetry"]["dim"] = 5
    (tmp_path / DOMAIN_JSON).write_text(json.dumps(meta))
    with pytest.raises(DomainError, match="not the 4 of the symmetry"):
        load_domain(tmp_path, DESCRIPTOR_VERSION)
