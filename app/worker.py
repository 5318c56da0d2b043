"""The worker process: claims pre-label job items, runs the engine, writes results as it goes.

Never losing work:
- items are claimed in batches and each batch's predictions are committed in the same
  transaction that marks its items done, so a crash loses at most the batches in flight (the
  one running and the one being decoded); those are requeued and redone;
- a heartbeat thread keeps the worker's claim alive during long batches; claims of workers
  whose heartbeat went stale (or, on this host, whose process is gone) are requeued;
- an image already predicted by a version is never predicted again by it (checked at claim
  time, and the database's unique (image, model version) constraint backs this up);
- cancel: the heartbeat reports cancelled jobs; their items not yet run are given back;
- a newer version of the station upgraded the database since the worker opened it (``Worker._check_schema``, before
  each claim and each batch's store): it stops, writing nothing more (``SchemaChangedError``).

Several workers may share one database: claiming is atomic (SKIP LOCKED on PostgreSQL).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from app.services.artifacts import ArtifactStore, MapsUnwritable, store_for
from app.services.champion import COMPARE
from app.services.display import encode_mask_png
from app.services.flags import FlagSettings, flag_result
from app.services.model_files import local_model_dir
from app.services.prelabel import PRELABEL, UNLOADABLE, newer_schema_stop, refresh_bundled
from app.services.project_settings import load_project_settings
from app.services.reflag import reflag_where, stored_thresholds
from app.services.review_types import PREDICTION_FAILED, WORKER_STOPPED
from database.dto import ClaimedBatch, JobInfo, JobItemInfo, PredictionIn
from database.errors import ConflictError, DatabaseError, SchemaChangedError
from database.jobs import STALE_AFTER_S, new_worker_id
from database.processes import ended_here
from inference.checkpoints import CheckpointError
from inference.device import AUTO_THREADS, ThreadGovernor, set_threads
from inference.engine import InspectionEngine
from inference.results import ImageResult

MAX_ENGINES = 3  # see Worker._engines
BLIND_RETRY_S = 60.0  # a job whose folder this machine does not see is claimed again after this long

if TYPE_CHECKING:
    from database.engine import Database

log = logging.getLogger("station.worker")


@dataclass
class WorkerOptions:
    device: str = "auto"
    batch_size: int = 8
    heartbeat_s: float = 5.0
    stale_after_s: float = STALE_AFTER_S
    poll_s: float = 1.0
    max_side: Mapping[str, int] | None = None
    # Model threads: None leaves the process's setting; "auto" re-chooses before each batch from how
    # busy the machine's other work is (inference.device.ThreadGovernor, ADR 0040). A batch of several
    # images runs on that many lanes of one thread each, a single image on that many threads (ADR 0041).
    threads: int | str | None = None
    # Claim items of these jobs alone (None: any): ``prelabel FOLDER`` runs its own jobs, not a station's backlog of
    # other folders' jobs first in its process (a session-46 probe: its images/s counted its 1 image over 7 run).
    jobs: tuple[int, ...] | None = None


@dataclass
class WorkerStats:
    batches: int = 0
    predicted: int = 0
    failed: int = 0
    skipped: int = 0
    per_family: dict[str, int] = field(default_factory=dict)
    batches_by_threads: dict[int, int] = field(default_factory=dict)  # "auto": the count each batch ran on
    # Wall seconds per stage of the batch loop, so a slow station can say where its time goes:
    # "claim" (claiming and starting the decode), "load" (loading models), "decode" (waiting for
    # decoding to finish), "models" and "store" (flags, mask PNGs, map files and the database commit).
    seconds: dict[str, float] = field(default_factory=dict)
    # job id -> its items this worker finished (done or failed, as the database took them): what ``prelabel`` calls
    # "in this run"; the job's counts also hold other workers' (a session-51 audit: beside the station's worker it
    # said "112 in this run" and a rate over 120 images for the 40 its own worker did).
    finished: dict[int, int] = field(default_factory=dict)

    def count_finished(self, job_id: int, n: int) -> None:
        if n:
            self.finished[job_id] = self.finished.get(job_id, 0) + n

    def add_time(self, stage: str, since: float) -> float:
        """Add the time from ``since`` (``time.perf_counter``) to ``stage``; return now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


