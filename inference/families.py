"""The catalogue of model families: the one place that lists them and their per-family facts.

Why it exists: the list of families and the tables keyed by family (display names, the
architectures each may load, the trainer's presets, which module predicts and which trains, the
export format retraining writes, the headline metrics, the bundled default, half-precision
tolerance, retraining epochs) used to be copied into the CLI, the services, the registry, the
engine and the worker, and kept in step by hand. Every one of those places now reads this
catalogue, so adding a family means one ``Family`` entry here plus the family's own modules.

Plain Python only: no torch, no Qt, no SQLAlchemy, so the CLI's ``--help``, the Qt-free services
and the torch-free model-directory checks can all import it. Entry points are module paths
(``"package.module"`` or ``"package.module:attribute"``) imported lazily by whoever runs them.

The module-level views (``NAMES``, ``table(...)``) read the catalogue on every access, so a family
registered later (a test's toy family) appears everywhere that holds one of them.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload


@dataclass(frozen=True)
class Family:
    """What the rest of the station needs to know about one model family."""

    name: str
    title: str                           # shown in help texts: "the defect classifier (MemoryMamba)"
    architectures: tuple[str, ...]       # registry names a model directory of this family may hold
    predict_module: str                  # runtime prediction helper (never under inference.training)
    adapter: str                         # "module:Class" turning the helper's output into engine results
    train_cli: str                       # module with add_*_arguments / run_train / run_evaluate
    train_entry: str                     # "module:function" taking the trainer's typed options
    export_format: str                   # what retraining exports the reviewed labels as
    headline: tuple[str, ...]            # card metrics a version list compares
    default_model: str                   # bundled directory under resources/models used by default
    half_tolerance: float                # largest half-vs-full precision difference accepted
    auto_epochs: Mapping[str, int]       # retraining mode ("fine-tune", "transfer", "scratch") -> epochs
    # the trainer's presets: every architecture's, in the catalogue's order (`train anomaly --help` listed the first
    # one's alone, and tile, tile_net, tile_net_bank were missing: a session-51 audit)
    presets: tuple[str, ...] = ("test_tiny", "cpu", "paper")
    part_only: tuple[str, ...] = ()      # architectures only loadable as a part of this family's directory
    trainer_scored: str | None = None    # card metrics split already scored on the held-out labels
    fitted_only: tuple[str, ...] = ()    # architectures the retrain command fits but the trainer cannot start from
    # Architectures the retrain command refits with the active version's own settings (``train --like``)
    # instead of training the family's default anew; the second tuple: those that also learn from the
    # reviewed anomalous images with a drawn region (they go to the export's ``validation/``).
    refit_like: tuple[str, ...] = ()
    refit_with_defects: tuple[str, ...] = ()
    profile_keys: tuple[str, ...] = ()   # card keys a speed profile may set (inference.profiles)
    # The image-descriptor features (inference.image_descriptor.FEATURES names) its domain statistics
    # read; empty: all of them. The anomaly family reads only what a camera, product or sensor
    # changes, never what a defect changes (ADR 0038).
    domain_descriptor_features: tuple[str, ...] = ()
    # The parts of its domain description (inference.domain.PARTS); empty: inference.domain_fit.DEFAULT_PARTS.
    domain_parts: tuple[str, ...] = ()
    # Its retraining takes the user's capture-group rule (`retrain --groups`: the held-out cut, the cross-validation
    # and the domain description keep one session together); otherwise "auto".
    takes_groups: bool = False
    # Its backbone can be pretrained on unlabelled images (`main.py pretrain`), with this default batch; 0: it cannot.
    pretrain_batch: int = 0


_CATALOGUE: dict[str, Family] = {}


def register_family(fam: Family) -> Family:
    """Add ``fam`` (last in pre-label order); a name already taken is refused."""
    if fam.name in _CATALOGUE:
        raise ValueError(f"family {fam.name!r} is already registered")
    _CATALOGUE[fam.name] = fam
    return fam


def unregister_family(name: str) -> None:
    """Remove a family (tests undo their toy family with this)."""
    del _CATALOGUE[name]


def family(name: str) -> Family:
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; choose from {', '.join(_CATALOGUE)}") from None


def a_family(name: str) -> str:
    """"an anomaly", "a classifier": a family's name with its article, for "holds an anomaly model" (refusals read
    "a anomaly model": the model catalogue's, and the model loader's, a session-49 audit)."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def families() -> tuple[Family, ...]:
    """Every family, in pre-label order."""
    return tuple(_CATALOGUE.values())


def load_entry(path: str) -> Any:
    """Import ``"module"`` or ``"module:attribute"`` (lazily, so the catalogue stays torch-free)."""
    module, _, attr = path.partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


