""""Label next" for one folder of the station: read its images, embed them, propose, count.

This is the part the GUI calls on a helper thread (it reads the database and image files and
may take seconds on a first visit; afterwards the embeddings come from the cache). What it
returns is plain data: the proposed image ids with their reasons and the labels-needed figure.

A folder can be large: up to ``MAX_LABELLED`` labelled images are used and at most ``MAX_POOL``
unlabelled ones are considered for a batch (beyond, stretches of the queue at seeded random
places, read as index walks), so a first visit to a folder of a million images reads and embeds
a bounded number of files.
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.paths import cache_dir
from app.services.image_embedding import EmbeddingCache, EmbeddingSource, embedding_source
from app.services.label_next import BATCH, Candidate, Proposal, propose
from app.services.labels_needed import COUNTER_FEATURES, TARGET_ACCURACY, LabelsNeeded, labels_needed
from app.services.wording import plural
from database.states import LabelSource

if TYPE_CHECKING:
    from database.engine import Database
    from database.review_queue import QueueQuery, QueueRow

MAX_POOL = 5000        # unlabelled images considered per batch (a sample beyond)
SAMPLE_STRETCHES = 10  # a larger folder is sampled in this many stretches at random places
MAX_LABELLED = 5000    # labelled images the curve and the fit read (the first by name beyond)
OUT_OF_DOMAIN = "out_of_domain"  # the prediction flag the out-of-domain work sets
LABELLED_STATES = ("accepted", "corrected")
# The source a label saved on one of the proposals carries (the window's review controller asks; ADR 0049).
LABEL_NEXT_SOURCE: str = LabelSource.LABEL_NEXT.value
# A classifier's batch is chosen in the retrainer's own features (what the retrain command fits and the counter
# reads), not in the cheap texture embedding: on train-only splits of magnetic tiles the command's accuracy at 240
# labels in this order rose from 0.869 to 0.904 and macro F1 from 0.750 to 0.824 (benchmarks/results/lnhead.md,
# ADR 0073). They cost about 40 ms an image, read once per file content; until a folder's are all read, the batch
# is chosen on the texture embedding and the reading goes on at the next count.
CHOICE_SPACE = COUNTER_FEATURES


@dataclass(frozen=True)
class LabelNextResult:
    """What the queue dock shows: the batch (best first) and the counter."""

    folder_id: int
    proposal: Proposal
    needed: LabelsNeeded | None         # the counter, when the folder's classifier images are one version's
    considered: int = 0                 # images read (labelled + sampled unlabelled)
    problems: tuple[str, ...] = field(default_factory=tuple)  # unreadable files, one line each
    labelled: frozenset[int] = frozenset()  # images read as labelled (here or at another station)
    # One counter per classifier version when routing rules give the folder's images to several (ADR 0060:
    # each is retrained from its own images' labels): (version name, its counter).
    scoped: tuple[tuple[str, LabelsNeeded | None], ...] = ()
    unrouted: int = 0                   # images read that the routing gives no classifier (not candidates)
    # Where the routing runs no classifier but the anomaly model (``label_next_anomaly``): (images reviewed normal,
    # how many more the next anomaly retraining needs); the batch is then the anomaly model's.
    anomaly: tuple[int, int] | None = None
    # Where that model learns from drawn regions too (``refit_with_defects``: tile_defect): (regions its retraining
    # would learn from, the least it needs); None where it does not.
    anomaly_regions: tuple[int, int] | None = None
    # Where the routing runs neither but the segmenter (``label_next_segmenter``, ADR 0071): (reviewed frames with a
    # mask, of them with a target, how many more the next segmenter retraining needs); the batch is the segmenter's.
    segmenter: tuple[int, int, int] | None = None
    reading: int = 0                    # images whose features for choosing (``CHOICE_SPACE``) are still to be read
    unreadable: int = 0                 # how many files could not be read (``problems`` lists the first 20 only)
    # Of the images the caller watches (the batch it shows), those whose file has gone (marked missing) or whose row
    # is no more: the queue no longer lists them, so they are no proposal left to label (``label_next_for_folder``).
    gone: frozenset[int] = frozenset()

    @property
    def pending(self) -> bool:
        """The retrainer's features are still being read, for choosing or for a counter (count again after a rest)."""
        counters = [n for _name, n in self.scoped] if self.scoped else [self.needed]
        return self.reading > 0 or any(n is not None and n.pending for n in counters)

    @property
    def reading_text(self) -> str:
        """What the line says while the batch is chosen on the quick embedding (empty once it is not)."""
        if not self.reading:
            return ""
        return (f"batch from quick features until the retrainer's are read ({self.considered - self.reading} of "
                f"{plural(self.considered, 'image')})")

    @property
    def reading_tip(self) -> str:
        if not self.reading:
            return ""
        return ("Label next chooses in the features the retrain command fits its head on (about 40 ms an image, read "
                "once per image and kept); until this folder's are read, the batch is chosen on quick features. "
                "docs/label_next.md, ADR 0073.\n")

    @property
    def counter_short(self) -> str:
        if self.anomaly is not None:
            from app.services.label_next_anomaly import counter_text
            return counter_text(*self.anomaly, regions=self.anomaly_regions)[0]
        if self.segmenter is not None:
            from app.services.label_next_segmenter import counter_text as frames_text
            return frames_text(*self.segmenter)[0]
        if self.scoped:
            return " · ".join(f"{name} {n.short if n is not None else 'unknown'}" for name, n in self.scoped)
        return self.needed.short if self.needed is not None else "more labels: unknown"

    @property
    def counter_text(self) -> str:
        if self.anomaly is not None:
            from app.services.label_next_anomaly import counter_text
            return counter_text(*self.anomaly, regions=self.anomaly_regions)[1]
        if self.segmenter is not None:
            from app.services.label_next_segmenter import counter_text as frames_text
            return frames_text(*self.segmenter)[1]
        if self.scoped:
            return "\n".join(f"{name}: {n.text}" for name, n in self.scoped if n is not None)
        return self.needed.text if self.needed is not None else ""


