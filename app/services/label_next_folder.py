""""Label next" for one folder of the station: read its images, embed them, propose, count.

This is the part the GUI calls on a helper thread (it reads the database and image files and
may take seconds on a first visit; afterwards the embeddings come from the cache). What it
returns is plain data: the proposed image ids with their reasons and the labels-needed figure.

A folder can be large: every labelled image is used, but at most ``MAX_POOL`` unlabelled ones
(a seeded random sample) are considered for a batch, so a first visit to a folder of a million
images embeds a bounded number of files.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.paths import cache_dir
from app.services.image_embedding import EmbeddingCache, EmbeddingSource, embedding_source
from app.services.label_next import BATCH, Candidate, Proposal, propose
from app.services.labels_needed import TARGET_ACCURACY, LabelsNeeded, labels_needed

if TYPE_CHECKING:
    from database.engine import Database

MAX_POOL = 5000        # unlabelled images considered per batch (a random sample beyond)
MAX_LABELLED = 5000    # labelled images the curve and the fit read (the newest beyond)
OUT_OF_DOMAIN = "out_of_domain"  # the prediction flag the out-of-domain work sets
LABELLED_STATES = ("accepted", "corrected")


@dataclass(frozen=True)
class LabelNextResult:
    """What the queue dock shows: the batch (best first) and the counter."""

    folder_id: int
    proposal: Proposal
    needed: LabelsNeeded | None
    considered: int = 0                 # images read (labelled + sampled unlabelled)
    problems: tuple[str, ...] = field(default_factory=tuple)  # unreadable files, one line each


def _candidates(db: "Database", folder_id: int, seed: int) -> tuple[list[Candidate], list[tuple[str, str | None]], list[str]]:
    """The folder's usable images as candidates, their (path, content hash) and file names."""
    from database.review_queue import QueueQuery, queue_rows

    classifier = db.model_versions.active_ids().get("classifier")
    rows = queue_rows(db, QueueQuery(folder_id=folder_id, classifier_id=classifier))
    labelled = [r for r in rows if r.review_state in LABELLED_STATES and r.label_class][-MAX_LABELLED:]
    pool = [r for r in rows if r.review_state == "unreviewed"]
    if len(pool) > MAX_POOL:
        pool = random.Random(seed).sample(pool, MAX_POOL)
    chosen = labelled + pool
    preds = db.predictions.for_images([r.image_id for r in chosen], classifier) if classifier is not None else {}
    cands, files, names = [], [], []
    for r in chosen:
        p = preds.get(r.image_id)
        label = r.label_class if r.review_state in LABELLED_STATES else None
        cands.append(Candidate(r.image_id, label, dict(p.class_scores or {}) if p else {},
                               out_of_domain=bool(p and OUT_OF_DOMAIN in p.flags)))
        files.append((str(Path(r.root_path) / r.rel_path), r.content_hash))
        names.append(r.rel_path.replace("/", "__"))  # the export's flat names: groups as the retrainer forms them
    return cands, files, names


def label_next_for_folder(db: "Database", folder_id: int, size: int = BATCH, target: float = TARGET_ACCURACY,
                          source: EmbeddingSource | None = None, cache_root: Path | None = None,
                          progress: Callable[[int, int], None] | None = None, seed: int = 0) -> LabelNextResult:
    """The next batch to label in ``folder_id`` and how many labels the next retraining likely needs."""
    cands, files, names = _candidates(db, folder_id, seed)
    cache = EmbeddingCache(cache_root or cache_dir() / "embeddings", source or embedding_source())
    x, problems = cache.vectors(files, progress)
    proposal = propose(cands, x, size)
    rows = [i for i, c in enumerate(cands) if c.label is not None and np.isfinite(x[i]).all()]
    needed = None
    if rows or cands:
        pool = sum(1 for c in cands if c.label is None)
        needed = labels_needed(x[rows], [str(cands[i].label) for i in rows], [names[i] for i in rows],
                               target=target, pool=pool, seed=seed)
    return LabelNextResult(folder_id, proposal, needed, len(cands), tuple(problems[:20]))