IDLE_WRITE_FLOOR_S = 10.0  # a busy machine pauses a healthy worker's Python between two statements for a second or more


def idle_write_limit_s(stale_after_s: float) -> float:
    """How long a worker's write transaction may wait on the worker before the server ends it: half the stale-after
    time, so a frozen worker's row locks are gone by the time another worker recovers its claims, but never under
    IDLE_WRITE_FLOOR_S: at one second the server ended a healthy worker's save on a loaded 2-core CI machine (session
    51; its claims were then recovered only after the failure). With a stale-after under twice the floor, a frozen
    worker's locked images wait for the floor, and ``requeue_stale`` keeps its row until they are recovered."""
    return max(IDLE_WRITE_FLOOR_S, stale_after_s / 2)


def mask_png(mask: np.ndarray) -> bytes:
    """A predicted mask as stored: the station's mask encoder at level 6 (a mask per answered frame)."""
    return encode_mask_png(mask, level=6)


def describe(exc: BaseException) -> str:
    """An exception as one line a person can report: its type and first line, no traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def job_versions(params: Mapping) -> dict[str, int]:
    """The model version per family a prelabel job names; a malformed row is a ValueError."""
    try:
        return {str(f): int(v) for f, v in params["model_versions"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"malformed prelabel job parameters ({describe(exc)})") from None


def job_named(params: Mapping) -> frozenset[str]:
    """The families whose versions the job's routing rule names: their answers count for its images."""
    named = params.get("named")
    return frozenset(str(f) for f in named) if isinstance(named, list) else frozenset()


def job_profile(params: Mapping) -> str | None:
    """The speed profile a prelabel job records (None: each card's default; see ``inference.profiles``)."""
    profile = params.get("profile")
    return str(profile) if profile else None


class _Heartbeat(threading.Thread):
    """Proves the worker alive every few seconds, even while a long batch runs."""

    def __init__(self, db: "Database", worker_id: str, every_s: float) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.db, self.worker_id, self.every_s = db, worker_id, every_s
        self.cancelled: frozenset[int] = frozenset()
        self._halt = threading.Event()

    def beat(self) -> frozenset[int]:
        self.cancelled = self.db.jobs.heartbeat(self.worker_id)
        return self.cancelled

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a locked or unreachable database: try again next beat
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()


