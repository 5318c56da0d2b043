"""Adding a family touches the catalogue and the family's own modules only.

A toy family is registered in ``inference.families`` (and removed afterwards); the CLI, the
routing rules, the model catalogue's directory check, the retraining tables and the engine's
dispatch all see it without any other edit. This module doubles as the toy family's own
modules: its train/evaluate CLI and its engine adapter.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import torch

from app import cli
from app.services import model_catalog, retraining
from app.services.routing import FAMILY_ORDER, Routing, RoutingError, RoutingRule
from inference import families
from inference.checkpoints import LoadedModel
from inference.engine_families import FamilyModel, family_model
from tests.services.model_fixtures import make_model_dir

TOY = families.Family(
    name="toy",
    title="a toy family for the catalogue test",
    architectures=("toy_net",),
    predict_module=__name__,
    adapter=f"{__name__}:ToyModel",
    train_cli=__name__,
    train_entry=f"{__name__}:run_train",
    export_format="imagefolder",
    headline=("accuracy",),
    default_model="toy-default",
    half_tolerance=0.5,
    auto_epochs={"scratch": 3},
)


# --- the toy family's own modules ---------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--toy-option")


def run_train(args: argparse.Namespace) -> int:
    return 0


add_evaluate_arguments = add_train_arguments
run_evaluate = run_train


class ToyModel(FamilyModel):
    family = "toy"


@dataclasses.dataclass
class ToyConfig:
    width: int = 3


class ToyNet(torch.nn.Module):
    """The toy family's architecture: what a model folder of it holds is checked against its shapes."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(config.width, 2)


# --- the test -----------------------------------------------------------------------------------
@pytest.fixture
def toy_family():
    from inference.models import registry
    families.register_family(TOY)
    registry.register("toy_net", "toy", ToyConfig)(ToyNet)
    try:
        yield TOY
    finally:
        registry._REGISTRY.pop("toy_net", None)
        families.unregister_family("toy")


def test_builtin_families_in_prelabel_order():
    assert tuple(families.NAMES) == ("classifier", "segmenter", "anomaly")
    assert "toy" not in FAMILY_ORDER


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        families.register_family(families.family("classifier"))


@pytest.mark.usefixtures("toy_family")
def test_cli_offers_the_toy_family():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "toy", "--toy-option", "x"])
    assert args.family == "toy" and args.toy_option == "x" and args.func.__wrapped__ is run_train  # + domain fit
    assert parser.parse_args(["retrain", "toy"]).family == "toy"
    assert parser.parse_args(["prelabel", "somewhere"]).families.split(",")[-1] == "toy"


@pytest.mark.usefixtures("toy_family")
def test_routing_accepts_and_orders_the_toy_family():
    assert RoutingRule("*.png", ("toy", "classifier")).families == ("classifier", "toy")
    assert Routing([]).families_for("a.png")[-1] == "toy"
    with pytest.raises(RoutingError, match="unknown family 'nope'"):
        RoutingRule("*", ("nope",))


def test_routing_refuses_the_toy_family_once_removed():
    with pytest.raises(RoutingError, match="unknown family 'toy'"):
        RoutingRule("*", ("toy",))


@pytest.mark.usefixtures("toy_family")
def test_model_catalogue_checks_toy_architecture(tmp_path: Path):
    card = model_catalog.check_model_dir("toy", make_model_dir(tmp_path / "toy", "toy", "toy_net"))
    assert card["family"] == "toy"
    with pytest.raises(model_catalog.ModelCatalogError, match="holds a toy model"):
        model_catalog.check_model_dir("classifier", tmp_path / "toy")


@pytest.mark.usefixtures("toy_family")
def test_retraining_tables_read_the_catalogue():
    assert retraining.FAMILY_FORMAT["toy"] == "imagefolder"
    assert retraining.AUTO_EPOCHS[("toy", "scratch")] == 3
    assert retraining.HEADLINE["toy"] == ("accuracy",)


@pytest.mark.usefixtures("toy_family")
def test_engine_dispatches_to_the_toy_adapter():
    import torch

    loaded = LoadedModel(torch.nn.Linear(1, 1), "toy_net", "toy", config=None)
    model = family_model(loaded)
    assert type(model) is ToyModel and model.loaded is loaded


