"""Pre-labelling as the GUI and the CLI see it: submit, watch, cancel, start a worker process.

Qt-free and model-free: this module only writes and reads job rows. Models run in a worker
process (``python main.py worker``), never in the caller's process, so a GUI that uses this
API cannot be blocked by a model. A job records the model version of each family it was
submitted with, so every worker (on any machine) produces the same predictions for it; workers
flag with the project's current thresholds (``app.services.project_settings``), so a threshold
changed mid-job applies to the rest of the job as ``reflag`` applies it to what is done.
"""
from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from app.paths import REPO_ROOT
from app.services.child_command import station_command
from app.services.counting_versions import resolve_named
from app.services.file_scan import shown
from app.services.flags import FlagSettings
from app.services.json_files import JsonFileError, read_json_object
from app.services.routing import FAMILY_ORDER, JobKey, Routing, RoutingError, group_by_families
from database.dto import ImageInfo, ImageQuery, JobInfo, ModelVersionInfo
from database.errors import ConflictError
from database.models import VERSION_NAME_CHARS
from database.states import ItemStatus, JobStatus
from inference.bundled import bundled_model_dir

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from database.engine import Database

PRELABEL = "prelabel"
# How the worker begins the reason of each image it failed because a job's model cannot be loaded on its machine: the
# images are fine, and the challenger panel says the model's reason rather than count them as unreadable files.
UNLOADABLE = "model cannot be loaded: "
# What a pre-label job was queued for (``params["scope"]``): the Jobs dock names a job by it, also after a restart.
JOB_SCOPES = ("folder", "new images", "selection")
# An automatic job (a followed folder's new files) that finished less than this long ago takes the next
# re-scan's files back in (reopened) rather than a new job: one job per stretch of a line's work in the dock.
AUTOMATIC_REOPEN_S = 600.0
FAMILIES = FAMILY_ORDER


class PrelabelError(Exception):
    """A pre-label request that cannot be queued, with the reason."""


@dataclass(frozen=True)
class JobProgress:
    """A job's state for a progress bar: counts, rate, ETA; plain data for any thread."""

    job_id: int
    kind: str
    state: str            # queued | running | done | failed | cancelled
    done: int
    failed: int
    total: int
    cancel_requested: bool
    message: str | None
    error: str | None
    images_per_second: float | None
    eta_seconds: float | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return (self.done + self.failed) / self.total if self.total else (1.0 if self.finished else 0.0)


def read_card(model_dir: Path) -> dict[str, Any]:
    """A model directory's card.json (empty when absent or unreadable: the card is informative)."""
    try:
        return read_json_object(Path(model_dir) / "card.json")
    except JsonFileError:
        return {}