def _candidates(db: "Database", folder_id: int, seed: int
                ) -> tuple[list[Candidate], list[tuple[str, str | None]], list[str], list[str | None]]:
    """The folder's usable images as candidates, their (path, content hash), file names and classifier scopes
    (``_scopes``)."""
    from database.review_queue import QueueQuery, queue_count, queue_page

    reviewed = QueueQuery(folder_id=folder_id, states=LABELLED_STATES)
    labelled = [r for r in queue_page(db, reviewed, MAX_LABELLED).rows if r.label_class]
    unreviewed = QueueQuery(folder_id=folder_id, states=("unreviewed",))
    chosen = labelled + _sample(db, unreviewed, queue_count(db, unreviewed), seed)
    preds = db.predictions.current_for_images([r.image_id for r in chosen], "classifier")
    cands, files, names = [], [], []
    scopes = _scopes(db, folder_id, [r.rel_path for r in chosen])
    for r in chosen:
        p = preds.get(r.image_id)
        label = r.label_class if r.review_state in LABELLED_STATES else None
        cands.append(Candidate(r.image_id, label, dict(p.class_scores or {}) if p else {},
                               out_of_domain=bool(p and OUT_OF_DOMAIN in p.flags)))
        files.append((str(Path(r.root_path) / r.rel_path), r.content_hash))
        names.append(r.rel_path.replace("/", "__"))  # the export's flat names: groups as the retrainer forms them
    return cands, files, names, scopes


