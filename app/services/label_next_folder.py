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

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.paths import cache_dir
from app.services.image_embedding import EmbeddingCache, EmbeddingSource, embedding_source
from app.services.label_next import BATCH, Candidate, Proposal, propose
from app.services.labels_needed import COUNTER_FEATURES, TARGET_ACCURACY, LabelsNeeded, labels_needed
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


@dataclass(frozen=True)
class LabelNextResult:
    """What the queue dock shows: the batch (best first) and the counter."""

    folder_id: int
    proposal: Proposal
    needed: LabelsNeeded | None
    considered: int = 0                 # images read (labelled + sampled unlabelled)
    problems: tuple[str, ...] = field(default_factory=tuple)  # unreadable files, one line each
    labelled: frozenset[int] = frozenset()  # images read as labelled (here or at another station)


def _candidates(db: "Database", folder_id: int, seed: int) -> tuple[list[Candidate], list[tuple[str, str | None]], list[str]]:
    """The folder's usable images as candidates, their (path, content hash) and file names."""
    from database.review_queue import QueueQuery, queue_count, queue_page

    reviewed = QueueQuery(folder_id=folder_id, states=LABELLED_STATES)
    labelled = [r for r in queue_page(db, reviewed, MAX_LABELLED).rows if r.label_class]
    unreviewed = QueueQuery(folder_id=folder_id, states=("unreviewed",))
    chosen = labelled + _sample(db, unreviewed, queue_count(db, unreviewed), seed)
    preds = db.predictions.current_for_images([r.image_id for r in chosen], "classifier")
    cands, files, names = [], [], []
    for r in chosen:
        p = preds.get(r.image_id)
        label = r.label_class if r.review_state in LABELLED_STATES else None
        cands.append(Candidate(r.image_id, label, dict(p.class_scores or {}) if p else {},
                               out_of_domain=bool(p and OUT_OF_DOMAIN in p.flags)))
        files.append((str(Path(r.root_path) / r.rel_path), r.content_hash))
        names.append(r.rel_path.replace("/", "__"))  # the export's flat names: groups as the retrainer forms them
    return cands, files, names


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
                          counter_budget_s: float | None = None) -> LabelNextResult:
    """The next batch to label in ``folder_id`` and how many labels the next retraining likely needs."""
    cands, files, names = _candidates(db, folder_id, seed)
    cache = EmbeddingCache(cache_root or cache_dir() / "embeddings", source or embedding_source())
    x, problems = cache.vectors(files, progress)
    proposal = propose(cands, x, size)
    needed = None
    if cands:
        # the counter reads the retrainer's features, only for the labelled images (about 50 ms each on a
        # first visit, cached like the embedding; benchmarks/results/counter.md). A folder of thousands of
        # labels would hold the batch back for minutes, so with ``counter_budget_s`` the vectors are read
        # for that long per call and the counter says how far it got until a later call has them all.
        labelled_rows = [i for i, c in enumerate(cands) if c.label is not None]
        counter_cache = EmbeddingCache(cache_root or cache_dir() / "embeddings", embedding_source(COUNTER_FEATURES))
        deadline = None if counter_budget_s is None else time.monotonic() + counter_budget_s
        xc, unreadable = counter_cache.vectors([files[i] for i in labelled_rows], deadline=deadline)
        read = np.isfinite(xc).all(axis=1)
        pending = int(np.isnan(xc).all(axis=1).sum()) - len(unreadable)  # rows not read yet (no reason given)
        if pending:
            needed = LabelsNeeded(None, len(labelled_rows), target, None, None, pending=pending,
                                  text=f"reading the retrainer's features of the labelled images for the counter: "
                                       f"{len(labelled_rows) - pending} of {len(labelled_rows)} so far (once per image)")
        else:
            rows = [i for i, ok in zip(labelled_rows, read) if ok]
            needed = labels_needed(xc[read], [str(cands[i].label) for i in rows], [names[i] for i in rows],
                                   target=target, pool=sum(1 for c in cands if c.label is None), seed=seed)
    labelled = frozenset(c.image_id for c in cands if c.label is not None)
    return LabelNextResult(folder_id, proposal, needed, len(cands), tuple(problems[:20]), labelled)