def version_for_dir(db: "Database", family: str, directory: Path) -> ModelVersionInfo:
    """The version row for a model directory given explicitly (registered on first use)."""
    directory = directory.resolve()
    if not (directory / "config.json").is_file():
        raise PrelabelError(f"{directory}: not a model directory (no config.json)")
    def registered() -> ModelVersionInfo | None:
        return next((v for v in db.model_versions.list(family) if Path(v.checkpoint_path).resolve() == directory), None)

    if (known := registered()) is not None:
        return known
    name = f"{directory.name} ({directory})"
    if len(name) > VERSION_NAME_CHARS:  # a deep folder's path past the column (PostgreSQL refused it: a session-47 audit)
        digest = hashlib.sha256(str(directory).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = f"{shown(directory.name, VERSION_NAME_CHARS - 20)} ({digest})"
    try:
        version = db.model_versions.register(family, name, str(directory), card=read_card(directory))
    except ConflictError:  # another station registered it a moment ago (a session-47 audit)
        if (known := registered()) is None:
            raise
        return known
    from app.services.model_files import ModelFilesError, keep_in_database
    try:  # every station and worker loads it, not only this one (ADR 0062)
        keep_in_database(db, version, directory)
    except (OSError, ModelFilesError) as exc:
        log.warning("%s runs only where %s is seen: %s", name, directory, exc)
    return version


UPDATER = "station"   # who the activation of a bundled model replaced by an update is recorded for


def refresh_bundled(db: "Database") -> list[BundledNote]:
    """Bundled versions whose files an update of the install replaced become new versions (one line each, returned).

    A bundled version runs this install's copy of its folder, found by name. An upgrade that shipped a retrained model
    under the same name had the new model answer under the old version, judged by the old card's threshold (62.56 for
    scores of 0 to 1: no tile could be called anomalous) and listed with both cards' figures (a session-48 probe). The
    old version keeps its answers and history under a dated name and can no longer run; a new version takes the
    bundle's name, card and, where the old one was active, its place (recorded). A version registered before
    fingerprints were kept adopts the install's files where its card is the one on disk."""
    from app.services.model_files import (
        BUNDLE_FINGERPRINT,
        ModelFilesError,
        bundled_copy,
        folder_fingerprint,
        held_by_another,
        registered_card_is_here,
    )

    said = []
    versions = db.model_versions.list()
    for version in versions:
        local = bundled_copy(version)
        if local is None:
            continue
        try:
            fingerprint = folder_fingerprint(local)
        except (OSError, ModelFilesError) as exc:
            log.warning("bundled model %s: its files cannot be read (%s)", local, exc)
            continue
        stored = version.config.get(BUNDLE_FINGERPRINT)
        if stored == fingerprint:
            continue
        if stored is not None and held_by_another(versions, version, fingerprint):
            # this install holds a bundle an update replaced (another station was updated first): not undone here
            said.append(BundledNote(version.family, f"this station's bundled {version.family} model {version.name} is "
                                    "older than the one registered by an updated station: update this station to run "
                                    "it", outdated=True, runs=version.active or _named_anywhere(db, version)))
            continue
        card = read_card(local)
        if stored is None and registered_card_is_here(version, local):
            # the same model, registered before fingerprints were kept (and, before 2026-11-23, with no card)
            db.model_versions.set_config(version.id, {BUNDLE_FINGERPRINT: fingerprint},
                                         card=None if version.card else card)
            continue
        retired = _retired_name(db, version)
        note = (f"the station's bundled {version.family} model {version.name} was updated with the install; the "
                f"earlier one keeps its answers as {retired!r}")
        earlier = stored or _fingerprint_at(Path(version.checkpoint_path), local)
        try:
            new = db.model_versions.replace_bundled(version.id, card=card, config={BUNDLE_FINGERPRINT: fingerprint},
                                                    retired_name=retired, author=UPDATER, note=note,
                                                    checkpoint_path=str(local),
                                                    retired_config={BUNDLE_FINGERPRINT: earlier} if earlier else None)
        except ConflictError:   # another station did it a moment ago
            continue
        # which answer counts and the flags follow, as after any activation (a rule naming the bundle by name now
        # names the new version: its images' old answers no longer count)
        from app.services.counting_versions import after_activation
        after_activation(db, version.family, versions=(new.id, version.id))
        log.warning("%s", note)
        runs = version.active or _named_anywhere(db, new)
        said.append(BundledNote(version.family, note + (" (pre-label the folders again for its answers)" if runs else ""),
                                runs=runs))
    return said


@dataclass(frozen=True)
class BundledNote:
    """A line ``refresh_bundled`` says; ``outdated``: this station's install is older than the bundle registered
    (what it cannot run)."""

    family: str
    text: str
    outdated: bool = False
    runs: bool = False   # the version is the active one or named by a routing rule: pre-labelling runs it

    def __str__(self) -> str:
        return self.text


def _named_anywhere(db: "Database", version: ModelVersionInfo) -> bool:
    """Whether a routing rule names the version (by its name) for some images."""
    from app.services.project_settings import readable_routing
    return (version.family, version.name) in readable_routing(db).named_versions()


def _fingerprint_at(path: Path, local: Path) -> str | None:
    """The fingerprint of the earlier install's folder a row was registered at, where it is still on disk (another
    folder than this install's): a station still running it is then told to update."""
    from app.services.model_files import ModelFilesError, folder_fingerprint
    try:
        if path.resolve() == local.resolve() or not (path / "config.json").is_file():
            return None
        return folder_fingerprint(path)
    except (OSError, ModelFilesError):
        return None


def _retired_name(db: "Database", version: ModelVersionInfo) -> str:
    """``name (until YYYY-MM-DD)``, numbered where that is taken, within the name column."""
    day = datetime.now(timezone.utc).date().isoformat()
    for n in range(1, 1000):
        tail = f" (until {day})" if n == 1 else f" (until {day}, {n})"
        name = shown(version.name, VERSION_NAME_CHARS - len(tail)) + tail
        if db.model_versions.by_name(version.family, name) is None:
            return name
    raise ConflictError(f"no free name to keep {version.name!r} under")


def bundled_version(db: "Database", family: str, name: str | None = None, activate: bool = True) -> ModelVersionInfo:
    """A bundled model directory's version (the family's default unless ``name``), registered with
    its card on first use; ``activate`` also makes it the family's active version."""
    bundled = bundled_model_dir(family, name)
    if not (bundled / "config.json").is_file():
        raise PrelabelError(f"no {family} model: no active version in the database and no bundled "
                            f"checkpoint at {bundled}")
    existing = db.model_versions.by_name(family, bundled.name)
    if existing is None:
        from app.services.model_files import BUNDLE_FINGERPRINT, ModelFilesError, folder_fingerprint
        try:
            config = {BUNDLE_FINGERPRINT: folder_fingerprint(bundled)}
        except (OSError, ModelFilesError) as exc:
            raise PrelabelError(f"the bundled {family} model at {bundled} cannot be read: {exc}") from None
        try:
            return db.model_versions.register(family, bundled.name, str(bundled), bundled=True,
                                              activate=activate, card=read_card(bundled), config=config)
        except ConflictError:  # two stations on a new database registered it at once; one failed its first
            existing = db.model_versions.by_name(family, bundled.name)  # pre-labelling (a session-47 audit)
            if existing is None:
                raise
    return db.model_versions.activate(existing.id) if activate and not existing.active else existing


def bundled_default(db: "Database", family: str) -> tuple[str, dict[str, Any]] | None:
    """The version ``bundled_version`` registers and activates for a family that has no active one, read without
    writing: its name and card (its row's where it has one, else the card on disk); None where none is bundled. What
    the project offers before its first pre-label (``project_classes.model_classes``)."""
    bundled = bundled_model_dir(family)
    if not (bundled / "config.json").is_file():
        return None
    existing = db.model_versions.by_name(family, bundled.name)
    card = existing.card if existing is not None else read_card(bundled)
    return bundled.name, card or {}


def resolve_models(db: "Database", families: Sequence[str],
                   model_dirs: Mapping[str, str | os.PathLike[str]] | None = None) -> dict[str, ModelVersionInfo]:
    """The model version each family will run: an explicit directory, else the active version,
    else the bundled default (registered and activated on first use)."""
    out = {}
    for family in families:
        if family not in FAMILIES:
            raise PrelabelError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
        if model_dirs and family in model_dirs:
            out[family] = version_for_dir(db, family, Path(model_dirs[family]))
            continue
        active = db.model_versions.active(family)
        out[family] = active if active is not None else bundled_version(db, family)
    return out


def submit_prelabel(db: "Database", *, folder_id: int | None = None, image_ids: Sequence[int] | None = None,
                    families: Sequence[str] = FAMILIES, model_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
                    flag_settings: FlagSettings | None = None, only_missing: bool = True,
                    priority: int = 0, skip_empty: bool = False, profile: str | None = None,
                    join_automatic: bool = False, scope: str | None = None,
                    named: Mapping[str, int] | None = None, skip_waiting: bool = False,
                    waiting_in: Sequence[int] | None = None) -> int | None:
    """Queue a pre-label job over a folder's images (or the given ids); returns the job id.

    With ``only_missing`` images that already have a prediction from every chosen model version
    are left out, so re-submitting a folder after adding files runs only the new ones;
    ``skip_empty``: no job (None) when that leaves no image (automatic pre-labelling).
    ``profile``: the cards' speed profile the job runs (None: the project's setting, read now and
    recorded in the job, so every worker runs the job the same way; see ``inference.profiles``).
    ``join_automatic``: an automatic job (a followed folder's new files) that joins the open
    automatic job with the same models and settings, if one is still waiting or running, or
    finished less than ``AUTOMATIC_REOPEN_S`` ago (reopened), rather than queue another
    (``JobRepository.add_items``); its id is returned. A line's stream of files is then one job
    while it runs, whether the worker is behind or keeps up; a pause longer than that starts a new one.
    ``scope``: what the inspector asked for (``JOB_SCOPES``: "folder", "new images", "selection"), recorded so a
    window opened later names the job as the one that queued it did.
    ``named``: family -> the version the images' routing rule names (``counting_versions``): it runs
    instead of the active one, and its answers are the ones that count for these images.
    ``skip_waiting`` (implied by ``join_automatic``): images queued or running in an open pre-label job doing the same
    work (its families include these, by the same versions) are left out, checked in the transaction that queues the
    rest; ``waiting_in``: only these jobs count.
    """
    if (folder_id is None) == (image_ids is None):
        raise PrelabelError("give either a folder or a list of images")
    if scope is not None and scope not in JOB_SCOPES:
        raise PrelabelError(f"unknown job scope {scope!r}; one of {', '.join(JOB_SCOPES)}")
    families = [f for f in FAMILIES if f in families]
    if not families:
        raise PrelabelError("no model family chosen")
    versions = chosen_versions(db, families, named, model_dirs)
    if folder_id is not None:
        if db.folders.get(folder_id) is None:
            raise PrelabelError(f"folder {folder_id} is not indexed")
        ids = [im.id for im in db.images.query(ImageQuery(folder_id=folder_id, sort="id"))]
    else:
        ids = list(dict.fromkeys(image_ids or ()))
    if only_missing and ids:
        lacks = _lacking(db, ids, versions)
        ids = [i for i in ids if i in lacks]
        # only the families some of these images lack: pre-labelling a folder again after a new classifier version
        # ran the tile anomaly model over every image a second time, rewriting its answers (a session-48 audit)
        lacking = [f for f in families if any(f in lack for lack in lacks.values())]
        if lacking:
            families, versions = lacking, {f: versions[f] for f in lacking}
    if skip_empty and not ids:
        return None
    params: dict[str, Any] = {"families": families, "model_versions": {f: v.id for f, v in versions.items()}}
    if named:  # the worker marks these families' answers as the ones that count (ADR 0059)
        params["named"] = [f for f in families if f in named]
    if flag_settings is not None:  # an explicit override; otherwise the worker flags with the project's
        params["flags"] = flag_settings.to_dict()
    profile = project_speed_profile(db) if profile is None else profile
    if profile:
        params["profile"] = profile
    if scope is not None:
        params["scope"] = scope
    if join_automatic:
        params["automatic"] = True
        # Only the newest job of the same models and settings: after a cancel (or a failure) the line's
        # next files start a new job, never one behind it.
        same = next((j for j in db.jobs.list(kind=PRELABEL, limit=50) if j.params == params), None)  # newest first
        if same is not None and db.jobs.add_items(same.id, ids, reopen_within_s=AUTOMATIC_REOPEN_S, skip_waiting=True):
            return same.id  # refused once cancelled, failed, or finished longer ago than that
    if join_automatic or skip_waiting:  # another station may have queued them a moment ago: each image once
        job = db.jobs.create_unless_waiting(PRELABEL, params, ids, priority=priority, among=waiting_in)  # (session 47)
        return None if job is None else job.id
    return db.jobs.create(PRELABEL, params, ids, priority=priority).id


def chosen_versions(db: "Database", families: Sequence[str], named: Mapping[str, int] | None = None,
                    model_dirs: Mapping[str, str | os.PathLike[str]] | None = None) -> dict[str, ModelVersionInfo]:
    """family -> the version a job runs: the one ``named`` (a routing rule's), else ``resolve_models``'."""
    versions = resolve_models(db, [f for f in families if f not in (named or {})], model_dirs)
    for family, version_id in (named or {}).items():
        if family in families:
            version = db.model_versions.get(version_id)
            if version is None or version.family != family:
                raise PrelabelError(f"the routing names {family} version {version_id}, which is not in this project")
            versions[family] = version
    return {f: versions[f] for f in families}


def _lacking(db: "Database", ids: Sequence[int], versions: Mapping[str, ModelVersionInfo]
             ) -> dict[int, tuple[str, ...]]:
    """image id -> the families whose chosen version has not answered it, in ``versions``' order; images lacking none
    are left out. The one rule of what an image still needs, for a single job (``submit_prelabel``) and for a routed
    request's jobs (``_by_what_they_lack``). Each version's answers are read for ``ids`` only: every automatic
    submission of a re-scan that found files read all the images each version ever answered (a session-51 audit:
    29 ms at 128 answers, 690 ms at 1.5M), and a routed request's groups, disjoint, read each image once a version."""
    answered = {v.id: db.predictions.image_ids_with(v.id, among=ids) for v in versions.values()}
    out: dict[int, tuple[str, ...]] = {}
    for i in ids:
        if lack := tuple(f for f, v in versions.items() if i not in answered[v.id]):
            out[i] = lack
    return out


def _by_what_they_lack(db: "Database", ids: Sequence[int], families: Sequence[str], named: Mapping[str, int],
                       kw: Mapping[str, Any]) -> list[tuple[list[str], list[int]]]:
    """``ids`` grouped by the families whose answers each lacks (those with every answer left out): a job runs each
    of its families on each of its images, so a folder of new images and images lacking only a new classifier's
    answers ran the anomaly model again on the latter (a session-48 audit). As given where every answer is asked for
    again (``only_missing`` False)."""
    if not kw.get("only_missing", True):
        return [(list(families), list(ids))]
    versions = chosen_versions(db, families, named, kw.get("model_dirs"))
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, lack in _lacking(db, ids, versions).items():
        groups.setdefault(lack, []).append(i)
    return [(list(lack), members) for lack, members in groups.items()] or [(list(families), [])]


def project_speed_profile(db: "Database") -> str:
    """The project's speed profile ("" for each card's default, also when the stored settings are
    broken: a broken threshold must not stop pre-labelling, and the worker reports it)."""
    from app.services.project_settings import load_project_settings
    try:
        return load_project_settings(db).speed_profile
    except ValueError:
        return ""


def submit_routed_prelabel(db: "Database", *, folder_id: int | None = None,
                           image_ids: Sequence[int] | None = None, families: Sequence[str] = FAMILIES,
                           routing: Routing | None = None, **kw: Any) -> list[int]:
    """Queue pre-labelling with the project's model routing: one job per set of families.

    Without ``routing`` the project's rules are read (``project_settings``). Each image runs only the
    families its first matching rule names (among ``families``); images with none are skipped.
    Jobs stay per family set (and versions the rules name) so a worker runs whole batches with one
    set of models; a rule's named versions run instead of the active ones, and their answers count
    for its images (``counting_versions``; a name the project lacks is a ``PrelabelError``).
    Returns the job ids (empty when every image was routed to no family).
    """
    if (folder_id is None) == (image_ids is None):
        raise PrelabelError("give either a folder or a list of images")
    for note in refresh_bundled(db):   # before any version is chosen by name or as the active one
        if note.outdated and note.runs and note.family in families:
            # its worker would refuse every image of the family (a session-48 review): the others still run
            families = [f for f in families if f != note.family]
            if not families:
                raise PrelabelError(note.text)
            log.warning("%s; pre-labelling without the %s", note.text, note.family)
    routing = project_routing(db) if routing is None else routing
    if folder_id is not None:
        if db.folders.get(folder_id) is None:
            raise PrelabelError(f"folder {folder_id} is not indexed")
        images = db.images.query(ImageQuery(folder_id=folder_id, sort="id"))
    else:
        images = db.images.get_many(list(dict.fromkeys(image_ids or ())))
    groups = routed_groups(db, images, families, routing)   # no rules: one group, every family asked for
    try:
        resolved = resolve_named(db, routing)
    except RoutingError as exc:
        raise PrelabelError(str(exc)) from None
    queued: list[int] = []
    for (fams, named), ids in groups.items():
        ids_named = {f: resolved[(f, n)].id for f, n in named}
        # each part lacks exactly its families: not sought again (``only_missing`` off for the call)
        for lack, part in _by_what_they_lack(db, ids, fams, ids_named, kw):
            job = submit_prelabel(db, image_ids=part, families=lack,
                                  named={f: v for f, v in ids_named.items() if f in lack},
                                  **{**kw, "only_missing": False})
            if job is not None:
                queued.append(job)
    return queued


def project_routing(db: "Database") -> Routing:
    """The project's model routing; stored settings that cannot be read are a ``PrelabelError`` saying why."""
    from app.services.project_settings import load_project_settings
    try:
        return load_project_settings(db).routing
    except ValueError as exc:
        raise PrelabelError(str(exc)) from None


def routed_groups(db: "Database", images: Iterable[ImageInfo], families: Sequence[str],
                  routing: Routing | None = None) -> dict[JobKey, list[int]]:
    """``images`` grouped by the families among ``families`` (and the versions named) their routing rule gives them,
    each matched with its folder's name (``group_by_families``); images given none are left out. ``routing``: the
    project's (``project_routing``) unless given. One home for what queues the jobs, why nothing was queued, and
    which images the command counts for each family (copies of it had been written in each)."""
    routing = project_routing(db) if routing is None else routing
    names = {f.id: f.name for f in db.folders.list()}
    return group_by_families(((im.id, im.rel_path, names.get(im.folder_id, "")) for im in images), routing, families)


def why_nothing_to_run(db: "Database", folder_id: int, families: Sequence[str], routing: Routing | None = None) -> str:
    """Why pre-labelling a folder queued no job: it holds no images, the project's routing gives them none of
    ``families``, or every image has the answers of the versions that run on it. One home for the command's line and
    the window's message (two copies had drifted apart: the review of a session-49 fix). ``routing``: the rules the
    jobs were queued with, where the caller read them (``routed_groups``)."""
    images = db.images.query(ImageQuery(folder_id=folder_id, sort="id"))
    if not images:
        return "nothing to run: the folder holds no images"
    if not routed_groups(db, images, families, routing):
        return (f"nothing to run: the project's model routing gives this folder's images none of the families "
                f"{', '.join(families)}")
    return "nothing new to pre-label: every image has the answers of the versions that run on it"


def images_waiting(db: "Database") -> set[int]:
    """Images queued or running in an unfinished pre-label job: automatic pre-labelling of a
    reopened folder must not queue them a second time."""
    out: set[int] = set()
    for job in db.jobs.list(statuses=(JobStatus.QUEUED, JobStatus.RUNNING), kind=PRELABEL):
        for status in (ItemStatus.QUEUED, ItemStatus.RUNNING):
            out.update(it.image_id for it in db.jobs.items(job.id, status=status) if it.image_id is not None)
    return out


def job_status(db: "Database", job_id: int) -> JobProgress:
    job = db.jobs.get(job_id)
    if job is None:
        raise PrelabelError(f"job {job_id} does not exist")
    return progress_of(job)


def progress_of(job: "JobInfo") -> JobProgress:
    """A job row as progress; the rate is the average since the job started (the CLI's view;
    the station's jobs panel measures recent progress itself, see ``job_pace``)."""
    rate = eta = None
    processed = job.progress_done + job.progress_failed
    if job.started_at is not None and processed:
        end = job.finished_at or datetime.now(timezone.utc)
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=timezone.utc)
        end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
        elapsed = (end - started).total_seconds()
        if elapsed > 0:
            rate = processed / elapsed
            if not job.finished and not job.cancel_requested:  # cancelling: only the images in flight are left,
                # not the total (a session-51 audit: an ETA counted to the total after Cancel)
                eta = max(0.0, job.progress_total - processed) / rate
    return JobProgress(
        job_id=job.id, kind=job.kind, state=job.status.value, done=job.progress_done,
        failed=job.progress_failed, total=job.progress_total, cancel_requested=job.cancel_requested,
        message=job.message, error=job.error, images_per_second=rate, eta_seconds=eta,
        started_at=job.started_at, finished_at=job.finished_at,
    )