class Worker:
    def __init__(self, db: "Database", options: WorkerOptions | None = None, worker_id: str | None = None,
                 artifacts: ArtifactStore | None = None) -> None:
        self.db = db
        self.options = options or WorkerOptions()
        self.id = worker_id or new_worker_id()
        self._blind: dict[int, float] = {}  # job id -> until when its folder is known not to be seen here
        # Where anomaly maps go: the project's maps folder (read again with each batch's thresholds, so a
        # folder set at any station applies from the next batch), else this station's own (ADR 0061).
        self._fixed_artifacts = artifacts is not None
        self._maps_folder = ""
        self.artifacts = artifacts or store_for(db.url)
        # A transaction of this worker left waiting on it (the process frozen mid-commit) is ended by the server well
        # before other workers call it stale, so its claims are free to recover then (a session-51 audit: they stayed
        # locked, skipped, and the job never finished); once resumed, its commit fails and its claims are gone.
        db.end_idle_writes_after(idle_write_limit_s(self.options.stale_after_s))
        self.stats = WorkerStats()
        # Loaded engines by (family, version) set, least recently used first. Two batches are in
        # flight at once (one on the models, the next decoding), possibly of different jobs with
        # different models (model routing makes one job per family set): keeping MAX_ENGINES >= 3
        # means switching never closes an engine a batch in flight still needs.
        self._engines: OrderedDict[tuple, InspectionEngine] = OrderedDict()
        self._unloadable: tuple[tuple | None, str] = (None, "")  # a model set that failed to load, and why
        self._stop = threading.Event()
        self._heartbeat = _Heartbeat(db, self.id, self.options.heartbeat_s)
        self._last_recovery = 0.0
        self._flags = FlagSettings()  # the project's thresholds as last read (see _flag_settings)
        self._governor = ThreadGovernor() if self.options.threads == AUTO_THREADS else None
        self._cores = self.options.threads if isinstance(self.options.threads, int) else 1  # the next batch's lanes
        if isinstance(self.options.threads, int):
            set_threads(self.options.threads)

    # -- life cycle ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in hand, give back what is claimed, and leave."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT) + ((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()):
            signal.signal(sig, lambda *_: self.request_stop())

    def run(self, once: bool = False, until: Callable[[], bool] | None = None,
            on_batch: Callable[[ClaimedBatch, list[ImageResult]], None] | None = None) -> WorkerStats:
        """Work until stopped; ``once``: until no item is left; ``until``: until it returns True."""
        self.db.jobs.register_worker(self.id)
        self._heartbeat.start()
        pending: tuple[ClaimedBatch, list] | None = None
        current: tuple[ClaimedBatch, list] | None = None  # claimed, not yet stored or given back
        in_hand: ClaimedBatch | None = None  # the batch on the models: tried, should the worker die now
        outdated: SchemaChangedError | None = None  # a newer version upgraded the database: nothing more is written
        try:
            while not self._stop.is_set():
                self._recover()
                if until is not None and until():
                    break
                current = pending or self._claim_and_decode()
                pending = None
                if current is None:
                    if once:
                        break
                    self._stop.wait(self.options.poll_s)
                    continue
                # Claim and start decoding the next batch while this one runs on the models.
                if not self._stop.is_set() and not (until is not None and until()):
                    pending = self._claim_and_decode(ahead=True)
                in_hand = current[0]
                if self._governor is not None:
                    self._govern_threads(self._governor)
                results = self._process(*current)
                in_hand = None
                done, current = current[0], None
                if on_batch is not None and results is not None:
                    on_batch(done, results)
        except Exception as exc:  # not BaseException: Ctrl-C and SystemExit are stops, not failed attempts
            if isinstance(exc, SchemaChangedError):   # the database refuses this process's writes now: none is tried
                outdated = exc
            # Leaving on an error with a batch on the models: its items were tried, so the give-back
            # counts (unregister's would not), and a batch that kills every restart fails for good.
            elif in_hand is not None and in_hand.items:
                try:
                    if isinstance(exc, MapsUnwritable) or (isinstance(exc, DatabaseError)
                                                           and not isinstance(exc, ConflictError)):
                        # the database failed (unreachable, locked) or the maps folder cannot be written, not these
                        # images: given back untried (a session-44 probe: three connection drops while storing failed
                        # a batch for good, the database's error shown as each image's pre-label error); a refusal of
                        # the data counts
                        self.db.jobs.release_items(self.id, [it.id for it in in_hand.items])
                        if isinstance(exc, MapsUnwritable):  # the Jobs dock says why the job waits
                            self.db.jobs.note(in_hand.job.id, f"{exc}; its images wait, none was failed for it")
                    else:
                        self._retry(in_hand.items, f"{WORKER_STOPPED}{describe(exc)}")
                except DatabaseError as db_exc:
                    log.warning("could not give back or count the attempt (%s)", db_exc)
            raise
        finally:
            self._heartbeat.stop()
            self._heartbeat.join(timeout=30)  # no beat in flight once the worker signs off
            if outdated is not None:
                log.error(newer_schema_stop(outdated.revision))
                held = sum(len(b[0].items) for b in (current, pending) if b is not None)
                if held:
                    log.warning("the %d image(s) this worker claimed are not given back from here (nothing more is "
                                "written to the upgraded database): they go back to the queue when a worker of the "
                                "newer version finds this one gone (its process ended, or its heartbeat stale)", held)
            else:
                try:
                    if pending is not None:
                        self.db.jobs.release_items(self.id, [it.id for it in pending[0].items])
                    self.db.jobs.unregister_worker(self.id)
                except DatabaseError as exc:  # unreachable now: our claims go stale and are requeued
                    log.warning("could not give back claimed images (%s); they are requeued once "
                                "this worker's heartbeat is stale", exc)
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
        return self.stats

    def _govern_threads(self, governor: ThreadGovernor) -> None:
        """``--threads auto``: the model threads and the lanes for the batch about to run (logged when they
        change); ``batches_by_threads`` counts the lanes each batch ran in."""
        before = (governor.threads, governor.lanes())
        threads = governor.apply()
        lanes = self._cores = governor.lanes()
        if (threads, lanes) != before or not self.stats.batches_by_threads:
            log.info("models on %d thread%s, batches in %d lane%s (%.1f cores free over the last batch)", threads,
                     "" if threads == 1 else "s", lanes, "" if lanes == 1 else "s", governor.free_cores or 0.0)
        self.stats.batches_by_threads[lanes] = self.stats.batches_by_threads.get(lanes, 0) + 1

    # -- recovery ------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        """Raise ``SchemaChangedError`` when a newer version of the station upgraded the database since this worker
        opened it (``Database.schema_changed``: one small read; the database refuses this process's writes from then
        on). Asked before each claim, recovery and store, so that an older worker stops rather than go on claiming jobs
        and storing answers into a schema it does not know while its window has stopped saving (a session-52 audit).
        Its claims are not given back (a write): a worker of the newer version takes them back once this one is
        gone."""
        changed = self.db.schema_changed()
        if changed is not None:
            raise changed

    def _recover(self) -> None:
        """Requeue work of dead workers: stale heartbeats anywhere, vanished processes on this host."""
        now = time.monotonic()
        if now - self._last_recovery < min(self.options.stale_after_s / 2, 10.0):
            return
        self._check_schema()   # requeueing writes
        self._last_recovery = now
        # A vanished process crashed: its claims count as attempts, so an image that kills
        # every worker fails after a few tries instead of looping (unregister would not count).
        dead = [w.id for w in self.db.jobs.workers() if w.id != self.id and ended_here(w.host, w.pid)]
        if dead:
            log.info("workers %s are gone from this host; recovering their claims", ", ".join(dead))
        n = self.db.jobs.requeue_stale(timeout_s=self.options.stale_after_s, dead_workers=dead)
        if n:
            log.info("requeued %d items/jobs of stale workers", n)

    # -- one batch -----------------------------------------------------------------------------
    def _engine_for(self, versions: Mapping[str, int], profile: str | None = None) -> InspectionEngine:
        key = (tuple(sorted(versions.items())), profile)
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        dirs = {}
        for family, vid in versions.items():
            v = self.db.model_versions.get(int(vid))
            if v is None:
                raise CheckpointError(f"model version {vid} ({family}) no longer exists")
            dirs[family] = str(local_model_dir(self.db, v))  # registered elsewhere: the database's copy (ADR 0062)
        started = time.perf_counter()
        engine = InspectionEngine(dirs, device=self.options.device, max_side=self.options.max_side, profile=profile)
        self.stats.add_time("load", started)
        self._engines[key] = engine
        for f, info in engine.loaded().items():
            log.info("loaded %s model %s from %s (half precision: %s, profile: %s)", f, info.name, info.path,
                     info.half, info.profile or "none named")
        while len(self._engines) > MAX_ENGINES:
            _key, oldest = self._engines.popitem(last=False)
            oldest.close()
        return engine

    def _claim_and_decode(self, ahead: bool = False) -> tuple[ClaimedBatch, list] | None:
        """The next batch, its files decoding; ``ahead``: claimed while another batch is held (on the models next)."""
        started, loading = time.perf_counter(), self.stats.seconds.get("load", 0.0)
        try:
            self._check_schema()
            return self._claim_and_submit(ahead)
        finally:  # models loaded on the way are "load", not "claim"
            self.stats.add_time("claim", started + self.stats.seconds.get("load", 0.0) - loading)

    def _claim_and_submit(self, ahead: bool = False) -> tuple[ClaimedBatch, list] | None:
        now = time.monotonic()
        while True:
            blind = [job for job, until in self._blind.items() if until > now]
            batch = self.db.jobs.claim_items(self.id, self.options.batch_size, kinds=[PRELABEL, COMPARE],
                                             skip_jobs=blind, only_jobs=self.options.jobs)
            if batch is None:
                return None
            batch = self._leave_unseen_folders(batch, now)
            if not batch.items:
                continue
            try:
                versions = job_versions(batch.job.params)
                key = (tuple(sorted(versions.items())), job_profile(batch.job.params))
            except (ValueError, RuntimeError) as exc:
                self._fail_unloadable(batch, f"{UNLOADABLE}{exc}")
                return None
            if key in self._engines:
                break
            if self._unloadable[0] == key:
                reason, self._unloadable = self._unloadable[1], (None, "")
                self._fail_unloadable(batch, reason)
                return None
            # Models are loaded with nothing claimed: a worker killed while loading them (the OOM killer) had each
            # image it held counted as tried, and three such kills failed them for good as "stopped responding"
            # although no model had seen them (a session-47 audit). The batch is given back untried and claimed anew.
            self.db.jobs.release_items(self.id, [it.id for it in batch.items])
            if ahead:  # the batch in hand is held: the models load when it is done, with nothing claimed (the review)
                return None
            # A bundled model the install's update replaced is retired first (its one home, ``refresh_bundled``), so
            # the new files' answers are never stored under the old version: a session-52 audit's updated worker did,
            # and the next listing retired the old version with them, leaving the new one none for those images.
            refresh_bundled(self.db)
            if self._retarget(batch.job, versions):
                continue   # claimed anew: the job names the versions that replaced its bundled ones now
            try:
                self._engine_for(versions, key[1])
            except (CheckpointError, ValueError, RuntimeError) as exc:
                self._unloadable = (key, f"{UNLOADABLE}{exc}")  # the next claim of this job fails it
        engine = self._engine_for(versions, key[1])
        todo, skip = self._split_done(batch.items, versions)
        if skip:
            self.stats.count_finished(batch.job.id, self.db.jobs.complete_items(self.id, [it.id for it in skip]))
            self.stats.skipped += len(skip)
        missing = {it.id: "image no longer in the database" for it in todo if it.image_path is None}
        if missing:
            self.stats.count_finished(batch.job.id, self.db.jobs.fail_items(self.id, missing))
            self.stats.failed += len(missing)
        todo = [it for it in todo if it.image_path is not None]
        pending = engine.submit_decode([(it, it.image_path) for it in todo if it.image_path is not None], list(versions))
        return ClaimedBatch(batch.job, tuple(todo)), pending

    def _retarget(self, job: JobInfo, versions: Mapping[str, int]) -> bool:
        """Move a pre-label job that names a bundled version an update of the install replaced onto the version that
        took its place (``ModelVersionRepository.replaced_by``; ADR 0079), in the database, so its images are
        answered, and their answers filed, under the new version, and every worker and window reads the job alike.
        Before, its images failed with "replaced by an update …; pre-label again" (a session-52 audit): queued work
        the inspector had to find and queue again. A routing rule names a version by name, so the rule that named
        the old one names the new one now and the job's answers count as before. A compare job (a challenger under
        review) compares the versions it names: it is not moved, nor a version with no successor (that fails with
        its reason). True when the job names other versions now (claim again)."""
        if job.kind != PRELABEL:
            return False
        successors = {f: new for f, vid in versions.items() if (new := self.db.model_versions.replaced_by(vid))}
        if not successors:
            return False
        if self.db.jobs.retarget(job.id, {f: (versions[f], new.id) for f, new in successors.items()}):
            for family, new in successors.items():
                log.info("job %d: the %s model it was queued with was replaced by an update of the station; its "
                         "images run the new %r", job.id, family, new.name)
        return True

    def _fail_unloadable(self, batch: ClaimedBatch, reason: str) -> None:
        """A model that cannot load fails the job's items with the reason (not retried forever)."""
        log.error(reason)
        self.stats.count_finished(batch.job.id, self.db.jobs.fail_items(self.id, {it.id: reason for it in batch.items}))
        self.stats.failed += len(batch.items)

    def _leave_unseen_folders(self, batch: ClaimedBatch, now: float) -> ClaimedBatch:
        """Give back the items whose folder this machine does not see (another station's disk, a share
        mounted elsewhere, an unplugged drive): they stay queued for a worker that sees it, and the job says
        why. Before, this worker failed each of them as "file not found" and wrote that error on the image,
        shown at every station, also where the file was there. This worker leaves the job alone for
        ``BLIND_RETRY_S`` (the drive may come back)."""
        roots = {it.folder_root for it in batch.items if it.folder_root}
        unseen = {r for r in roots if not os.path.isdir(r)}
        if not unseen:
            return batch
        leave = [it.id for it in batch.items if it.folder_root in unseen]
        self.db.jobs.release_items(self.id, leave)
        self._blind[batch.job.id] = now + BLIND_RETRY_S
        where = ", ".join(sorted(unseen))
        self.db.jobs.note(batch.job.id, f"waiting for a worker that sees {where} (the worker on "
                                        f"{socket.gethostname()} does not)")
        log.warning("job %d: %d image(s) left queued: this machine does not see %s", batch.job.id, len(leave), where)
        return ClaimedBatch(batch.job, tuple(it for it in batch.items if it.folder_root not in unseen))

    def _split_done(self, items: tuple[JobItemInfo, ...], versions: Mapping[str, int]
                    ) -> tuple[list[JobItemInfo], list[JobItemInfo]]:
        ids = [it.image_id for it in items if it.image_id is not None]
        done = set(ids)
        for vid in versions.values():
            stored = self.db.predictions.for_images(ids, vid)
            done &= set(stored)
            # An answer whose anomaly map this worker cannot read (made by a worker with another maps
            # folder, or a cleared cache) is made again, so that pre-labelling the image brings it back;
            # one only in this worker's own folder is copied into the project's maps folder (ADR 0061).
            refs = {i: p.anomaly_map_ref for i, p in stored.items() if i in done and p.anomaly_map_ref}
            if refs:
                self._read_project()
                done -= {i for i, ref in refs.items() if not self.artifacts.ensure_in_root(ref)}
        return [it for it in items if it.image_id not in done], [it for it in items if it.image_id in done]

    def _process(self, batch: ClaimedBatch, pending: list) -> list[ImageResult] | None:
        if not batch.items:
            return []
        job = batch.job
        if job.id in self._heartbeat.beat():
            self.db.jobs.release_items(self.id, [it.id for it in batch.items])  # cancelled: leave it
            return None
        versions = job_versions(job.params)
        settings = self._flag_settings(job.params)
        engine = self._engine_for(versions, job_profile(job.params))
        started = time.perf_counter()
        decoded = engine.collect(pending)
        self.stats.add_time("decode", started)
        try:
            results = self._predict_and_store(engine, batch, decoded, versions, settings)
        except (DatabaseError, MapsUnwritable):
            raise
        except Exception as exc:  # noqa: BLE001 - any error of a model: see the loop below
            if len(decoded) == 1:
                self._retry(batch.items, f"{PREDICTION_FAILED}{describe(exc)}")
                return None
            log.warning("batch of %d raised %s; running its images one by one", len(decoded), describe(exc))
            # One image alone at a time, so a poison image costs an attempt of that image only.
            results = []
            for one in decoded:
                item: JobItemInfo = one[0]  # type: ignore[assignment]
                try:
                    results += self._predict_and_store(engine, ClaimedBatch(job, (item,)), [one], versions, settings)
                except (DatabaseError, MapsUnwritable):
                    raise
                except Exception as item_exc:  # noqa: BLE001
                    self._retry((item,), f"{PREDICTION_FAILED}{describe(item_exc)}")
        self.stats.batches += 1
        return results

    def _predict_and_store(self, engine: InspectionEngine, batch: ClaimedBatch, decoded: list,
                           versions: Mapping[str, int], settings: FlagSettings) -> list[ImageResult]:
        started = time.perf_counter()
        results = engine.predict_decoded(decoded, list(versions), lanes=self._cores)
        started = self.stats.add_time("models", started)
        self._check_schema()   # the answers of a schema this worker knows, or none
        self._store(batch, results, versions, settings)
        self.stats.add_time("store", started)
        return results

    def _retry(self, items: Sequence[JobItemInfo], reason: str) -> None:
        """Give back items whose processing raised, the attempt counted; failed for good at the limit."""
        log.error("image(s) %s: %s", ", ".join(str(it.image_id) for it in items), reason)
        failed = set(self.db.jobs.retry_items(self.id, {it.id: reason for it in items}))
        for it in items:
            if it.id in failed:
                self.stats.count_finished(it.job_id, 1)
                if it.image_id is not None:
                    self.db.images.set_error(it.image_id, reason)
        self.stats.failed += len(failed)

    def _flag_settings(self, params: Mapping) -> FlagSettings:
        """A job's explicit thresholds (``submit_prelabel(flag_settings=…)``), else the project's
        current ones, read from the database for each batch once its models have run: a threshold
        changed in any station applies from the next batch on (``reflag`` re-flags what is stored).
        Broken stored settings keep the last usable ones, with the reason in the log. The project's
        maps folder is taken from the same read."""
        self._read_project()
        if params.get("flags") is not None:
            return FlagSettings.from_dict(params["flags"])
        return self._flags

    def _read_project(self) -> None:
        """The project's thresholds and maps folder as stored now (broken settings keep the last usable)."""
        try:
            project = load_project_settings(self.db)
        except ValueError as exc:
            log.warning("%s; flagging with the last usable thresholds", exc)
            return
        self._flags = project.flags
        if not self._fixed_artifacts and project.maps_folder != self._maps_folder:
            self._maps_folder = project.maps_folder
            self.artifacts = store_for(self.db.url, project.maps_folder)
            log.info("anomaly maps go to %s", self.artifacts.root)

    def _store(self, batch: ClaimedBatch, results: list[ImageResult], versions: Mapping[str, int],
               settings: FlagSettings) -> None:
        preds: list[PredictionIn] = []
        errors: dict[int, str] = {}
        flagged: list[int] = []
        clear: list[int] = []
        priorities: dict[int, float] = {}
        sizes: dict[int, tuple[int, int]] = {}
        folder_of = self._folders_with_own_threshold(results, settings)
        named = job_named(batch.job.params) if batch.job.kind != COMPARE else frozenset()
        for r in results:
            item: JobItemInfo = r.key  # type: ignore[assignment]
            assert item.image_id is not None  # decoded, so its image row exists (pathless items left above)
            if not r.ok:
                errors[item.id] = r.error or "unreadable image"
                continue
            if r.width and r.height:
                sizes[item.image_id] = (r.width, r.height)
            flags = flag_result(r, settings.for_folder(folder_of.get(item.image_id), versions.get("anomaly")))
            (flagged if flags.flagged else clear).append(item.image_id)
            priorities[item.image_id] = flags.priority
            for family, vid in versions.items():
                pred = self._prediction(family, item.image_id, vid, r, flags.for_family(family))
                preds.append(dataclasses.replace(pred, counts=True) if family in named else pred)
                self.stats.per_family[family] = self.stats.per_family.get(family, 0) + 1
        # Image-level flags first: if we die before the commit below, the items are redone and
        # these idempotent writes repeated; the reverse order could leave done items unflagged.
        # A compare job (a challenger under review) stores its predictions only: the queue's
        # flags and priorities stay those of the active versions.
        if batch.job.kind != COMPARE:
            if flagged:
                self.db.images.set_flagged(flagged, True)
            if clear:
                self.db.images.set_flagged(clear, False)
            self.db.images.set_priorities(priorities)
        self.db.images.set_decoded(sizes)
        # an image re-indexed as changed since its claim goes back to the queue (complete_items, fail_items)
        read_bytes = {it.image_id: it.content_hash for it in batch.items if it.image_id is not None}
        if errors:  # the file's own reason, stored on the image only while this worker still holds its item
            self.stats.count_finished(batch.job.id, self.db.jobs.fail_items(self.id, errors, read_bytes,
                                                                            image_error=True))
        ok_items = [r.key.id for r in results if r.ok]  # type: ignore[attr-defined]
        stored = 0
        if ok_items:
            # what was stored, not what was run: a worker that stalled past its claims ran them and stored nothing,
            # and still said "20 images predicted" beside the one that took them over (a session-47 audit)
            stored = self.db.jobs.complete_items(self.id, ok_items, preds, read_bytes)
            done = [r.key.image_id for r in results if r.ok]  # type: ignore[attr-defined]
            if batch.job.kind == COMPARE:  # only where it stored the champion's own first answers, which count (it
                # left them unflagged, and a later "only new" pre-label skipped them as done: a session-43 probe)
                active = set(self.db.model_versions.active_ids().values())
                done = sorted({p.image_id for p in preds if p.model_version_id in active})
            if done:  # the flags above read this job's families; the image's are all the answers that count
                # the thresholds as stored when each folder's re-flag holds its lock (a job's own stay its own): a
                # threshold change's re-flag that ran meanwhile is not undone with the ones this batch began with;
                # ``settings`` is the job's own (``_flag_settings``) when it has them
                own = batch.job.params.get("flags")
                reflag_where(self.db, done, settings if own is not None else stored_thresholds(self.db, self._flags))
        self.stats.predicted += stored
        self.stats.count_finished(batch.job.id, stored)
        self.stats.failed += len(errors)

    def _folders_with_own_threshold(self, results: list[ImageResult], settings: FlagSettings) -> dict[int, int]:
        """image id -> folder id, read only when some folder has its own anomaly threshold."""
        if not settings.folder_thresholds:
            return {}
        ids = [r.key.image_id for r in results if r.ok]  # type: ignore[attr-defined]
        return {im.id: im.folder_id for im in self.db.images.get_many(ids)}

    def _prediction(self, family: str, image_id: int, version_id: int, r: ImageResult,
                    flags: tuple[str, ...]) -> PredictionIn:
        pred = self._family_prediction(family, image_id, version_id, r, flags)
        return dataclasses.replace(pred, in_domain=r.in_domain.get(family), domain_note=r.domain_notes.get(family))

    def _family_prediction(self, family: str, image_id: int, version_id: int, r: ImageResult,
                           flags: tuple[str, ...]) -> PredictionIn:
        if family == "classifier" and r.classifier is not None:
            c = r.classifier
            return PredictionIn(image_id, version_id, class_scores=c.score_dict(), predicted_class=c.label,
                                confidence=c.confidence, flags=flags)
        if family == "segmenter" and r.segmenter is not None:
            return PredictionIn(image_id, version_id, mask_png=mask_png(r.segmenter.mask),
                                target_count=r.segmenter.target_count, confidence=r.segmenter.confidence, flags=flags)
        if family == "anomaly" and r.anomaly is not None:
            return PredictionIn(image_id, version_id, anomaly_score=r.anomaly.score,
                                anomaly_map_ref=self.artifacts.put_map(r.anomaly.anomaly_map), flags=flags)
        raise RuntimeError(f"the engine returned no {family} result for image {image_id}")