def test_the_anomaly_trainers_help_lists_every_architectures_presets(capsys) -> None:
    """A session-51 audit: `train anomaly --help` listed --preset as "test_tiny, cpu, paper" (pattern_anomaly's),
    though texture_knn's tile and tile_defect's tile, tile_net and tile_net_bank are taken too."""
    with pytest.raises(SystemExit):
        cli.main(["train", "anomaly", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "test_tiny, cpu, paper, tile, test_tiny_net, test_tiny_bank, tile_net, tile_net_bank (default: depends on " \
           "--arch: cpu; tile_net_bank for tile_defect)" in text


def _anomaly_config(*argv: str) -> object:
    """``train anomaly`` parsed by the station's parser, and the config its trainer would build (nothing trained)."""
    from inference.training import anomaly_cli

    args = cli.build_parser().parse_args(["train", "anomaly", "--data", "d", "--out", "o", *argv])
    return anomaly_cli._build_config(args)


@pytest.mark.parametrize("arch", families.family("anomaly").architectures)
def test_train_anomaly_without_a_preset_takes_the_architectures_own(arch: str, capsys) -> None:
    """A session-52 audit: `train anomaly --arch tile_defect` without --preset was refused as "unknown preset 'cpu'
    for tile_defect; known: …", the --preset default being the other architectures' "cpu". Each architecture builds
    its own DEFAULT_PRESET, one of its PRESETS, and the help names it."""
    from inference.models import registry

    module = __import__(registry.spec(arch).model_cls.__module__, fromlist=["PRESETS"])
    assert module.DEFAULT_PRESET in module.PRESETS
    assert _anomaly_config("--arch", arch) == module.PRESETS[module.DEFAULT_PRESET]
    with pytest.raises(SystemExit):
        cli.main(["train", "anomaly", "--help"])
    said = " ".join(capsys.readouterr().out.split()).split("(default: depends on --arch: ")[1].split(")")[0]
    assert (f"{module.DEFAULT_PRESET} for {arch}" in said if module.DEFAULT_PRESET != "cpu"
            else said.startswith("cpu;") and arch not in said)


def test_train_anomaly_refuses_a_preset_its_architecture_lacks() -> None:
    """The architecture's own default (a session-52 audit) leaves a preset given for another one refused, with the
    names it has."""
    with pytest.raises(ValueError, match="unknown preset 'cpu' for tile_defect; known: test_tiny, .*tile_net_bank"):
        _anomaly_config("--arch", "tile_defect", "--preset", "cpu")


@pytest.mark.parametrize("fam", families.families(), ids=lambda f: f.name)
def test_catalogue_matches_the_family_modules(fam: families.Family):
    """The catalogue's facts agree with the code they name: registered architectures, their
    presets, and importable predict, adapter, train CLI and train entry points."""
    from inference.models import registry

    for arch in fam.architectures + fam.part_only:
        assert registry.spec(arch).family == fam.name
    presets: dict[str, None] = {}   # every architecture's, in order (the anomaly help listed the first one's)
    for arch in fam.architectures:
        module = __import__(registry.spec(arch).model_cls.__module__, fromlist=["PRESETS"])
        presets.update(dict.fromkeys(getattr(module, "PRESETS", {})))
    assert fam.presets == tuple(presets)
    assert issubclass(families.load_entry(fam.adapter), FamilyModel)
    assert callable(families.load_entry(fam.train_entry))
    families.load_entry(fam.predict_module)
    assert hasattr(families.load_entry(fam.train_cli), "run_train")
    assert not fam.predict_module.startswith("inference.training")


def test_registry_refuses_an_architecture_the_catalogue_does_not_list():
    from torch import nn

    from inference.models import registry

    with pytest.raises(ValueError, match="not listed as a classifier architecture"):
        registry.register("unlisted_net", "classifier", object)(nn.Module)
    with pytest.raises(ValueError, match="unknown family 'toy'"):
        registry.register("toy_net", "toy", object)(nn.Module)
    assert "unlisted_net" not in {s.name for s in registry.available()}


def test_pretraining_and_capture_groups_read_the_catalogue():
    """Which families pretrain (and their batch) and which take `retrain --groups` were tuples in the commands
    and the trainer (a session-47 audit); a family registered with them is offered without another edit."""
    assert families.pretrainable() == ("classifier", "segmenter")
    assert [f.name for f in families.families() if f.takes_groups] == ["classifier", "segmenter"]
    families.register_family(dataclasses.replace(TOY, pretrain_batch=4, takes_groups=True))
    try:
        args = cli.build_parser().parse_args(["pretrain", "--folder", "x", "--family", "toy"])
        assert args.family == "toy" and families.family("toy").pretrain_batch == 4
    finally:
        families.unregister_family("toy")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["pretrain", "--folder", "x", "--family", "anomaly"])