def _scopes(db: "Database", folder_id: int, rel_paths: list[str]) -> list[str | None]:
    """Per image, the classifier version whose retraining its label feeds: the one its routing rule names, else
    the active one (``retraining.version_scope``, ADR 0060); None where its rule does not run the classifier
    (an infrared frame beside tiles): not a candidate, its class is nobody's to learn."""
    from app.services.counting_versions import rule_version
    from app.services.project_settings import readable_routing

    routing = readable_routing(db)
    folder = db.folders.get(folder_id)
    active = db.model_versions.active("classifier")
    default = active.name if active is not None else "the classifier"
    out: list[str | None] = []
    for rel in rel_paths:
        runs, named = rule_version(routing, "classifier", rel, folder.name if folder is not None else "")
        out.append((named or default) if runs else None)
    return out


def _shares(pools: list[int], size: int) -> list[int]:
    """``size`` proposals split over groups in proportion to their unlabelled images: one to each group that has
    any while the batch has room, then by highest averages (the group whose pool per proposal is largest gets
    the next one)."""
    room = min(size, sum(pools))
    out = [0] * len(pools)
    for g in sorted(range(len(pools)), key=lambda k: -pools[k]):
        if pools[g] and sum(out) < room:
            out[g] = 1
    while sum(out) < room:
        g = max((k for k in range(len(pools)) if out[k] < pools[k]), key=lambda k: pools[k] / (out[k] + 1))
        out[g] += 1
    return out


def _merged(proposals: list[tuple[str, Proposal]], out_of_domain: frozenset[int]) -> Proposal:
    """One batch from several versions' batches: the out-of-domain picks of every batch first, then the rest (as
    each version's own batch has them: ranked by the interleave alone, a version's out-of-domain tile came third,
    after another version's sure steel strip; a session-50 audit); within each part every batch is spread evenly,
    in its own order; the reason says whose images it is."""
    ranked: list[tuple[bool, float, int]] = []
    for _name, prop in proposals:
        for first in (True, False):
            ids = [i for i in prop.image_ids if (i in out_of_domain) == first]
            ranked += [(not first, (k + 0.5) / len(ids), i) for k, i in enumerate(ids)]
    ranked.sort(key=lambda t: t[:2])
    reasons = {i: f"{name}: {prop.reasons.get(i, '')}".rstrip(": ") for name, prop in proposals for i in prop.image_ids}
    sources = {prop.uncertainty_from for _n, prop in proposals if prop.image_ids}
    source = next((kind for kind in ("labels", "classifier") if kind in sources), "none")   # the strongest said
    return Proposal(tuple(i for _later, _r, i in ranked), reasons, source)


def _sample(db: "Database", qq: "QueueQuery", count: int, seed: int) -> list["QueueRow"]:
    """Every row of ``qq`` up to ``MAX_POOL``; beyond, ``SAMPLE_STRETCHES`` stretches of the queue
    (by name) at seeded random positions: each an index walk, never the whole folder."""
    from database.review_queue import queue_page

    if count <= MAX_POOL:
        return queue_page(db, qq, MAX_POOL).rows
    size = MAX_POOL // SAMPLE_STRETCHES
    starts = sorted(random.Random(seed).sample(range(0, count - size + 1, size), SAMPLE_STRETCHES))
    return [r for start in starts for r in queue_page(db, qq, size, offset=start).rows]


def label_next_for_folder(db: "Database", folder_id: int, size: int = BATCH, target: float = TARGET_ACCURACY,
                          source: EmbeddingSource | None = None, cache_root: Path | None = None,
                          progress: Callable[[int, int], None] | None = None, seed: int = 0,
                          counter_budget_s: float | None = None, watched: Sequence[int] = ()) -> LabelNextResult:
    """The next batch to label in ``folder_id`` and how many labels the next retraining likely needs: per
    classifier version, where routing rules give the folder's images to several (ADR 0060). ``watched``: the batch
    the caller shows; those of its images whose file has gone are said (``gone``). A batch is kept on screen until it
    is labelled, and one whose file went stayed "left" for good: the batch never completed and P stayed on the image
    before it (a session-50 audit)."""
    result = _batch_and_counter(db, folder_id, size, target, source, cache_root, progress, seed, counter_budget_s)
    if not watched:
        return result
    present = {im.id for im in db.images.get_many(list(watched)) if not im.missing}
    return dataclasses.replace(result, gone=frozenset(i for i in watched if i not in present))


