"""Model versions per family, with exactly the active one the worker should use."""
from __future__ import annotations

import builtins
import hashlib
import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from database import current_predictions
from database.convert import to_dto
from database.dto import ModelActivationInfo, ModelVersionInfo
from database.errors import ConflictError
from database.images import refresh_statistics
from database.models import VERSION_NAME_CHARS, ModelActivation, ModelFile, ModelVersion, db_now

ACTIONS = ("activate", "promote", "rollback")

if TYPE_CHECKING:
    from database.engine import Database


def json_safe(value: Any) -> Any:
    """NaN and infinities become None: PostgreSQL's JSON type refuses them (an AUROC over a test split
    without defects is NaN in a card), and SQLite would store text no strict JSON reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _dto(row: ModelVersion) -> ModelVersionInfo:
    return to_dto(row, ModelVersionInfo)


def active_ids_in(s: Session) -> dict[str, int]:
    """family -> id of its active version, read in the caller's transaction (one statement)."""
    return {f: i for f, i in s.execute(select(ModelVersion.family, ModelVersion.id)
                                       .where(ModelVersion.active.is_(True)))}


class ModelVersionRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, family: str, name: str, checkpoint_path: str, *, config: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, card: dict[str, Any] | None = None,
                 bundled: bool = False, parent_id: int | None = None, activate: bool = False,
                 challenger: bool = False) -> ModelVersionInfo:
        """Add a version; (family, name) must be new. ``activate`` also makes it the active one;
        ``challenger`` makes it a challenger of the family (replacing the previous one of its parent)."""
        if not name.strip() or len(name) > VERSION_NAME_CHARS:
            raise ValueError(f"a model version's name holds 1 to {VERSION_NAME_CHARS} characters ({len(name)} given)")
        with self.db.session(write=True) as s:
            if s.scalar(select(ModelVersion.id).where(ModelVersion.family == family, ModelVersion.name == name)):
                raise ConflictError(f"a {family} model named '{name}' is already registered.")
            row = ModelVersion(family=family, name=name, checkpoint_path=checkpoint_path, config=json_safe(config or {}),
                               metrics=json_safe(metrics or {}), card=json_safe(card or {}), bundled=bundled,
                               parent_id=parent_id, created_at=db_now(s))  # labels' clock: "learnt" compares them
            s.add(row)
            s.flush()
            if activate:
                _activate(s, row)
            elif challenger:
                _make_challenger(s, row)
            return _dto(row)

    def get(self, version_id: int, s: Session | None = None) -> ModelVersionInfo | None:
        """The version, or None; ``s``: read in that transaction (``Database.reading``)."""
        with self.db.reading(s) as r:
            row = r.get(ModelVersion, version_id)
            return None if row is None else _dto(row)

    def by_name(self, family: str, name: str) -> ModelVersionInfo | None:
        with self.db.session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.family == family, ModelVersion.name == name))
            return None if row is None else _dto(row)

    def list(self, family: str | None = None) -> list[ModelVersionInfo]:
        stmt = select(ModelVersion).order_by(ModelVersion.family, ModelVersion.created_at, ModelVersion.id)
        if family is not None:
            stmt = stmt.where(ModelVersion.family == family)
        with self.db.session() as s:
            return [_dto(r) for r in s.scalars(stmt)]

    def active(self, family: str) -> ModelVersionInfo | None:
        with self.db.session() as s:
            row = s.scalar(select(ModelVersion).where(ModelVersion.family == family, ModelVersion.active.is_(True)))
            return None if row is None else _dto(row)

    def active_ids(self) -> dict[str, int]:
        """family -> id of its active version, in one query (the queue asks on every page)."""
        with self.db.session() as s:
            return active_ids_in(s)

    def activate(self, version_id: int) -> ModelVersionInfo:
        """Make this version its family's active one (the previous one is deactivated)."""
        with self.db.session(write=True) as s:
            row = s.get(ModelVersion, version_id, with_for_update=True)
            if row is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            _activate(s, row)
            out = _dto(row)
        _moved(self.db)
        return out

    def challenger(self, family: str) -> ModelVersionInfo | None:
        """The family's newest version under review, if any (``challengers``: all of them, one per lineage)."""
        found = self.challengers(family)
        return found[0] if found else None

    def challengers(self, family: str) -> builtins.list[ModelVersionInfo]:
        """The family's versions under review, newest first: one per parent (the version it was retrained from;
        two lines routed to two versions each have theirs, ADR 0060)."""
        with self.db.session() as s:
            rows = s.scalars(select(ModelVersion).where(ModelVersion.family == family, ModelVersion.challenger.is_(True))
                             .order_by(ModelVersion.id.desc()))
            return [_dto(r) for r in rows]

    def record_routed(self, version_id: int, previous_id: int, author: str, note: str,
                      setting: tuple[str, Any] | None = None, read: Any = None) -> ModelActivationInfo:
        """The version took over from ``previous_id`` in the routing rules that named it (a routed champion's
        challenger promoted, ADR 0060): it stops being the challenger and the change is recorded as a 'route'
        activation (``note``: the rules, and why); ``setting``: the project setting (key, value) that holds the
        new rules, stored by ``author`` in the same transaction, only if the setting still holds ``read`` (the value
        they were computed from; ``ConflictError`` otherwise, nothing written). No active version changes."""
        from database.project_settings import put_in

        with self.db.session(write=True) as s:
            if setting is not None:
                put_in(s, setting[0], setting[1], author, expected=read)
            row = s.get(ModelVersion, version_id, with_for_update=True)
            previous = s.get(ModelVersion, previous_id)
            if row is None or previous is None:
                raise ConflictError(f"model version {version_id if row is None else previous_id} does not exist.")
            row.challenger = False
            record = ModelActivation(family=row.family, version_id=row.id, version_name=row.name,
                                     previous_id=previous.id, previous_name=previous.name, action="route",
                                     author=author, note=note, created_at=db_now(s))
            s.add(record)
            s.flush()
            return to_dto(record, ModelActivationInfo)

    def set_challenger(self, version_id: int) -> ModelVersionInfo:
        """Make an inactive version a challenger of its family (the previous one of its parent stops being one)."""
        with self.db.session(write=True) as s:
            row = s.get(ModelVersion, version_id, with_for_update=True)
            if row is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            if row.active:
                raise ConflictError(f"{row.name} is the active {row.family} version, not a challenger.")
            _make_challenger(s, row)
            return _dto(row)

    def change_active(self, version_id: int, author: str, action: str = "activate", note: str | None = None,
                      previous_becomes_challenger: bool = False) -> ModelActivationInfo:
        """Make the version active and record who did it, in one transaction (the audit trail and
        what a roll back returns to). It stops being the challenger; ``previous_becomes_challenger``
        keeps the replaced version under review (a roll back). ``ConflictError`` (nothing written) where it is the
        active one already."""
        if action not in ACTIONS:
            raise ValueError(f"unknown activation action {action!r}")
        with self.db.session(write=True) as s:
            family = s.scalar(select(ModelVersion.family).where(ModelVersion.id == version_id))
            if family is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            # The whole family is locked, in one order, before the active one is read: locking only the active row,
            # a second station's activation waited on it, found it no longer active once the first had committed
            # (PostgreSQL re-reads a locked row) and recorded that it replaced nothing, so Roll back had nothing to
            # return to (a session-45 probe).
            rows = s.scalars(select(ModelVersion).where(ModelVersion.family == family).order_by(ModelVersion.id)
                             .with_for_update().execution_options(populate_existing=True)).all()
            row = next((r for r in rows if r.id == version_id), None)
            if row is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            previous = next((r for r in rows if r.active), None)
            if previous is row:
                # Another station made it active between the caller's look and this lock: recorded, it would read
                # "replaced itself", and Roll back would go nowhere with the old champion's way back lost (a
                # session-50 audit). Refused here, under the lock, so two roll backs at once are refused alike.
                raise ConflictError(f"{row.name} is already the active {row.family} version: nothing was recorded.")
            row.challenger = False
            _activate(s, row)
            if previous is not None and previous.id != row.id and previous_becomes_challenger:
                _make_challenger(s, previous)
            record = ModelActivation(family=row.family, version_id=row.id, version_name=row.name,
                                     previous_id=previous.id if previous is not None else None,
                                     previous_name=previous.name if previous is not None else None,
                                     action=action, author=author, note=note, created_at=db_now(s))
            s.add(record)
            s.flush()
            out = to_dto(record, ModelActivationInfo)
        _moved(self.db)
        return out

    def activations(self, family: str | None = None) -> builtins.list[ModelActivationInfo]:
        """Recorded changes of the active versions (of ``family``), oldest first."""
        stmt = select(ModelActivation).order_by(ModelActivation.id)
        if family is not None:
            stmt = stmt.where(ModelActivation.family == family)
        with self.db.session() as s:
            return [to_dto(r, ModelActivationInfo) for r in s.scalars(stmt)]

    def put_files(self, version_id: int, files: builtins.list[tuple[str, bytes]]) -> None:
        """Keep the version's folder in the database (ADR 0062): ``files`` are (posix name, bytes) and
        replace whatever it held, in one transaction (a reader sees all of them or none)."""
        with self.db.session(write=True) as s:
            if s.get(ModelVersion, version_id) is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            s.execute(delete(ModelFile).where(ModelFile.model_version_id == version_id))
            s.add_all(ModelFile(model_version_id=version_id, name=name, sha256=hashlib.sha256(data).hexdigest(),
                                size=len(data), data=data) for name, data in files)

    def file_list(self, version_id: int) -> builtins.list[tuple[str, str, int]]:
        """(name, sha256, size) of each file the database keeps for the version, by name; [] when none."""
        with self.db.session() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(ModelFile.name, ModelFile.sha256, ModelFile.size)
                .where(ModelFile.model_version_id == version_id).order_by(ModelFile.name))]

    def kept_ids(self) -> set[int]:
        """The versions whose files the database keeps."""
        with self.db.session() as s:
            return set(s.scalars(select(ModelFile.model_version_id).distinct()))

    def file_data(self, version_id: int, name: str) -> bytes | None:
        with self.db.session() as s:
            return s.scalar(select(ModelFile.data).where(ModelFile.model_version_id == version_id,
                                                         ModelFile.name == name))

    def set_config(self, version_id: int, config: dict[str, Any], card: dict[str, Any] | None = None) -> ModelVersionInfo:
        """Merge ``config`` into the version's config (what the station keeps about its files); ``card``: the card
        it stores from now on (a row registered with none)."""
        with self.db.session(write=True) as s:
            row = s.get(ModelVersion, version_id)
            if row is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            row.config = json_safe({**row.config, **config})
            if card is not None:
                row.card = json_safe(card)
            s.flush()
            return _dto(row)

    def replace_bundled(self, version_id: int, *, card: dict[str, Any], config: dict[str, Any], retired_name: str,
                        author: str, note: str, checkpoint_path: str,
                        retired_config: dict[str, Any] | None = None) -> ModelVersionInfo:
        """A bundled version whose files the install replaced (an update of the station): it keeps its id, answers
        and history under ``retired_name``, stops being bundled and is marked ``replaced`` (it can no longer run:
        its files are gone); a new bundled version takes its name, folder, ``card`` and ``config``, and its place as
        the active one (recorded, by ``author`` with ``note``) where it held it; ``checkpoint_path``: this install's
        folder; ``retired_config``: merged into the old row's config (the earlier files' fingerprint where known: a
        station still holding them is told to update). One transaction."""
        with self.db.session(write=True) as s:
            old = s.get(ModelVersion, version_id, with_for_update=True)
            if old is None or not old.bundled:
                raise ConflictError(f"model version {version_id} is not a bundled version (any more).")
            if s.scalar(select(ModelVersion.id).where(ModelVersion.family == old.family,
                                                      ModelVersion.name == retired_name)):
                raise ConflictError(f"a {old.family} model named '{retired_name}' is already registered.")
            name, path, was_active = old.name, checkpoint_path, old.active   # the updated install's folder
            old.name, old.bundled = retired_name, False
            old.config = json_safe({**old.config, "replaced": {"by_update_of": name, "note": note},
                                    **(retired_config or {})})
            s.flush()
            new = ModelVersion(family=old.family, name=name, checkpoint_path=path, config=json_safe(config),
                               metrics={}, card=json_safe(card), bundled=True, created_at=db_now(s))
            s.add(new)
            s.flush()
            if was_active:
                _activate(s, new)
                s.add(ModelActivation(family=new.family, version_id=new.id, version_name=new.name,
                                      previous_id=old.id, previous_name=old.name, action="activate",
                                      author=author, note=note, created_at=db_now(s)))
                s.flush()
            out = _dto(new)
        if was_active:
            _moved(self.db)
        return out

    def replaced_by(self, version_id: int) -> ModelVersionInfo | None:
        """The bundled version that took the place of one an update of the install replaced (``replace_bundled``: the
        new row took its name, recorded in the old row's ``config["replaced"]["by_update_of"]``; after a second
        update the name is held by the newest); None for a version not replaced, or whose name no bundled version
        holds now. A job queued before the update runs with it rather than failing its images (ADR 0079)."""
        with self.db.session() as s:
            old = s.get(ModelVersion, version_id)
            replaced = old.config.get("replaced") if old is not None else None
            if old is None or not isinstance(replaced, dict) or not isinstance(replaced.get("by_update_of"), str):
                return None
            row = s.scalar(select(ModelVersion).where(ModelVersion.family == old.family,
                                                      ModelVersion.name == replaced["by_update_of"],
                                                      ModelVersion.bundled.is_(True)))
            return None if row is None or "replaced" in row.config else _dto(row)

    def update_metrics(self, version_id: int, metrics: dict[str, Any]) -> ModelVersionInfo:
        """Merge ``metrics`` into the version's metrics (e.g. after evaluating on new labels)."""
        with self.db.session(write=True) as s:
            row = s.get(ModelVersion, version_id)
            if row is None:
                raise ConflictError(f"model version {version_id} does not exist.")
            row.metrics = json_safe({**row.metrics, **metrics})
            s.flush()
            return _dto(row)


