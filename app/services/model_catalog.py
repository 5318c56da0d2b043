"""The model versions of a station, as Project ▸ Models… shows and changes them.

Qt-free and torch-free: a model directory handed in by an inspector is checked by reading its
JSON files and the safetensors header only (never unpickled, never loaded), so a broken or
foreign directory is refused with the reason before any worker tries to run it. Activating a
version is what makes the next pre-label job use it (``prelabel.resolve_models``).
"""
from __future__ import annotations

import functools
import getpass
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from app.services.counting_versions import after_activation
from app.services.json_files import JsonFileError, read_json_object
from app.services.model_files import ModelFilesError, bundled_copy, local_model_dir
from app.services.prelabel import FAMILIES, PrelabelError, bundled_version, refresh_bundled, version_for_dir
from app.services.retrain_protocol import pooled_figures
from database.dto import ModelVersionInfo
from database.errors import ConflictError
from inference import families
from inference.bundled import DEFAULT_MODEL, bundled_models
from inference.domain import DOMAIN_JSON, DomainError, load_domain
from inference.domain_notes import domain_summary
from inference.model_limits import (
    MAX_JSON_BYTES,
    PRETRAINED_KIND,
    ModelLimitError,
    check_config_values,
    read_safetensors_header,
)

if TYPE_CHECKING:
    from database.engine import Database

log = logging.getLogger(__name__)