def _batch_and_counter(db: "Database", folder_id: int, size: int, target: float, source: EmbeddingSource | None,
                       cache_root: Path | None, progress: Callable[[int, int], None] | None, seed: int,
                       counter_budget_s: float | None) -> LabelNextResult:
    """``label_next_for_folder`` but the watched images."""
    all_cands, all_files, all_names, scopes = _candidates(db, folder_id, seed)
    keep = [i for i, sc in enumerate(scopes) if sc is not None]
    if not keep:   # no classifier runs here: the anomaly model's batch, else the segmenter's
        routed = _routed_rows(db, folder_id, seed)   # the folder read once for all
        # No candidate at all (every image reviewed, none with a class): still the anomaly or segmenter line where the
        # routing gives the classifier none of the folder's images. Seen in session 39: 40 bottles reviewed with
        # G / D read "more labels: unknown", and the Models dialog offered to retrain the classifier.
        if all_cands or not routed("classifier"):
            for family, result in (("anomaly", _anomaly_result), ("segmenter", _segmenter_result)):
                rows = routed(family)
                if rows:
                    return result(db, folder_id, rows, size, source, cache_root, progress, len(all_cands))
    cands = [all_cands[i] for i in keep]
    files, names = [all_files[i] for i in keep], [all_names[i] for i in keep]
    kept_scopes = [str(scopes[i]) for i in keep]
    x, problems, reading = _choice_vectors(files, source, cache_root, progress, counter_budget_s)
    groups: dict[str, list[int]] = {}
    for i, sc in enumerate(kept_scopes):
        groups.setdefault(sc, []).append(i)
    if len(groups) <= 1:
        proposal = propose(cands, x, size)
        needed = _counter(cands, files, names, target, seed, cache_root, counter_budget_s) if cands else None
        needed = _elsewhere_said(db, folder_id, needed)
        scoped: tuple[tuple[str, LabelsNeeded | None], ...] = ()
    else:
        pools = [sum(1 for i in idx if cands[i].label is None) for idx in groups.values()]
        parts = []
        counters = []
        budget = None if counter_budget_s is None else counter_budget_s / len(groups)
        for (name, idx), share in zip(groups.items(), _shares(pools, size)):
            sub = [cands[i] for i in idx]
            parts.append((name, propose(sub, x[idx], share) if share else Proposal(())))
            counters.append((name, _counter(sub, [files[i] for i in idx], [names[i] for i in idx], target, seed,
                                            cache_root, budget)))
        foreign = frozenset(c.image_id for c in cands if c.out_of_domain)
        proposal, needed, scoped = _merged(parts, foreign), None, tuple(counters)
    labelled = frozenset(c.image_id for c in cands if c.label is not None)
    return LabelNextResult(folder_id, proposal, needed, len(cands), tuple(problems[:20]), labelled, scoped,
                           len(all_cands) - len(cands), reading=reading, unreadable=len(problems))


def _elsewhere_said(db: "Database", folder_id: int, needed: LabelsNeeded | None) -> LabelsNeeded | None:
    """The counter reads this folder's labels; where other folders hold reviewed images, the retraining it predicts
    reads theirs too: said, so "9 so far, ≥ 11 more" is not read as the retraining's own count (it learnt from 21;
    a session-45 probe)."""
    if needed is None or needed.pending:
        return needed
    # only labels a classifier can read: reviewed infrared frames with masks and no class were counted (session 47)
    elsewhere = db.images.classified_count(LABELLED_STATES, outside_folder=folder_id)
    if elsewhere <= 0:
        return needed
    return dataclasses.replace(needed, text=f"{needed.text} (counted on this folder's labels; "
                                            f"{plural(elsewhere, 'reviewed image')} in other folders may feed the "
                                            "next retraining too, so it may need fewer)")