def cancel_job(db: "Database", job_id: int) -> JobProgress:
    """Ask the job to stop: queued images are dropped now, images in flight finish first."""
    db.jobs.request_cancel(job_id)
    return job_status(db, job_id)


@dataclass(frozen=True)
class FailedImage:
    """An image a job could not pre-label, and why; plain data for any thread."""

    job_id: int
    image_id: int | None
    path: str
    reason: str


def failed_image_list(db: "Database", job_id: int, limit: int = 200) -> list[FailedImage]:
    """The first ``limit`` images the job could not pre-label, with their reasons."""
    return [FailedImage(job_id, it.image_id, it.image_path or f"image {it.image_id}", it.error or "unknown error")
            for it in db.jobs.failed_items(job_id, limit)]


def failed_images(db: "Database", job_id: int) -> list[tuple[str, str]]:
    """(path, reason) of every image the job could not pre-label."""
    return [(f.path, f.reason) for f in failed_image_list(db, job_id, limit=1_000_000)]


# The exit status of ``python main.py worker`` that stopped because a newer version of the station upgraded the
# database's schema under it (``newer_schema_stop``): the station's Jobs dock says why instead of an exit code, and
# does not start it again (an older worker cannot open the upgraded database) once the database confirms it.
# 75 is sysexits.h's EX_TEMPFAIL (the work is not lost: a newer worker takes it); a status no runtime gives on its own.
# Why not 3, as before: 3 is also what the C runtime's abort() exits with on Windows, so a native crash there read as
# "upgraded by a newer version" and no worker was started again for the rest of the session (a session-52 audit).
NEWER_SCHEMA_EXIT = 75