# The architecture named in config.json's "model" -> its family, from the torch-free family
# catalogue (a test keeps it equal to inference.models.registry's registrations).
ARCHITECTURES = families.architecture_table()
PART_ONLY = families.architecture_table(part_only=True)  # only loadable as a part of another model directory
FORMAT_VERSION = 1                             # inference.checkpoints.FORMAT_VERSION
# card metrics shown in the table: key -> short label
HEADLINES = (("accuracy", "acc"), ("iou", "IoU"), ("pd", "Pd"), ("fa", "Fa"),
             ("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))
SPLITS = ("test", "held_out", "val", "validation")   # the first with figures is shown
# A card's figure for images of a kind its training never saw (a new scene, a new physical tile), from
# group-aware cross-validation (docs/protocol.md): shown first, since it, not the split the model was
# scored on, says what the next folder will see (issue 19). {"label": "new scenes", "iou": ..., ...}
EXPECTED = "expected_on_new_data"


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the version made active, or the routing rules that now name it."""

    row: "ModelRow"
    replaced: str | None          # the version it took over from
    patterns: tuple[str, ...]     # the rules that now name it (empty: it was made the active version)
    remarked: int = 0             # answers re-marked as the ones that count
    activated: bool = False       # with ``patterns``: made the active version too (its champion was both)

    @property
    def text(self) -> str:
        if not self.patterns:
            return f"{self.row.name} is now the active {self.row.family} model: the next pre-label run uses it."
        also = (f", and it is the active {self.row.family} model for the images no rule gives another version"
                if self.activated else "")
        return (f"{self.row.name} now answers for {', '.join(self.patterns)} in place of {self.replaced}{also} (the "
                f"routing rules name it; an 'only new' pre-label run gives those images its answers; Project ▸ Model "
                f"routing sets it back).")


class ModelCatalogError(Exception):
    """A model version that cannot be added or activated, with the reason in one sentence."""


@dataclass(frozen=True)
class ModelRow:
    """One model version as the Models dialog lists it (plain data)."""

    id: int
    family: str
    name: str
    path: str
    bundled: bool
    active: bool
    created_at: datetime
    parent_name: str | None
    summary: str          # headline metrics, e.g. "val acc 0.993"; "" when the card has none
    exists: bool          # this station can load it: its folder here, this install's bundled copy, or the database's
    challenger: bool = False  # under review beside the active version (app/services/champion.py)
    named_by: tuple[str, ...] = ()  # patterns of the routing rules that run this version (ADR 0059)
    kept: bool = False    # the database keeps its files (ADR 0062): every station loads it, wherever it was made
    here: bool = True     # its registered folder is on this station's disk
    # What its out-of-domain description says it was trained on (``inference.domain_notes.domain_summary``); ""
    # when it has none or its folder is not on this station
    domain: str = ""

    @property
    def files_note(self) -> str:
        """Where this station's copy of the files comes from when not from the registered folder here: "" (the
        folder, or this install's bundled copy), "the database's copy", or "missing" (ADR 0062)."""
        if self.here or (self.bundled and self.exists):
            return ""
        return "the database's copy" if self.kept else "" if self.exists else "missing"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _headline(block: Mapping[str, Any]) -> str:
    parts = []
    for key, label in HEADLINES:
        v = _number(block.get(key))
        if v is not None:
            parts.append(f"{label} {v:.1f}" if abs(v) >= 10 else f"{label} {v:.3f}")
    return " · ".join(parts)


COUNT_KEYS = ("count", "images", "n_images")  # how a card's metrics block says how many images it scored


def _scored_on(block: Mapping[str, Any]) -> str:
    """" (12 images)" when the block says how many images its figures come from: "acc 1.000" on the
    dozen reviewed images a retraining held out reads differently from the same figure on a test split."""
    for key in COUNT_KEYS:
        n = block.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return f" ({n} image{'s' if n != 1 else ''})"
    return ""


def summarize_metrics(metrics: Any) -> str:
    """The headline figures of a card's ``metrics`` and how many images they come from: flat (with an
    optional ``split`` text) or under ``test`` / ``held_out`` (a retrained segmenter's) / ``val``; test
    figures win over validation ones."""
    if not isinstance(metrics, Mapping):
        return ""
    text = _headline(metrics)
    if text:
        split = metrics.get("split")
        word = split.split()[0] if isinstance(split, str) and split.strip() else ""
        return (f"{word} {text}" if word in SPLITS else text) + _scored_on(metrics)
    for split in SPLITS:
        block = metrics.get(split)
        if isinstance(block, Mapping) and (text := _headline(block)):
            return f"{split.replace('_', '-')} {text}{_scored_on(block)}"
    return ""


def expected_summary(card: Any) -> str:
    """``EXPECTED``'s headline figures with their label (e.g. "new scenes IoU 0.611 · Pd 0.894 · Fa 83.8");
    "" when the card has none."""
    block = card.get(EXPECTED) if isinstance(card, Mapping) else None
    if not isinstance(block, Mapping) or not (text := _headline(block)):
        return ""
    label = block.get("label")
    return f"{label.strip()[:40]} {text}" if isinstance(label, str) and label.strip() else text


def comparison_summary(card: Any) -> str:
    """A retrained version's figures on the reviewed images its retraining held out (the comparison with the
    version it started from, ``retraining.held_out_comparison``), e.g. "reviewed held-out IoU 0.906 · Pd 1.000 ·
    Fa 0.0 (3 images)"; "" when the card has none. Seen under Xvfb: a retrained segmenter's row read "held-out
    IoU 0.980 (1 image)" — the trainer's own tenth of its training share — beside a comparison of 0.906 on the 3
    reviewed images it never trained on: two "held-out" figures of one version."""
    record = card.get("retraining") if isinstance(card, Mapping) else None
    compared = record.get("held_out_comparison") if isinstance(record, Mapping) else None
    new = compared.get("new") if isinstance(compared, Mapping) else None
    if not isinstance(new, Mapping) or not (text := _headline(new)):
        return ""
    assert isinstance(compared, Mapping)
    held = f"reviewed held-out {text}{_scored_on({'images': compared.get('held_out_images')})}"
    pooled = pooled_figures(compared)
    every = _headline(pooled["new"]) if pooled is not None else ""
    if not every:
        return held
    # ADR 0072: the classifier's check read every reviewed label; seen under Xvfb, the row gave only the held-out
    # fifth's "acc 0.389 (18 images)" beside a panel that said 0.610 on all 100, the figure that decided
    assert pooled is not None
    return f"all {pooled.get('images')} reviewed (nested CV) {every} | {held.removeprefix('reviewed ')}"


def _read_object(path: Path) -> dict[str, Any]:
    if path.is_file() and path.stat().st_size > MAX_JSON_BYTES:
        raise ModelCatalogError(f"{path} is larger than any model file the station writes ({MAX_JSON_BYTES} bytes)")
    try:
        return read_json_object(path)
    except JsonFileError as exc:
        raise ModelCatalogError(str(exc)) from None


def check_safetensors(path: Path) -> int:
    """Read a safetensors file's header without loading any tensor; returns the number of tensors.

    Every tensor's byte range must lie inside the file and hold exactly its shape × dtype bytes
    (``inference.model_limits``, the loader's own check)."""
    if not path.is_file():
        raise ModelCatalogError(f"{path.name} is {'missing' if not path.exists() else 'not a regular file'} in "
                                f"{path.parent}")
    try:
        return len(read_safetensors_header(path))
    except ModelLimitError as exc:
        raise ModelCatalogError(str(exc)) from None
    except OSError as exc:
        raise ModelCatalogError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _check_one(directory: Path, family: str, as_part: bool) -> Any:
    """config.json + model.safetensors of one directory; returns the architecture's config (checked against the
    weights)."""
    config = _read_object(directory / "config.json")
    arch = config.get("model")
    if not isinstance(arch, str):
        raise ModelCatalogError(f"{directory / 'config.json'} names no model architecture ('model')")
    fmt = config.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool):  # "1" read "written by a newer version" (a session-47 audit)
        raise ModelCatalogError(f"{directory / 'config.json'}: 'format' must be a whole number, not {str(fmt)[:40]!r}")
    if fmt > FORMAT_VERSION:
        raise ModelCatalogError(f"{directory} was written by a newer version of the station (format {fmt!r})")
    if arch in PART_ONLY and not as_part:
        raise ModelCatalogError(f"{directory} holds a {arch}, which is part of a {PART_ONLY[arch]} model "
                                "directory, not a model of its own")
    found = ARCHITECTURES.get(arch) or PART_ONLY.get(arch)
    if found is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelCatalogError(f"{directory} holds an unknown model architecture {arch!r} (known: {known})")
    if found != family:
        raise ModelCatalogError(f"{directory} holds {families.a_family(found)} model ({arch}), "
                                f"not {families.a_family(family)} model")
    if config.get("family", found) != found:  # it read "holds a classifier model (texture_linear), not a classifier"
        raise ModelCatalogError(f"{directory / 'config.json'} says family {str(config.get('family'))[:40]!r}, but its "
                                f"architecture {arch} is {families.a_family(found)} model")
    try:
        check_config_values(config.get("config", {}), str(directory / "config.json"))
    except ModelLimitError as exc:
        raise ModelCatalogError(str(exc)) from None
    check_safetensors(directory / "model.safetensors")
    from inference.checkpoints import CheckpointError, checked_config
    try:
        return checked_config(directory, arch, config)  # the weights' shapes, as loading checks them, without loading
    except CheckpointError as exc:
        raise ModelCatalogError(str(exc)) from None


def _check_classes(where: Path, classes: Any, outputs: int | None) -> None:
    """A card's class names (``where``: the card), one per output of the model and each once (ignoring case), at most
    ``MAX_CLASSES``: a session-44 probe's three names on a two-output model offered three buttons while its answers
    were stored as class_0 / class_1, and ["crack", "crack"] stored scores that contradict the stored confidence."""
    from app.services.project_classes import MAX_CLASSES
    if outputs is None or classes is None:
        return
    if not isinstance(classes, list) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise ModelCatalogError(f"{where}: 'classes' must be a list of names")
    if len(classes) != outputs:
        raise ModelCatalogError(f"{where} names {len(classes)} classes for a model of {outputs} outputs")
    if len(classes) > MAX_CLASSES:
        raise ModelCatalogError(f"{where} names {len(classes)} classes (at most {MAX_CLASSES})")
    seen: dict[str, str] = {}
    for c in classes:
        if c.strip().lower() in seen:
            raise ModelCatalogError(f"{where} names the class {c!r} twice (as {seen[c.strip().lower()]!r})")
        seen[c.strip().lower()] = c


def check_model_dir(family: str, path: str | Path) -> dict[str, Any]:
    """Refuse, with the reason, a directory that is not a usable ``family`` model; returns its card.

    Checks the folder, ``config.json`` and ``card.json`` as JSON objects, the architecture's family, the
    safetensors header and the card's ``parts`` (sub-directories checked the same way) before reading any tensor;
    then loads it once as the worker will (bounded by those checks), so that what the loader refuses besides shapes
    (integers stored for real numbers, non-finite values, a size the family's adapter cannot use) is refused here:
    a session-47 audit added and activated four such folders, and every later pre-label run failed.
    """
    if family not in FAMILIES:
        raise ModelCatalogError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    directory = Path(path)
    if not directory.is_dir():
        raise ModelCatalogError(f"{directory}: no such folder")
    built = _check_one(directory, family, as_part=False)
    card = _read_object(directory / "card.json")
    _check_classes(directory / "card.json", card.get("classes"), getattr(built, "num_classes", None))
    if card.get("family", family) != family:
        raise ModelCatalogError(f"{directory / 'card.json'} describes {families.a_family(str(card['family'])[:40])} model, not "
                                f"{families.a_family(family)} model")
    if card.get("kind") == PRETRAINED_KIND:
        raise ModelCatalogError(f"{directory} is a pretrained backbone (a start point for `python main.py train "
                                f"{family} --init {directory}`), not a trained model: its head was never trained")
    parts = card.get("parts") or {}
    if not isinstance(parts, dict):
        raise ModelCatalogError(f"{directory / 'card.json'}: 'parts' must map names to sub-directories")
    for part, sub in parts.items():
        sub_dir = (directory / str(sub)).resolve()
        if not isinstance(sub, str) or directory.resolve() not in sub_dir.parents:
            raise ModelCatalogError(f"{directory / 'card.json'}: part {part!r} must be a sub-directory, got {sub!r}")
        if not sub_dir.is_dir():
            raise ModelCatalogError(f"{directory}: part {part!r} is missing ({sub_dir})")
        _check_one(sub_dir, family, as_part=True)
    from inference.checkpoints import CheckpointError, load_model
    from inference.engine_families import family_model
    try:
        family_model(load_model(directory, "cpu", family))
    except CheckpointError as exc:
        raise ModelCatalogError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a value a model's code cannot take ('abc' for a threshold): one line, the folder named
        raise ModelCatalogError(f"{directory}: cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from None
    return card


def login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name: a container, a service account
        return "inspector"


def ensure_bundled(db: "Database") -> None:
    """Every bundled model has a row; a family without an active version gets its bundled default activated, as
    the next pre-label run would do (so the Models table shows what will run, and a routing proposal can name a
    bundled version no job has run yet: ADR 0066); the classes the project offers were that version's already
    (``project_classes.model_classes``), so listing changes none. A bundled model an update of the install replaced
    becomes a new version first (``refresh_bundled``)."""
    for note in refresh_bundled(db):
        log.warning("%s", note)
    for directory in bundled_models():
        try:
            family = _read_object(directory / "config.json").get("family")
            if not isinstance(family, str) or family not in FAMILIES:
                continue
            first = directory.name == DEFAULT_MODEL[family] and db.model_versions.active(family) is None
            bundled_version(db, family, directory.name, activate=first)
        except (ModelCatalogError, PrelabelError) as exc:   # a damaged bundle must not hide the rest
            log.warning("bundled model %s not listed: %s", directory, exc)


class ModelCatalog:
    """List, add and activate model versions of one database (the Models dialog's service)."""

    def __init__(self, db: "Database", author: Callable[[], str] = login_name) -> None:
        self.db = db
        self.author = author   # who activations are recorded for (the station's reviewer name)

    def _ensure_bundled(self) -> None:
        ensure_bundled(self.db)

    def rows(self, family: str | None = None) -> list[ModelRow]:
        """Every version (of ``family``), families in pre-label order, oldest first within each, with the
        routing rules that name it."""
        self._ensure_bundled()
        versions = self.db.model_versions.list()
        names = {v.id: v.name for v in versions}
        order = {f: i for i, f in enumerate(FAMILIES)}
        versions.sort(key=lambda v: (order.get(v.family, len(order)), v.created_at, v.id))
        named = self._named_by()
        kept = self.db.model_versions.kept_ids()
        return [replace(_row(v, names, v.id in kept), named_by=tuple(named.get((v.family, v.name), ())))
                for v in versions if family is None or v.family == family]

    def _named_by(self) -> dict[tuple[str, str], list[str]]:
        """(family, version name) -> the patterns of the routing rules that name it (none when the
        stored rules cannot be read: the routing dialog says why)."""
        from app.services.project_settings import readable_routing
        out: dict[tuple[str, str], list[str]] = {}
        for rule in readable_routing(self.db).rules:
            for pair in rule.versions:
                out.setdefault(pair, []).append(rule.pattern)
        return out

    def row(self, version_id: int) -> ModelRow:
        v = self.db.model_versions.get(version_id)
        if v is None:
            raise ModelCatalogError(f"model version {version_id} does not exist")
        parent = self.db.model_versions.get(v.parent_id) if v.parent_id is not None else None
        return _row(v, {parent.id: parent.name} if parent is not None else {},
                    bool(self.db.model_versions.file_list(v.id)))

    def activate(self, version_id: int, note: str | None = None) -> ModelRow:
        """Make the version its family's active one, after checking its directory is still usable;
        recorded (who, when, which version it replaced): a challenger's activation is a promotion."""
        row = self.row(version_id)
        try:
            check_model_dir(row.family, self._here(row.id))
        except ModelCatalogError as exc:
            raise ModelCatalogError(f"{row.name} cannot be made active: {exc}") from None
        if not row.active:
            try:   # the look above was before the write lock: another station may have made it active since
                done = self.db.model_versions.change_active(version_id, self.author(),
                                                            "promote" if row.challenger else "activate", note)
            except ConflictError as exc:
                raise self._meanwhile(row.family, version_id, f"{row.name} was already made active", exc) from None
            after_activation(self.db, row.family, versions=(done.version_id, done.previous_id))
        return self.row(version_id)

    def _meanwhile(self, family: str, version_id: int, done: str, exc: ConflictError) -> ModelCatalogError:
        """What a refused ``change_active`` says: where the version is the active one now, ``done`` at another
        station between this station's look and the write (a session-50 audit: two stations' Make active at once
        recorded "clf-r1 -> clf-r1" and lost the way back); otherwise the database's reason."""
        active = self.db.model_versions.active(family)
        if active is not None and active.id == version_id:
            return ModelCatalogError(f"{done} at another station meanwhile: nothing was recorded")
        return ModelCatalogError(str(exc))

    def promote(self, version_id: int, note: str | None = None) -> "Promotion":
        """Promote the version (a challenger, usually) over its champion (``champion.champion_of``): where
        routing rules name the champion for their images, those rules name this version instead (checked as the
        routing dialog's save checks them, stored with a 'route' record in ``model_activations`` and the end of
        its challenge in one transaction, then re-marked and re-flagged); otherwise it is made the family's
        active version (``activate``, recorded in ``model_activations``). ADR 0060."""
        from app.services.champion import champion_of
        from app.services.counting_versions import named_in, remark_after_change, resolve_named
        from app.services.project_settings import ROUTING, readable_routing
        from app.services.routing import Routing, RoutingError

        row = self.row(version_id)
        version = self.db.model_versions.get(version_id)
        champion = champion_of(self.db, version) if version is not None else None
        read = self.db.project_settings.all().get(ROUTING)  # the stored rules the new ones are computed from
        try:
            routing = Routing.from_dict(read) if read is not None else readable_routing(self.db)
        except RoutingError:
            routing = Routing()  # as readable_routing: rules that cannot be read name no version
        patterns = tuple(named_in(routing, row.family, champion.name)) if champion is not None else ()
        own = tuple(named_in(routing, row.family, row.name))
        if own and not row.challenger and not row.active:
            # already promoted for its rules' images (a second click, or another station first): made the active
            # version on top it would take every other image too (a session-44 probe: the steel line's classifier
            # replaced by the tile challenger for the whole project, an 'activate' recorded by nobody's choice)
            raise ModelCatalogError(f"{row.name} already answers for {', '.join(own)} (promoted meanwhile): nothing was "
                                    "changed; Make active makes it the active version for every other image too")
        # A champion both active and named by rules answers for both kinds of images: the promotion takes both.
        # It only became active, and no image ran it, where the rules covered every image (a session-43 probe).
        if champion is None or champion.id == version_id or not patterns:
            if row.active:  # a session-44 probe: "is now the active … Recorded for alice." recorded nothing
                raise ModelCatalogError(f"{row.name} is already the active {row.family} model: nothing was changed "
                                        "or recorded")
            before = self.db.model_versions.active(row.family)
            promoted = self.activate(version_id, note)
            return Promotion(promoted, before.name if before is not None and before.id != version_id else None, ())
        try:
            check_model_dir(row.family, self._here(row.id))
        except ModelCatalogError as exc:
            raise ModelCatalogError(f"{row.name} cannot be promoted: {exc}") from None
        rules = Routing(tuple(replace(r, versions=tuple((f, row.name if f == row.family and n == champion.name else n)
                                                        for f, n in r.versions)) for r in routing.rules))
        resolve_named(self.db, rules)   # as save_routing checks them; then the rules and the record in one go
        try:  # only over the rules read above: another station's save meanwhile is not overwritten unseen
            self.db.model_versions.record_routed(version_id, champion.id, self.author(),
                                                 f"routing {', '.join(patterns)}" + (f": {note}" if note else ""),
                                                 setting=(ROUTING, rules.to_dict()), read=read)
        except ConflictError as exc:
            raise ModelCatalogError(f"{row.name} was not promoted: {exc}") from None
        remarked = remark_after_change(self.db, routing, rules)
        if champion.active:
            self.activate(version_id, note)
        return Promotion(replace(self.row(version_id), named_by=patterns), champion.name, patterns, remarked,
                         activated=champion.active)

    def learning_versions(self) -> dict[str, tuple[str | None, str]]:
        """family -> the version a retraining with none chosen learns for, and why not where it cannot tell
        (``counting_versions.learning_version``)."""
        from app.services.counting_versions import learning_version
        return {f: learning_version(self.db, f) for f in FAMILIES}

    def previous_champion(self, family: str) -> ModelRow | None:
        """The version the family's active one replaced, as recorded (None: nothing to roll back to,
        also right after a roll back)."""
        active = self.db.model_versions.active(family)
        # a promotion in routing rules (ADR 0060) changes no active version: not one to roll back
        history = [a for a in self.db.model_versions.activations(family) if a.action != "route"]
        last = history[-1] if history else None
        # After a roll back the replaced version is the challenger again: Make active promotes it,
        # rather than a second roll back that would undo the first one unseen.
        if (active is None or last is None or last.version_id != active.id or last.previous_id is None
                or last.action == "rollback"):
            return None
        try:
            row = self.row(last.previous_id)
        except ModelCatalogError:   # deleted since
            return None
        return None if not row.exists else row   # a bundle an update replaced cannot run again

    def rollback(self, family: str, note: str | None = None, to: int | None = None) -> ModelRow:
        """Make the version the active one replaced active again; the replaced one becomes the
        challenger again (its comparison stays available). Recorded as a roll back. ``to``: the version the caller
        named ("Roll back to A"); another one now is refused (a session-44 probe: another station made C active, and
        the button still reading "Roll back to A" rolled back to B)."""
        previous = self.previous_champion(family)
        if previous is None:
            history = [a for a in self.db.model_versions.activations(family) if a.action != "route"]
            last = history[-1] if history else None
            if last is not None and last.action == "rollback" and last.previous_id is not None:
                # the roll back just made is undone by promoting again, not by a second roll back (a session-46 probe:
                # this read "replaced none that still exists" of a version that exists, the challenger again)
                try:
                    undone = self.row(last.previous_id).name
                except ModelCatalogError:
                    undone = None
                if undone is not None:
                    raise ModelCatalogError(f"the last change of the {family} was a roll back: promote {undone} to "
                                            "undo it (nothing was changed)")
            raise ModelCatalogError(f"the active {family} version replaced none that still exists: nothing to roll back to")
        if to is not None and previous.id != to:
            raise ModelCatalogError(f"the active {family} version was changed meanwhile (at another station): a roll "
                                    f"back now goes to {previous.name}, not the version named; nothing was changed, "
                                    "look again")
        try:
            check_model_dir(family, self._here(previous.id))
        except ModelCatalogError as exc:
            raise ModelCatalogError(f"{previous.name} cannot be made active again: {exc}") from None
        try:
            done = self.db.model_versions.change_active(previous.id, self.author(), "rollback", note,
                                                        previous_becomes_challenger=True)
        except ConflictError as exc:   # two roll backs at once: the second finds it active already
            raise self._meanwhile(family, previous.id, f"{previous.name} was already made active again", exc) from None
        after_activation(self.db, family, versions=(done.version_id, done.previous_id))
        return self.row(previous.id)

    def _here(self, version_id: int) -> Path:
        """The version's folder on this station (``model_files.local_model_dir``: a version registered at
        another station loads from the database's copy), else ``ModelCatalogError`` saying why."""
        v = self.db.model_versions.get(version_id)
        if v is None:
            raise ModelCatalogError(f"model version {version_id} does not exist")
        try:
            return local_model_dir(self.db, v)
        except (ModelFilesError, OSError) as exc:
            raise ModelCatalogError(str(exc)) from None

    def add_directory(self, family: str, path: str | Path) -> ModelRow:
        """Register a model directory (trained elsewhere) as a version of ``family``, not active;
        a directory already registered returns its row."""
        check_model_dir(family, path)
        from app.services.model_files import ModelFilesError, folder_entries
        if Path(path).resolve() not in {d.resolve() for d in bundled_models()}:
            try:  # kept in the database for every station (ADR 0062): a folder that cannot be is said here, not in a
                folder_entries(Path(path))  # log line (a session-44 probe: 300 small text files, added without a word)
            except (ModelFilesError, OSError) as exc:
                raise ModelCatalogError(f"{path} cannot be shared with the other stations and workers: {exc}; "
                                        "keep only the model's files in its folder") from None
        self._ensure_bundled()   # adding a bundled directory finds its bundled row
        try:
            v = version_for_dir(self.db, family, Path(path))
        except PrelabelError as exc:
            raise ModelCatalogError(str(exc)) from None
        return self.row(v.id)


def _row(v: ModelVersionInfo, names: Mapping[int, str], kept: bool = False) -> ModelRow:
    summary = (comparison_summary(v.card) or summarize_metrics(v.metrics)
               or summarize_metrics((v.card or {}).get("metrics")))
    data = (v.card or {}).get("data") if isinstance(v.card, Mapping) else None
    for key, part in (("val_copies_of_train", "validation"), ("test_copies_of_train", "test")):
        copies = data.get(key) if isinstance(data, Mapping) else None
        if summary and isinstance(copies, int) and copies > 0:   # (a session-46 probe: "val acc 1.000" of copies)
            summary += f" ({copies} of its {part} images are copies of training images)"
    # one card: the one stored with the version (a bundled row's card is the one on disk: ``refresh_bundled``; the disk's
    # figures beside an older stored card's described two models in one line, a session-48 probe)
    expected = expected_summary(v.card)
    summary = " | ".join(t for t in (expected, summary) if t)
    replaced = isinstance(v.config.get("replaced"), Mapping)   # a bundle an update replaced: its files are gone
    if replaced:
        summary = " | ".join(t for t in ("replaced by an update of the station: cannot run", summary) if t)
    here = Path(v.checkpoint_path).is_dir() and not replaced
    copy = bundled_copy(v)
    return ModelRow(id=v.id, family=v.family, name=v.name, path=v.checkpoint_path, bundled=v.bundled,
                    active=v.active, created_at=v.created_at,
                    parent_name=names.get(v.parent_id) if v.parent_id is not None else None,
                    summary=summary, exists=here or kept or copy is not None, challenger=v.challenger, kept=kept,
                    here=here, domain=trained_on(Path(v.checkpoint_path) if here else copy))


def trained_on(directory: Path | None) -> str:
    """``domain_summary`` of the description in ``directory`` (read with its bounds); "" without one, or when it
    cannot be read (the dialog lists the version all the same). Kept per folder and file state: ``rows()`` also
    serves the routing dialog's version names, which should not re-read every description."""
    if directory is None:
        return ""
    try:
        st = (directory / DOMAIN_JSON).stat()
    except OSError:
        return ""
    return _trained_on(str(directory), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _trained_on(directory: str, _mtime_ns: int, _size: int) -> str:
    try:
        stats = load_domain(directory)
    except (DomainError, OSError, ValueError) as exc:
        log.warning("domain description of %s not read: %s", directory, exc)
        return ""
    return domain_summary(stats) if stats is not None else ""