def _choice_vectors(files: list[tuple[str, str | None]], source: EmbeddingSource | None, cache_root: Path | None,
                    progress: Callable[[int, int], None] | None, budget_s: float | None
                    ) -> tuple[np.ndarray, list[str], int]:
    """The vectors a classifier's batch is chosen on, the unreadable files, and how many are still to be read:
    ``source``'s where one is given; else the retrainer's features (``CHOICE_SPACE``), read for at most
    ``budget_s`` per call (at least one image), and while some are left, the quick texture embedding instead."""
    root = cache_root or cache_dir() / "embeddings"
    if source is not None:
        x, problems = EmbeddingCache(root, source).vectors(files, progress)
        return x, problems, 0
    deadline = None if budget_s is None else time.monotonic() + budget_s
    x, problems = EmbeddingCache(root, embedding_source(CHOICE_SPACE)).vectors(files, progress, deadline)
    left = int(np.isnan(x).all(axis=1).sum()) - len(problems)
    if left:
        x, problems = EmbeddingCache(root, embedding_source()).vectors(files, progress)
    return x, problems, left


def _routed_rows(db: "Database", folder_id: int, seed: int) -> Callable[[str], list["QueueRow"]]:
    """The folder's reviewed images and a sample of its unreviewed ones, read once; returned as: family -> those the
    routing gives that family."""
    from app.services.counting_versions import rule_version
    from app.services.project_settings import readable_routing
    from database.review_queue import QueueQuery, queue_count, queue_page

    folder = db.folders.get(folder_id)
    name = folder.name if folder is not None else ""
    routing = readable_routing(db)
    reviewed = queue_page(db, QueueQuery(folder_id=folder_id, states=LABELLED_STATES), MAX_LABELLED).rows
    unreviewed_q = QueueQuery(folder_id=folder_id, states=("unreviewed",))
    rows = reviewed + _sample(db, unreviewed_q, queue_count(db, unreviewed_q), seed)
    return lambda family: [r for r in rows if rule_version(routing, family, r.rel_path, name)[0]]


def _vectors(rows: list["QueueRow"], source: EmbeddingSource | None, cache_root: Path | None,
             progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, list[str]]:
    files = [(str(Path(r.root_path) / r.rel_path), r.content_hash) for r in rows]
    cache = EmbeddingCache(cache_root or cache_dir() / "embeddings", source or embedding_source())
    return cache.vectors(files, progress)


def _anomaly_result(db: "Database", folder_id: int, rows: list["QueueRow"], size: int,
                    source: EmbeddingSource | None, cache_root: Path | None,
                    progress: Callable[[int, int], None] | None, unrouted: int) -> LabelNextResult:
    """The anomaly model's batch and counter over ``rows``, the folder's images the routing gives it and no
    classifier (``label_next_anomaly``)."""
    from app.services.champion import anomaly_threshold
    from app.services.label_next_anomaly import AnomalyCandidate, normal_needed, propose_anomaly, regions_learnt
    from app.services.project_settings import ProjectSettingsError, load_project_settings

    try:
        flags = load_project_settings(db).flags
    except (ProjectSettingsError, ValueError):
        flags = None
    preds = db.predictions.current_for_images([r.image_id for r in rows], "anomaly")
    thresholds: dict[int, float | None] = {}
    cands = []
    for r in rows:
        p = preds.get(r.image_id)
        if p is not None and p.model_version_id not in thresholds:
            version = db.model_versions.get(p.model_version_id)
            thresholds[p.model_version_id] = (anomaly_threshold(db, version, folder_id, flags)
                                              if version is not None else None)
        cands.append(AnomalyCandidate(r.image_id, r.review_state in LABELLED_STATES,
                                      p.anomaly_score if p is not None else None,
                                      thresholds.get(p.model_version_id) if p is not None else None,
                                      r.in_domain.get("anomaly")))
    x, problems = _vectors(rows, source, cache_root, progress)
    labels = list(db.labels.current_many([c.image_id for c in cands if c.reviewed]).values())  # read once, for both
    normal, more = normal_needed(labels)
    versions = [v for vid in thresholds if (v := db.model_versions.get(vid)) is not None]
    return LabelNextResult(folder_id, propose_anomaly(cands, x, size), None, len(cands), tuple(problems[:20]),
                           frozenset(c.image_id for c in cands if c.reviewed), (), unrouted, (normal, more),
                           unreadable=len(problems),
                           anomaly_regions=regions_learnt(labels, versions))