def newer_schema_stop(revision: str | None = None) -> str:
    """Why a worker stopped on a database a newer version upgraded since it opened it (``revision``: the schema's now,
    where known): the worker's own line and the station's Jobs dock say it. Why: the older version's worker went on
    claiming jobs and storing answers into a schema it does not know, while its window had stopped saving (a session-52
    audit)."""
    said = f" (schema revision {revision})" if revision else ""
    return (f"the database was upgraded by a newer version{said}; this worker stops: start the newer version's station "
            "or worker")


@dataclass
class WorkerHandle:
    """A worker subprocess started by ``start_worker_process``."""

    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ask the worker to finish its batch and leave (SIGTERM / CTRL_BREAK); kill it if it won't."""
        if self.alive():
            if os.name == "nt":
                self.process.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]  # Windows only
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker_process(db_url: str, device: str = "auto", *, once: bool = False, batch_size: int | None = None,
                         log_path: str | os.PathLike[str] | None = None, extra_args: Sequence[str] = ()) -> WorkerHandle:
    """Start ``python main.py worker`` on ``db_url`` as a separate process (models never load here);
    the URL goes in the child's environment, not on its command line (it may hold a password)."""
    child = station_command(db_url, "worker", "--device", device)
    cmd = list(child.argv)
    if once:
        cmd.append("--once")
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    cmd += list(extra_args)
    log = Path(log_path) if log_path is not None else None
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0  # type: ignore[attr-defined]  # Windows only
    try:
        proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, creationflags=flags, env=child.environment())
    finally:
        if not isinstance(out, int):  # the log file, not DEVNULL
            out.close()
    return WorkerHandle(proc, log)
