""""Label next" where the routing runs the segmenter on a folder's images and no classifier (ADR 0071).

Why: an infrared line is routed to the segmenter alone. `P` there said "the model routing runs no classifier on
this folder's images, so there is no class to learn here", although the segmenter is retrained from the frames
reviewed with masks, and a reviewed frame teaches it most where it nearly decided otherwise. The worker stores
each answer's ``confidence`` (``inference.segmenter_predict.frame_confidence``: how far the least sure blob of the
map is from the threshold; a target that barely passed, or a faint blob just under it, is a frame to look at).
The batch is ``label_next.verdict_batch``, as for the anomaly model's verdicts: frames out of the segmenter's
domain first, then the least sure, spread over what the folder holds from the reviewed frames. The counter says
how many more reviewed frames the next segmenter retraining needs (``retraining.MIN_SEGMENTER_FRAMES`` with a mask,
one of them with a target).

Plain data in and out; Qt-free. ``label_next_folder`` calls it on the GUI's helper thread.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.services.flags import is_out_of_domain
from app.services.label_next import Proposal, verdict_batch

if TYPE_CHECKING:
    from database.engine import Database

# An answer stored before ADR 0071 has no confidence: it counts as half sure (chosen for spread more than doubt).
UNKNOWN_CLOSENESS = 0.5
# Whether a label revision's mask holds a target, by (database, revision id, mask size) — a revision never changes:
# every save recounts the folder's frames, and decoding thousands of reviewed masks each time would keep a core of
# the station busy.
_HAS_TARGET: dict[tuple[str, int, int], bool] = {}
_HAS_TARGET_MAX = 200_000


@dataclass(frozen=True)
class SegmenterCandidate:
    """One frame as the segmenter's batch sees it (plain data)."""

    image_id: int
    reviewed: bool
    confidence: float | None = None  # the answer's frame confidence; None: no answer, or one stored before it
    targets: int | None = None       # targets the answer found
    in_domain: float | None = None   # the answer's in-domain score


def closeness(c: SegmenterCandidate) -> float:
    """1 where a blob sits at the threshold, 0 where every blob is far from it."""
    if c.confidence is None:
        return UNKNOWN_CLOSENESS if c.targets is not None else 0.0
    return 1.0 - min(1.0, max(0.0, c.confidence))


def why(c: SegmenterCandidate) -> str:
    if is_out_of_domain(c.in_domain):
        return f"out of the segmenter's domain (in-domain score {c.in_domain:.2f})"
    if c.targets is None:
        return "no segmenter answer yet (it has not run on this frame)"
    found = f"{c.targets} target{'s' if c.targets != 1 else ''} found"
    if c.confidence is None:
        return f"{found}; chosen to spread the batch over the folder (answer stored without its confidence)"
    if c.confidence < 1.0:
        return f"{found}; a blob near the segmenter's threshold (confidence {c.confidence:.2f})"
    return f"{found}; unlike the frames reviewed so far"


def propose_segmenter(candidates: Sequence[SegmenterCandidate], embeddings: np.ndarray, size: int) -> Proposal:
    """The next ``size`` unreviewed frames: out of the segmenter's domain first, then the least sure answers, spread
    over the folder from the reviewed frames."""
    ordered = verdict_batch([c.reviewed for c in candidates], [is_out_of_domain(c.in_domain) for c in candidates],
                            [closeness(c) for c in candidates], embeddings, size)
    return Proposal(tuple(candidates[i].image_id for i in ordered),
                    {candidates[i].image_id: why(candidates[i]) for i in ordered}, "segmenter")


def frames_needed(db: "Database", image_ids: Sequence[int]) -> tuple[int, int, int]:
    """(reviewed frames among ``image_ids`` whose label holds a mask — "no target" included —, how many of them
    hold a target, how many more the next segmenter retraining needs)."""
    from app.services.display import mask_has_target
    from app.services.retraining import MIN_SEGMENTER_FRAMES

    masked = [label for label in db.labels.current_many(image_ids).values() if label.mask_png is not None]
    if len(_HAS_TARGET) > _HAS_TARGET_MAX:
        _HAS_TARGET.clear()
    with_targets = 0
    where = str(db.sa_url)
    for label in masked:
        data = label.mask_png or b""
        key = (where, label.id, len(data))
        known = _HAS_TARGET.get(key)
        if known is None:
            known = _HAS_TARGET[key] = mask_has_target(data)
        with_targets += known
    more = max(0, MIN_SEGMENTER_FRAMES - len(masked))
    if with_targets == 0 and more == 0:
        more = 1   # the retraining refuses masks that hold no target at all
    return len(masked), with_targets, more


def counter_text(frames: int, with_targets: int, more: int) -> tuple[str, str]:
    """The line's short counter and its tooltip."""
    from app.services.retraining import MIN_SEGMENTER_FRAMES

    short = (f"segmenter: {more} more reviewed frame{'s' if more != 1 else ''} with masks" if more
             else f"segmenter: ready ({frames} frames, {with_targets} with targets)")
    return short, (f"The segmenter is retrained from the frames reviewed with a mask (at least {MIN_SEGMENTER_FRAMES},"
                   f" one with a target; a frame accepted with no target counts); {frames} so far, {with_targets} "
                   "with targets. Accept (A) keeps the segmenter's answer as the mask; B / E / L correct it.")