def _segmenter_result(db: "Database", folder_id: int, rows: list["QueueRow"], size: int,
                      source: EmbeddingSource | None, cache_root: Path | None,
                      progress: Callable[[int, int], None] | None, unrouted: int) -> LabelNextResult:
    """The segmenter's batch and counter over ``rows``, the folder's images the routing gives it and neither a
    classifier nor the anomaly model (``label_next_segmenter``, ADR 0071)."""
    from app.services.label_next_segmenter import SegmenterCandidate, frames_needed, propose_segmenter

    preds = db.predictions.current_for_images([r.image_id for r in rows], "segmenter")
    cands = []
    for r in rows:
        p = preds.get(r.image_id)
        cands.append(SegmenterCandidate(r.image_id, r.review_state in LABELLED_STATES,
                                        p.confidence if p is not None else None,
                                        p.target_count if p is not None else None, r.in_domain.get("segmenter")))
    x, problems = _vectors(rows, source, cache_root, progress)
    counts = frames_needed(db, [c.image_id for c in cands if c.reviewed])
    return LabelNextResult(folder_id, propose_segmenter(cands, x, size), None, len(cands), tuple(problems[:20]),
                           frozenset(c.image_id for c in cands if c.reviewed), (), unrouted, segmenter=counts,
                           unreadable=len(problems))


def _counter(cands: list[Candidate], files: list[tuple[str, str | None]], names: list[str], target: float, seed: int,
             cache_root: Path | None, counter_budget_s: float | None) -> LabelsNeeded:
    """The labels-needed figure of one version's images.

    The counter reads the retrainer's features, only for the labelled images (about 50 ms each on a first visit,
    cached like the embedding; benchmarks/results/counter.md). A folder of thousands of labels would hold the
    batch back for minutes, so with ``counter_budget_s`` the vectors are read for that long per call and the
    counter says how far it got until a later call has them all."""
    labelled_rows = [i for i, c in enumerate(cands) if c.label is not None]
    counter_cache = EmbeddingCache(cache_root or cache_dir() / "embeddings", embedding_source(COUNTER_FEATURES))
    deadline = None if counter_budget_s is None else time.monotonic() + counter_budget_s
    xc, unreadable = counter_cache.vectors([files[i] for i in labelled_rows], deadline=deadline)
    read = np.isfinite(xc).all(axis=1)
    pending = int(np.isnan(xc).all(axis=1).sum()) - len(unreadable)  # rows not read yet (no reason given)
    if pending:
        return LabelsNeeded(None, len(labelled_rows), target, None, None, pending=pending,
                            text=f"reading the retrainer's features of the labelled images for the counter: "
                                 f"{len(labelled_rows) - pending} of {len(labelled_rows)} so far (once per image)")
    rows = [i for i, ok in zip(labelled_rows, read) if ok]
    return labels_needed(xc[read], [str(cands[i].label) for i in rows], [names[i] for i in rows],
                         target=target, pool=sum(1 for c in cands if c.label is None), seed=seed)