class _Names(Sequence[str]):
    """The family names in pre-label order, read from the catalogue at each use (a live tuple)."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return tuple(_CATALOGUE)[i]

    def __len__(self) -> int:
        return len(_CATALOGUE)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_CATALOGUE))

    def __contains__(self, name: object) -> bool:
        return name in _CATALOGUE

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, _Names)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


NAMES: Sequence[str] = _Names()


class _Table(Mapping[Any, Any]):
    """A read-only live mapping built from the catalogue by ``rows`` (key, value pairs)."""

    def __init__(self, rows: Any) -> None:
        self._rows = rows

    def _dict(self) -> dict[Any, Any]:
        return dict(self._rows())

    def __getitem__(self, key: Any) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __eq__(self, other: object) -> bool:
        return self._dict() == (dict(other) if isinstance(other, Mapping) else other)

    def __repr__(self) -> str:
        return repr(self._dict())


def table(attr: str) -> Mapping[str, Any]:
    """Family name -> ``getattr(family, attr)``, skipping families where it is None."""
    return _Table(lambda: ((f.name, getattr(f, attr)) for f in _CATALOGUE.values()
                           if getattr(f, attr) is not None))


def architecture_table(part_only: bool = False) -> Mapping[str, str]:
    """Architecture name -> its family (``part_only``: the architectures loadable only as parts)."""
    return _Table(lambda: ((a, f.name) for f in _CATALOGUE.values()
                           for a in (f.part_only if part_only else f.architectures)))


def pretrainable() -> tuple[str, ...]:
    """The families whose backbone `main.py pretrain` pretrains, in pre-label order."""
    return tuple(f.name for f in _CATALOGUE.values() if f.pretrain_batch)


def epochs_table() -> Mapping[tuple[str, str], int]:
    """(family, retraining mode) -> the usual number of epochs."""
    return _Table(lambda: (((f.name, m), n) for f in _CATALOGUE.values() for m, n in f.auto_epochs.items()))


register_family(Family(
    name="classifier",
    title="the defect classifier (MemoryMamba, or a linear layer on texture features)",
    architectures=("memory_mamba", "texture_linear"),
    predict_module="inference.classifier_predict",
    adapter="inference.engine_families:ClassifierModel",
    train_cli="inference.training.classifier_cli",
    train_entry="inference.training.classifier_train:train_classifier",
    export_format="imagefolder",
    headline=("accuracy", "f1"),
    default_model="classifier-neu-texture",  # ADR 0039: CV 0.997 vs 0.966 on the same folds
    half_tolerance=0.01,   # class probabilities, absolute
    auto_epochs={"fine-tune": 15, "transfer": 30, "scratch": 60},
    trainer_scored="val",  # the classifier's val/ is the export's held-out part
    fitted_only=("texture_linear",),  # a linear layer on texture features: no network to fine-tune
    profile_keys=("test_time_augmentation",),
    takes_groups=True,
    pretrain_batch=32,
))
register_family(Family(
    name="segmenter",
    title="the small-target segmenter (MiM-ISTD)",
    architectures=("mim_istd",),
    part_only=("target_verifier",),
    predict_module="inference.segmenter_predict",
    adapter="inference.engine_families:SegmenterModel",
    train_cli="inference.training.segmenter_cli",
    train_entry="inference.training.segmenter_train:train",
    export_format="masks",
    headline=("iou", "pd", "fa"),
    default_model="segmenter-sirst-v3",
    half_tolerance=0.001,  # fraction of mask pixels that flip
    auto_epochs={"fine-tune": 16, "scratch": 50},
    profile_keys=("ensemble", "test_time_flips", "verifier"),
    # Its 278 infrared scenes span every global statistic of the descriptor so widely that a product photograph
    # sits inside it; how the frame is arranged (a scene has a direction) keeps one out: chosen by
    # benchmarks/ood_symmetry.py on training and choosing data (benchmarks/results/ood-symmetry.md, ADR 0067).
    domain_parts=("descriptor", "descriptor_range", "symmetry"),
    takes_groups=True,
    pretrain_batch=8,
))
register_family(Family(
    name="anomaly",
    title="the anomaly detector (pattern generative + contrastive)",
    architectures=("pattern_anomaly", "pixel_gaussian", "texture_knn", "tile_defect"),
    # texture_knn adds "tile"; tile_defect its defect heads, with the learned pixel net (_net) and the texture
    # descriptors in the image head (_bank)
    presets=("test_tiny", "cpu", "paper", "tile", "test_tiny_net", "test_tiny_bank", "tile_net", "tile_net_bank"),
    predict_module="inference.anomaly_predict",
    adapter="inference.engine_families:AnomalyModel",
    train_cli="inference.training.anomaly_cli",
    train_entry="inference.training.anomaly_train:train",
    export_format="mvtec",
    headline=("image_auroc", "pixel_auroc"),
    # Licence-clean (MVTec AD, behind anomaly-bottle, is non-commercial) and closer to the
    # demo's parts than a bottle model, which calls every non-bottle image anomalous.
    default_model="anomaly-magnetic_tile",
    half_tolerance=0.01,   # anomaly map, fraction of its range
    auto_epochs={"scratch": 25},
    trainer_scored="test",  # the MVTec test split is the export's held-out part
    # No network to fine-tune: refitted from the reviewed images with the same settings, never
    # replaced by a pattern_anomaly network from scratch (on tiles 0.75 / 0.66 against 0.91 / 0.82).
    refit_like=("texture_knn", "tile_defect"),
    refit_with_defects=("tile_defect",),
    # What a camera, product or sensor changes (file size and channels, colour, the grey median),
    # never what a defect changes: chosen by benchmarks/ood_anomaly_select.py on training images
    # and synthetic changes of them (benchmarks/results/ood-4.md, ADR 0038).
    domain_descriptor_features=("log_long_side", "log_short_side", "file_channels", "colour_spread", "grey_q50"),
))
