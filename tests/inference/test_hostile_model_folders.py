"""A model folder is user data: its sizes are bounded and checked against the weights before any
tensor is allocated, when it is added, activated and loaded (issue 17: num_classes 1e9 asked for
512 GB, depths [1e7] grew for minutes, a header claimed 100000×100000 floats backed by 16 bytes)."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from app.services.model_catalog import ModelCatalog, ModelCatalogError, check_model_dir
from database.engine import open_database
from inference.checkpoints import CheckpointError, load_model
from inference.model_limits import FIELD_LIMITS, ModelLimitError, check_config_values
from inference.models import registry
from tests.tiny_models import one_thread, save_tiny_models  # noqa: F401  (one_thread: autouse)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("tiny"))


def copy_with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "config.json").read_text())
    meta["config"].update(changes)
    (dst / "config.json").write_text(json.dumps(meta))
    return dst


HUGE = [
    ("classifier", {"num_classes": 10**9}, "num_classes"),
    ("classifier", {"embed_dim": 10**9}, "embed_dim"),
    ("classifier", {"depths": [10**7]}, "depths"),
    ("classifier", {"img_size": 10**5}, "img_size"),
    ("classifier", {"ssm_expand": 1e9}, "ssm_expand"),
    ("segmenter", {"outer_dims": [4, 8, 16, 10**8]}, "outer_dims"),
    ("anomaly", {"image_size": 10**5}, "image_size"),
    ("anomaly", {"smoothing_sigma": float("inf")}, "smoothing_sigma"),
    ("classifier", {"depths": list(range(1, 40))}, "depths"),
]


@pytest.mark.parametrize("family,changes,field", HUGE, ids=[h[2] + str(i) for i, h in enumerate(HUGE)])
def test_out_of_bounds_config_is_refused_at_add_activate_and_load(tmp_path: Path, tiny, family, changes,
                                                                  field) -> None:
    d = copy_with_config(tiny[family], tmp_path / "m", **changes)
    with pytest.raises(CheckpointError, match=field):
        load_model(d, family=family)
    with pytest.raises(ModelCatalogError, match=field):
        check_model_dir(family, d)
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        version = db.model_versions.register(family, "huge", str(d))
        with pytest.raises(ModelCatalogError, match=f"cannot be made active.*{field}"):
            ModelCatalog(db).activate(version.id)
        with pytest.raises(ModelCatalogError, match=field):
            ModelCatalog(db).add_directory(family, d)
    finally:
        db.close()


@pytest.mark.parametrize("family,changes,field", [
    ("classifier", {"img_size": 4096}, "img_size = 4096 is out of bounds"),
    ("anomaly", {"image_size": 2048}, "image_size = 2048 is out of bounds"),
    ("anomaly", {"image_size": -24}, "image_size = -24 must be at least 1"),
])
def test_a_spatial_size_a_station_cannot_run_is_refused_naming_it(tmp_path: Path, tiny, family, changes,
                                                                  field) -> None:
    """Found by a session-51 audit: img_size 4096 was within the limits, and a copy of classifier-neu with it
    allocated 2 GiB for one 40 x 40 image (a worker without a cap was killed for memory); a negative anomaly
    image_size was refused as "score_margin must be in [0, image_size/2), got 0", naming the wrong field. Spatial
    sizes are at most 1024 pixels and at least 1, refused naming the field; every bundled model stays within."""
    test_out_of_bounds_config_is_refused_at_add_activate_and_load(tmp_path, tiny, family, changes, field)
    from inference.bundled import bundled_models
    configs = [c for folder in bundled_models() for c in folder.rglob("config.json")]
    assert configs
    for config in configs:
        check_config_values(json.loads(config.read_text())["config"], str(config))


def test_in_bounds_config_that_disagrees_with_its_weights_is_refused_before_building(tmp_path: Path, tiny,
                                                                                      monkeypatch) -> None:
    """Big but allowed sizes: the meta-device build names the mismatch; nothing real is built."""
    d = copy_with_config(tiny["classifier"], tmp_path / "m", embed_dim=4096, depths=[8, 8], head_hidden=8192)
    built = []
    real_build = registry.build

    def spy(name, config=None):
        model = real_build(name, config)
        built.append({p.device.type for p in model.parameters()})
        return model

    monkeypatch.setattr(registry, "build", spy)
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_model(d, family="classifier")
    assert built == [{"meta"}]


def lying_header(path: Path, shape: list[int], backed: int = 16) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, backed]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * backed)


def test_a_header_claiming_a_huge_tensor_backed_by_16_bytes_is_refused(tmp_path: Path, tiny) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny["classifier"], d)
    lying_header(d / "model.safetensors", [100000, 100000])
    with pytest.raises(ModelCatalogError, match=r"claims shape \(100000, 100000\)"):
        check_model_dir("classifier", d)
    with pytest.raises(CheckpointError, match=r"claims shape \(100000, 100000\)"):
        load_model(d, family="classifier")


def test_a_header_of_millions_of_tensors_is_refused_before_it_is_parsed(tmp_path: Path, tiny) -> None:
    """A session-47 audit: a 100 MB header of 1.75 million empty tensors took 1.7 GB and 35 s to check at Add."""
    d = tmp_path / "m"
    shutil.copytree(tiny["classifier"], d)
    header = b"{" + b" " * (9 << 20) + b"}"
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ModelCatalogError, match="more tensors than any model"):
        check_model_dir("classifier", d)


@pytest.mark.parametrize("text", ['{"format": "x", "model": "memory_mamba"}', '{"format": true, "model": "pixel_gaussian"}'])
def test_a_malformed_format_is_a_clear_error(tmp_path: Path, tiny, text: str) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny["anomaly"], d)
    (d / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="'format' must be a whole number"):
        load_model(d)


def test_a_config_the_constructor_cannot_take_is_a_clear_error(tmp_path: Path, tiny) -> None:
    d = copy_with_config(tiny["anomaly"], tmp_path / "m", heads=0)
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(d, family="anomaly")


def test_an_oversized_config_file_is_not_read_whole(tmp_path: Path, tiny) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny["anomaly"], d)
    (d / "config.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(CheckpointError, match="at most"):
        load_model(d)
    with pytest.raises(ModelCatalogError, match="larger than any model file"):
        check_model_dir("anomaly", d)


def test_every_preset_is_within_bounds() -> None:
    """The limits may never refuse a model the station itself builds."""
    import dataclasses
    import sys

    for spec in registry.available():
        for preset in getattr(sys.modules[spec.model_cls.__module__], "PRESETS", {}).values():
            check_config_values(dataclasses.asdict(preset))
        check_config_values(dataclasses.asdict(spec.config_cls()))
    assert all(v > 0 for v in FIELD_LIMITS.values())
    with pytest.raises(ModelLimitError):
        check_config_values({"nested": [[1, 2]]})


@pytest.mark.parametrize("family,changes,field", [
    ("anomaly", {"smoothing_sigma": [1, 2]}, "smoothing_sigma must be a number"),
    ("classifier", {"embed_dim": "96"}, "embed_dim must be a whole number"),
    ("classifier", {"depths": 2}, "depths must be a list of numbers"),
    ("segmenter", {"d_state": 4.5}, "d_state must be a whole number"),
    ("anomaly", {"smoothing_sigma": None}, "smoothing_sigma must be a number, not 'None'"),
])
def test_a_value_of_the_wrong_kind_is_named_in_one_line(tmp_path: Path, tiny, family, changes, field) -> None:
    """Found by benchmarks/fuzz_model_folders.py: a list where a number belongs reached torch and
    came back as a 700-character, multi-line signature dump."""
    d = copy_with_config(tiny[family], tmp_path / "m", **changes)
    with pytest.raises(CheckpointError, match=field) as exc:
        load_model(d, family=family)
    assert "\n" not in str(exc.value)


def test_a_long_shape_mismatch_is_summarised() -> None:
    """Found by benchmarks/fuzz_model_folders.py: eight long entries made 900-character messages."""
    from inference.model_limits import TensorEntry, shape_mismatches

    expected = {f"block{i}.weight": (64, 64) for i in range(10)}
    header = {k: TensorEntry("F32", (16, 16), 1024) for k in expected}
    [line] = shape_mismatches(expected, header)
    assert line.startswith("wrong shapes: block0.weight (16, 16) (model expects (64, 64)); ")
    assert line.endswith(" and 7 more") and len(line) < 300


def test_a_folder_the_worker_could_never_run_is_refused_when_it_is_added(tmp_path: Path, tiny) -> None:
    """Found by a session-44 probe: a classifier whose num_classes (9999) disagreed with its 2-class weights, and one
    whose ``format`` was ``true``, passed Add and Make active ("Make active to pre-label with it"); the user learnt it
    only when every pre-label job failed. Each is refused at Add now, saying why."""
    wrong = copy_with_config(tiny["classifier"], tmp_path / "wrong", num_classes=9999)
    with pytest.raises(ModelCatalogError, match="does not match its config"):
        check_model_dir("classifier", wrong)
    flag = shutil.copytree(tiny["classifier"], tmp_path / "flag")
    meta = json.loads((flag / "config.json").read_text())
    (flag / "config.json").write_text(json.dumps({**meta, "format": True}))
    with pytest.raises(ModelCatalogError, match="'format' must be a whole number, not 'True'"):
        check_model_dir("classifier", flag)


def test_weights_stored_as_integers_and_a_weights_pipe_are_refused_when_loaded(tmp_path: Path, tiny) -> None:
    """Found by a session-44 probe: real-number tensors relabelled I32 in the header loaded without a word and every
    image then failed "selective_scan: non-finite output", blamed on the image; a weights file replaced by a named
    pipe hung the worker for good (its heartbeat kept the job's claim fresh)."""
    import os
    d = shutil.copytree(tiny["classifier"], tmp_path / "ints")
    raw = (d / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = raw[8:8 + n].replace(b'"F32"', b'"I32"')
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + n:])
    with pytest.raises(CheckpointError, match="integer values where the model holds real numbers"):
        load_model(d, family="classifier")
    piped = shutil.copytree(tiny["classifier"], tmp_path / "pipe")
    (piped / "model.safetensors").unlink()
    os.mkfifo(piped / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(piped, family="classifier")


@pytest.mark.parametrize("classes,why", [
    (["free", "crack", "scratch"], "names 3 classes for a model of 2 outputs"),
    (["crack", "Crack"], "names the class 'Crack' twice"),
    (["free", 7], "must be a list of names"),
])
def test_class_names_that_do_not_fit_the_model_are_refused_at_add(tmp_path: Path, tiny, classes, why) -> None:
    """Found by a session-44 probe: three names on a two-output classifier offered three buttons while its answers were
    stored as class_0 / class_1; ["crack", "crack"] stored scores contradicting the stored confidence."""
    d = shutil.copytree(tiny["classifier"], tmp_path / "m")
    card = json.loads((d / "card.json").read_text())
    (d / "card.json").write_text(json.dumps({**card, "classes": classes}))
    with pytest.raises(ModelCatalogError, match=why):
        check_model_dir("classifier", d)


def test_a_card_value_the_models_code_cannot_take_is_one_refusal_naming_the_folder(tmp_path: Path, tiny) -> None:
    """The review of session 47: Add now loads the folder, and a segmenter card's threshold "abc" let a ValueError
    escape (a traceback from `models promote`, a line naming no file in the dialog)."""
    d = shutil.copytree(tiny["segmenter"], tmp_path / "seg")
    card = json.loads((d / "card.json").read_text())
    (d / "card.json").write_text(json.dumps({**card, "threshold": "abc"}))
    with pytest.raises(ModelCatalogError, match=f"{d}: cannot be loaded"):
        check_model_dir("segmenter", d)