def _moved(db: Database) -> None:
    """After an activation moved the prediction markers (``current_predictions.move_to``): both
    versions' rows were rewritten, so PostgreSQL's statistics are refreshed at once (the queue's
    plans read them; see ``refresh_statistics``)."""
    refresh_statistics(db, "predictions")


def _make_challenger(s: Session, row: ModelVersion) -> None:
    # As for the active one: the partial unique index allows one challenger per family and parent (its lineage:
    # the version it was retrained from; ADR 0060). A version without a parent replaces the others without one.
    same_parent = (ModelVersion.parent_id == row.parent_id) if row.parent_id is not None \
        else ModelVersion.parent_id.is_(None)
    s.execute(update(ModelVersion).where(ModelVersion.family == row.family, ModelVersion.id != row.id, same_parent,
                                         ModelVersion.challenger.is_(True)).values(challenger=False))
    s.flush()
    row.challenger = True
    s.flush()


def _activate(s: Session, row: ModelVersion) -> None:
    previous = s.scalar(select(ModelVersion.id).where(ModelVersion.family == row.family,
                                                      ModelVersion.active.is_(True)))
    # Deactivate first: the partial unique index allows one active row per family at any time.
    s.execute(update(ModelVersion).where(ModelVersion.family == row.family, ModelVersion.id != row.id,
                                         ModelVersion.active.is_(True)).values(active=False))
    s.flush()
    row.active = True
    row.challenger = False
    s.flush()
    current_predictions.move_to(s, row.family, row.id, previous)
