"""The review queue, one page at a time: what the gallery shows costs what is on screen.

A folder can hold a million images, so nothing here reads the whole queue. A page is a
``LIMIT`` over an order the database can walk on an index (``ix_images_queue_*`` and
``ix_predictions_*`` from the ``0003_queue_indexes`` and ``0008_queue_keys`` migrations); the next page continues
after the previous page's last sort key (keyset pagination, no ``OFFSET`` scan), and a jump
to any row is an ``OFFSET`` over the same index. Counts are aggregate queries over those
indexes; one image's row after a save is fetched by its id.

Order (the same on SQLite and PostgreSQL, whose ``rel_path`` compares bytes, ``COLLATE "C"``):
the sort key, then the name (``lower(rel_path)``, ASCII case folded by both databases), then
the id; ``descending`` flips all three. (A key whose natural order is high-first, the anomaly
score or the target count, still breaks ties by name A→Z.) Images without the key's value (no prediction that
counts, ``database/current_predictions.py``) come after all others, by name A→Z, whatever the direction: a page walks
the "has a value" segment first, then the "no value" one. An answer out of its model's domain
(``QueueQuery.domain_below``) shows no value, and the order reads none: by confidence it is a segment of its own, the
least confident, by name; by target count or anomaly score a segment of its own after the values shown (before "no
value"), by name A→Z whatever the direction. The anomaly-score range matches no score out of domain.

Columns are selected with Core (no ORM objects) and returned as frozen rows.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    SQLColumnExpression,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session, aliased

from database import path_map
from database.images import NAME_FTS, case_spellings, text_match
from database.models import Folder, Image, Prediction
from database.states import ReviewState

if TYPE_CHECKING:
    from database.engine import Database

# Queue order of the review states: what needs attention first.
STATE_ORDER = {"unreviewed": 0, "corrected": 1, "accepted": 2, "rejected": 3}
# sort key -> (which prediction column or None for an image column, ascending in its natural order)
SORTS: dict[str, tuple[str | None, bool]] = {
    "name": (None, True),
    "state": (None, True),
    "uncertainty": ("confidence", True),   # least confident first
    "confidence": ("confidence", False),   # most confident first (it was the same order as "uncertainty")
    "anomaly": ("anomaly_score", False),   # highest score first
    "targets": ("target_count", False),    # most targets first
    "label_next": (None, True),            # the ranked images ("label next" proposals) first, in rank order
}
MAX_RANKED = 1000  # a ranking longer than this is cut: the rank is a CASE over the ids in the statement


@dataclass(frozen=True, slots=True)
class QueueRow:
    image_id: int
    folder_id: int
    root_path: str
    rel_path: str
    review_state: str
    flagged: bool
    missing: bool
    error: str | None
    predicted_class: str | None
    confidence: float | None
    target_count: int | None
    anomaly_score: float | None
    label_class: str | None
    content_hash: str | None  # keys the thumbnail cache
    flag_override: bool | None = None  # an inspector's flag decision (None: the models' flag)
    flag_by: str | None = None
    # family -> in-domain score of the prediction that counts (families with one)
    in_domain: dict[str, float] = field(default_factory=dict)
    # The version of the anomaly answer that counts: its threshold says whether the score is over (routing may
    # give a folder's subfolders different anomaly models, each with its own threshold)
    anomaly_version: int | None = None


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """Which images the queue holds, in which order. Each family's columns are those of its
    prediction that counts for the image (``predictions.current_family``), if any."""

    folder_id: int | None = None
    states: tuple[str, ...] = ()          # empty: every state
    flagged: bool | None = None
    path_contains: str | None = None
    class_name: str | None = None         # predicted or labelled class
    score_min: float | None = None        # anomaly score range (images without a score excluded)
    score_max: float | None = None
    # The in-domain score below which a model's answer is out of its domain: the window hides it (the gallery's chip
    # and the panel say "out of domain") and Accept does not take it. The service passes ``OUT_OF_DOMAIN_BELOW``
    # (``inference.domain.is_out_of_domain``: database/ does not import inference). The class filter, the score range
    # and the score sorts (confidence, target count, anomaly score) read only an answer that stands (``_stands``);
    # None: every answer stands.
    domain_below: float | None = None
    out_of_domain_only: bool = False      # only images some version's answer is out of domain (needs domain_below)
    include_missing: bool = False
    sort: str = "name"
    descending: bool = False
    ranking: tuple[int, ...] = ()         # sort "label_next": these image ids first, in this order
    # Only these image ids (the text filter's few candidates, ``_narrowed``: its own condition
    # still applies). None: no such bound.
    within: tuple[int, ...] | None = None
    # By name under a score range with few predictions in it (``_narrowed``): read the range
    # from the score index, ordered by its copy of the name key. The same rows and order.
    by_score: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the stretch (its index in ``_Shape.segments``: by state one per state; by a score the
    values shown, the answers out of domain and the images without a value; by "label next" the ranked and the
    others) and the last row's sort values (key, name key, id). Plain data: it can cross threads."""

    segment: int
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class QueuePage:
    rows: list[QueueRow] = field(default_factory=list)
    cursor: Cursor | None = None  # None: the page is empty


@dataclass(frozen=True)
class _Segment:
    """One stretch of the queue that a single index walk yields in order."""

    conditions: list[ColumnElement[Any]]
    order: list[tuple[SQLColumnExpression[Any], bool]]  # (expression, ascending)
    inner: str | None = None                 # the prediction alias this stretch must have
    # Conditions the query's own already imply, stated on the stretch's index so its walk reads only its rows (the
    # folder, on the answers the stretch is an index range of): not what makes a row this stretch's (``_start_of``
    # reads none).
    bounds: list[ColumnElement[Any]] = field(default_factory=list)
    # Whether the image's folder is stated too (``_Shape.conditions``). Not on the answers shown by confidence, whose
    # bounds state it: PostgreSQL's planner takes the two for independent filters, multiplies their shares, and
    # expected 27 of a folder's ~9,800 answers that stand, so it joined and sorted them all rather than walk the index
    # (session 51). The answers out of domain keep it: there that low guess is nearer the truth (the planner expects
    # the folder's share of every answer out of domain) and keeps it off a hash join of every image.
    image_folder: bool = True


# Built once: making ORM aliases costs milliseconds of Python per query (a save's row fetch
# would spend more time building its statement than running it), and identical objects let
# SQLAlchemy reuse its compiled statements.
_PC, _PS, _PA = (aliased(Prediction, name=n) for n in ("pred_classifier", "pred_segmenter", "pred_anomaly"))
# Which family's predictions each alias holds.
_FAMILY = {"pc": "classifier", "ps": "segmenter", "pa": "anomaly"}
# The anomaly predictions in a score range, by name (``QueueQuery.by_score``): joined apart from
# ``_PA`` and read only for the score index's own columns, so the range is an index-only scan.
_PR = aliased(Prediction, name="pred_range")
# The newest label revision's class, as the image row caches it (ADR 0024: kept in step by
# database/labels.py; the revisions stay the truth).
_LABEL_CLASS = Image.label_class
_NAME_KEY = func.lower(Image.rel_path)


def _out_of_domain(pred: type[Prediction], below: float | None) -> ColumnElement[bool]:
    """SQL form of ``inference.domain.is_out_of_domain``, the rule the label panel, the gallery's chips, Accept and the
    export read (``below``: its ``OUT_OF_DOMAIN_BELOW``, ``QueueQuery.domain_below``): an in-domain score below the
    threshold; no score (no statistics) never is, and no threshold known: nothing is."""
    return pred.in_domain < below if below is not None else false()


def _stands(pred: type[Prediction], below: float | None) -> ColumnElement[bool]:
    """``_out_of_domain``'s complement, NULL-safe (``app.services.flags.answer_stands``): the answer the window shows
    and Accept takes. A missing prediction (an outer join's NULLs) stands too: its columns decide for themselves."""
    return or_(pred.in_domain.is_(None), pred.in_domain >= below) if below is not None else true()


class _Shape:
    """The aliases and expressions of one queue query, for one ``QueueQuery``."""

    def __init__(self, qq: QueueQuery) -> None:
        if qq.sort not in SORTS:
            raise ValueError(f"unknown sort key {qq.sort!r}")
        self.qq = qq
        self.pc, self.ps, self.pa = _PC, _PS, _PA
        self.label_class = _LABEL_CLASS
        self.name_key = _NAME_KEY
        self.column, natural = SORTS[qq.sort]
        self.ascending = natural != qq.descending   # the key's direction
        self.tie_ascending = not qq.descending      # the name's and id's
        self.alias_of = {"pc": self.pc, "ps": self.ps, "pa": self.pa}
        self.key_alias = {"confidence": "pc", "target_count": "ps", "anomaly_score": "pa"}.get(self.column or "")
        if qq.out_of_domain_only and qq.domain_below is None:
            raise ValueError("the out-of-domain filter needs the in-domain threshold (domain_below)")
        domain = qq.out_of_domain_only
        scored = qq.score_min is not None or qq.score_max is not None
        self.needs = {"pc": qq.class_name is not None or domain, "ps": domain,
                      "pa": (scored and not qq.by_score) or domain}
        ranked = tuple(dict.fromkeys(qq.ranking))[:MAX_RANKED] if qq.sort == "label_next" else ()
        self.ranked = ranked
        # The rank of a ranked image (NULL for the others): the first stretch's sort value.
        self.rank = (case({image_id: rank for rank, image_id in enumerate(ranked)}, value=Image.id)
                     if ranked else None)

    def joins(self, stmt: Select[*tuple[Any, ...]], every: bool, inner: str | None = None, order: bool = True) -> Select[*tuple[Any, ...]]:
        """Join each family's predictions that count (all families for rows; else those a filter
        reads, and with ``order`` the one the order reads); outer joins except ``inner``'s."""
        for name, family in _FAMILY.items():
            if every or self.needs[name] or (order and name == self.key_alias):
                alias = self.alias_of[name]
                on = and_(alias.image_id == Image.id, alias.current_family == family)
                stmt = stmt.join(alias, on) if name == inner else stmt.outerjoin(alias, on)
        if self.qq.by_score:
            stmt = stmt.join(_PR, and_(_PR.image_id == Image.id, _PR.current_family == _FAMILY["pa"]))
        return stmt

    def conditions(self, counting: bool = False, folder: bool = True) -> list[ColumnElement[Any]]:
        """The filter's conditions; without the image's ``folder`` where a stretch states it on its answers only
        (``_Segment.image_folder``)."""
        qq = self.qq
        conds: list[ColumnElement[Any]] = []
        # Bound to a few ids, the planner must start from them (primary key lookups), not from
        # a walk of the folder's index: these two forms keep it off that index.
        few = qq.within is not None
        if qq.folder_id is not None and folder:
            conds.append((Image.folder_id + 0 if few else Image.folder_id) == qq.folder_id)
        if not qq.include_missing:
            conds.append(Image.missing.is_not(True) if few else Image.missing == false())
        if qq.states:
            conds.append(Image.review_state.in_([ReviewState(s).value for s in qq.states]))
        if qq.flagged is not None:
            conds.append(Image.flagged == qq.flagged)
        if qq.path_contains:
            conds.append(text_match(qq.path_contains))
        if qq.within is not None:
            conds.append(Image.id.in_(qq.within))
        if qq.class_name is not None:  # a label's class always counts, a predicted one where the window shows it
            conds.append(or_(and_(self.pc.predicted_class == qq.class_name, _stands(self.pc, qq.domain_below)),
                             self.label_class == qq.class_name))
        # Under another order, "+ 0" keeps the planner off the score index: walking the order's
        # index and probing each image's score beats sorting every image in the score range.
        score: SQLColumnExpression[float | None]
        if qq.by_score:  # the range drives the walk: its index must be usable
            score = _PR.anomaly_score
        elif counting or self.key_alias == "pa":
            score = self.pa.anomaly_score
        else:
            score = self.pa.anomaly_score + 0
        if qq.score_min is not None:
            conds.append(score >= qq.score_min)
        if qq.score_max is not None:
            conds.append(score <= qq.score_max)
        if qq.score_min is not None or qq.score_max is not None:  # a score withheld on screen (out of its model's
            conds.append(_stands(_PR if qq.by_score else self.pa, qq.domain_below))  # domain) is in no range
        if qq.out_of_domain_only:
            conds.append(or_(*(_out_of_domain(p, qq.domain_below) for p in (self.pc, self.ps, self.pa))))
        return conds

    def sort_value(self) -> ColumnElement[Any]:
        """The prediction column the order reads, or the rank under "label_next" (NULL for name
        and state: not in the cursor)."""
        if self.qq.sort == "label_next":
            return self.rank if self.rank is not None else literal(None)
        return getattr(self.alias_of[self.key_alias], self.column) if self.key_alias and self.column else literal(None)

    def segments(self) -> list[_Segment]:
        """The queue's stretches in order. By name: one. By state: one per state (each an
        index walk by name). By a score: the images with one (driven by the predictions'
        score index), then those without, by name A→Z; the answers out of their model's domain
        (``QueueQuery.domain_below``) are a stretch of their own: by confidence as the least confident,
        by target count or anomaly score after the values shown, by name A→Z."""
        tail = [(self.name_key, self.tie_ascending), (Image.id, self.tie_ascending)]
        if self.qq.sort == "name" and self.qq.by_score:  # the prediction's copy of the same keys
            return [_Segment([], [(_PR.name_key, self.tie_ascending), (_PR.image_id, self.tie_ascending)])]
        if self.qq.sort == "name":
            return [_Segment([], tail)]
        if self.qq.sort == "state":
            states = sorted(STATE_ORDER, key=STATE_ORDER.__getitem__, reverse=not self.ascending)
            wanted = set(self.qq.states) if self.qq.states else set(states)
            return [_Segment([Image.review_state == st], tail) for st in states if st in wanted]
        key = self.sort_value()
        if self.qq.sort == "label_next":  # the ranked few by rank (a primary-key lookup), then all others by name
            ranked = Image.id.in_(self.ranked)
            return [_Segment([ranked], [(key, self.ascending), *tail]),
                    _Segment([~ranked], [(self.name_key, True), (Image.id, True)])]
        # Ties by the prediction's copy of the name key: the score index ends in it and the
        # image id, so the whole stretch is one walk of that index (no sort of each tie).
        pred = self.alias_of[self.key_alias or ""]
        pred_tail: list[tuple[SQLColumnExpression[Any], bool]] = [(pred.name_key, self.tie_ascending),
                                                                   (pred.image_id, self.tie_ascending)]
        below = self.qq.domain_below
        stands = [] if below is None else [_stands(pred, below)]
        # The folder stated on the prediction too: a range of an index led by (family, folder), so another folder's
        # entries are not walked. Not with a few ids (``within``): those drive, as the images' "folder_id + 0" says.
        folder = ([pred.folder_id == self.qq.folder_id]
                  if self.qq.folder_id is not None and self.qq.within is None else [])
        # By confidence ix_predictions_folder_confidence (0021): most confident first read every other folder's
        # higher answers before the first page, another line's out of domain at 1.0 among them (a folder of 10,000
        # images beside 100,000 such: 10-14 ms on both engines). The target count and anomaly score have no such
        # index (their walks read other folders' higher values, as since 0008).
        by_folder = folder if self.key_alias == "pc" else []
        shown = _Segment([key.is_not(None), *stands], [(key, self.ascending), *pred_tail], inner=self.key_alias,
                         bounds=by_folder, image_folder=not by_folder)
        unknown = _Segment([key.is_(None), *stands], [(self.name_key, True), (Image.id, True)])
        if below is None:
            return [shown, unknown]
        # An answer out of its model's domain is withheld on screen (the chip says "out of domain"): the order does
        # not read its value either. A classifier's counts as the least confident of all, tied (by name), first from
        # least confident, last from most confident (its confidence, 1.0 for a sky frame through the steel model, put
        # it at the top of "confidence": a session-50 audit). A segmenter's target count or an anomaly model's score
        # has no "least": its answers out of domain come after the values shown, by name A→Z whatever the direction,
        # as the images without a value do after them (a session-50 audit: "target count" put frames whose count the
        # window hides among the 2-target ones).
        # The answers out of domain are a range of ix_predictions_queue_domain (family, folder, in-domain score, name
        # key, image): only the folder's are read and sorted by name. Without the folder every folder's were, and the
        # others' dropped at the image join: "uncertainty"'s first page of a folder of 10,000 images beside one of
        # 100,000 out of domain took 14 ms on SQLite, 85 on PostgreSQL (1.8 and 4.3 with it).
        if self.key_alias != "pc":
            withheld = _Segment([_out_of_domain(pred, below)], [(pred.name_key, True), (pred.image_id, True)],
                                inner=self.key_alias, bounds=folder)
            return [shown, withheld, unknown]
        foreign = _Segment([_out_of_domain(pred, below)], pred_tail, inner=self.key_alias, bounds=folder)
        return [foreign, shown, unknown] if self.ascending else [shown, foreign, unknown]


TEXT_CANDIDATES = 2000  # a text filter matching more images than this walks the names (its pages come fast)
NAME_TRIGRAMS = "ix_images_name_trgm"  # PostgreSQL's (0009_pg_search), where pg_trgm could be created
# A score range with at most this many predictions is read from the score index, ordered by its
# copy of the name key (cost: the range); a wider one walks the names and probes each image's
# score (cost: a page divided by the share in range, small when the range is wide).
SCORE_CANDIDATES = 5_000


def _name_candidates(s: Session, db: "Database", needle: str) -> set[int] | None:
    """Up to ``TEXT_CANDIDATES + 1`` images whose name may contain ``needle``, found by SQLite's
    trigram index of the names; None where there is none (the filter then walks the names).
    PostgreSQL needs no such step: its planner reads ``NAME_TRIGRAMS`` (where 0009 could make
    it) for the filter's own ``ILIKE`` when it expects few matches, and walks the names by the
    page's order when it expects many (1M images: 44 ms for a rare text, 54 ms for 1,000
    matches; bound to the candidates' ids first it took 60 and 118 ms)."""
    if db.dialect == "sqlite":
        # ``ImageRepository.sync`` fills the FTS5 table as it inserts (no per-row trigger since
        # 0009): it answers only while its newest document is the newest image, so rows written
        # any other way make the filter walk the names instead of missing them.
        docs = f"{NAME_FTS}_docsize"  # FTS5's one row per document
        if s.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": docs}).first() is None:
            return None
        if not s.scalar(text(f"SELECT (SELECT max(id) FROM {docs}) IS (SELECT max(id) FROM images)")):
            return None
        # A superset: FTS5 reads ``_`` and ``%`` as wildcards (and folds ASCII letters, as the filter does).
        found: set[int] = set()
        for spelling in case_spellings(needle):  # as text_match reads the name: both Unicode spellings, cased
            found.update(s.scalars(text(f"SELECT rowid FROM {NAME_FTS} WHERE rel_path LIKE :p LIMIT :n"),
                                   {"p": f"%{spelling}%", "n": TEXT_CANDIDATES + 1}))
        return found
    return None


def _by_score_index(s: Session, qq: QueueQuery) -> bool:
    """Whether a score range is read from the score index (few predictions in range,
    ``SCORE_CANDIDATES``) rather than found by walking every name (the name order, a count).
    Counted on that index alone (an index-only range scan, stopped past the bound)."""
    if qq.score_min is None and qq.score_max is None:
        return False
    bounds = [Prediction.current_family == _FAMILY["pa"]]
    if qq.score_min is not None:
        bounds.append(Prediction.anomaly_score >= qq.score_min)
    if qq.score_max is not None:
        bounds.append(Prediction.anomaly_score <= qq.score_max)
    few = select(Prediction.image_id).where(*bounds).limit(SCORE_CANDIDATES + 1).subquery()
    return int(s.scalar(select(func.count()).select_from(few)) or 0) <= SCORE_CANDIDATES


def _narrowed(db: "Database", qq: QueueQuery, counting: bool = False) -> QueueQuery:
    """``qq`` with what the indexes say about its filters, so a rare match costs its matches,
    not a walk of every name:

    - a text filter bound to the few images it can match, when they are few: found by the
      names' trigram index (SQLite's FTS5; ``_name_candidates``) and the folded serial and lot
      indexes. The filter's own condition still decides. Unchanged when there are many (then
      the name walk finds a page at once), a text under 3 characters, or no trigram index.
    - a score range with few predictions in it, by name or in a count (no order): read from the
      score index (``by_score``)."""
    needle = qq.path_contains
    text_narrows = bool(needle) and qq.within is None and len(needle or "") >= 3
    score_narrows = (not qq.by_score and (counting or qq.sort == "name")
                     and (qq.score_min is not None or qq.score_max is not None))
    if not (text_narrows or score_narrows):
        return qq
    with db.session() as s:
        if score_narrows and _by_score_index(s, qq):
            qq = replace(qq, by_score=True)
        if not text_narrows or needle is None:
            return qq
        found = _name_candidates(s, db, needle)
        if found is None:
            return qq
        folded = func.lower(literal(needle))  # as text_match folds it: by the database, as it folds the column
        for column in (Image.trace_serial, Image.trace_lot):
            if len(found) > TEXT_CANDIDATES:
                break
            where = [func.lower(column) == folded] + ([Image.folder_id == qq.folder_id] if qq.folder_id else [])
            found.update(s.scalars(select(Image.id).where(*where).limit(TEXT_CANDIDATES + 1)))
    return qq if len(found) > TEXT_CANDIDATES else replace(qq, within=tuple(sorted(found)))


def _walks_only(s: Session, db: "Database") -> None:
    """This transaction reads what is on screen (a page, a bounded count): index walks that stop
    early. PostgreSQL plans parallel workers for them when it misjudges a filter's share (a score
    range: "+ 0" hides it) and starting them costs more than the walk: 1M images, idle, 35 vs
    7 ms; on a busy 2-core station hundreds of ms, beside the gallery's own work."""
    if db.dialect == "postgresql":
        s.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _rows_select(shape: _Shape, inner: str | None = None) -> Select[*tuple[Any, ...]]:
    pc, ps, pa = shape.pc, shape.ps, shape.pa
    key = shape.sort_value()
    stmt = (select(Image.id, Image.folder_id, Folder.root_path, Image.rel_path, Image.review_state, Image.flagged,
                   Image.missing, Image.error, pc.predicted_class, pc.confidence, ps.target_count,
                   pa.anomaly_score, shape.label_class, Image.content_hash, Image.flag_override, Image.flag_by,
                   pc.in_domain.label("d0"),
                   ps.in_domain.label("d1"), pa.in_domain.label("d2"), key.label("k0"), shape.name_key.label("k1"),
                   pa.model_version_id.label("av"))
            .select_from(Image).join(Folder, Folder.id == Image.folder_id))
    return shape.joins(stmt, every=True, inner=inner)


def _queue_row(r: Row[Any]) -> QueueRow:
    scores = zip(("classifier", "segmenter", "anomaly"), (r.d0, r.d1, r.d2))
    return replace(QueueRow(*tuple(r)[:16]), root_path=path_map.local(r.root_path),
                   in_domain={f: float(v) for f, v in scores if v is not None}, anomaly_version=r.av)


def _after(order: list[tuple[SQLColumnExpression[Any], bool]], values: tuple[Any, ...]) -> ColumnElement[Any]:
    """Rows strictly after ``values`` in ``order`` (mixed directions allowed). The leading
    bound is repeated on its own so the database starts its index walk there."""
    ors = []
    for i, (expr, asc) in enumerate(order):
        eqs = [e == v for (e, _a), v in zip(order[:i], values[:i])]
        ors.append(and_(*eqs, expr > values[i] if asc else expr < values[i]))
    lead, asc = order[0]
    return and_(lead >= values[0] if asc else lead <= values[0], or_(*ors))


def _cursor_values(order_len: int, row: Row[Any]) -> tuple[Any, ...]:
    return (row.k0, row.k1, row.id) if order_len == 3 else (row.k1, row.id)


def _keys_select(shape: _Shape, seg: _Segment) -> Select[*tuple[Any, ...]]:
    """Only the sort values of a stretch's rows: a narrow walk (no label subquery, no unused
    join) to find where a position lies."""
    stmt = select(shape.sort_value().label("k0"), shape.name_key.label("k1"), Image.id).select_from(Image)
    conds = shape.conditions(folder=seg.image_folder)
    return (shape.joins(stmt, every=False, inner=seg.inner).where(*conds, *seg.conditions, *seg.bounds)
            .order_by(*(e.asc() if a else e.desc() for e, a in seg.order)))


def _segment_count(s: Session, shape: _Shape, seg: _Segment, *extra: ColumnElement[bool]) -> int:
    """How many rows of a stretch (meeting ``extra`` too): an aggregate over its index walk."""
    narrow = _keys_select(shape, seg).where(*extra).order_by(None).subquery()
    return int(s.scalar(select(func.count()).select_from(narrow)) or 0)


def _cursor_at(s: Session, shape: _Shape, segments: list[_Segment], position: int) -> Cursor | None:
    """The cursor of the row at ``position`` (None: the queue is shorter)."""
    for index, seg in enumerate(segments):
        row = s.execute(_keys_select(shape, seg).limit(1).offset(position)).first()
        if row is not None:
            return Cursor(index, _cursor_values(len(seg.order), row))
        if index + 1 < len(segments):
            position -= _segment_count(s, shape, seg)
    return None


def queue_page(db: "Database", qq: QueueQuery, limit: int, offset: int = 0,
               after: Cursor | None = None) -> QueuePage:
    """Up to ``limit`` rows of the queue: those after ``after`` (keyset: the cost of the page
    only), else those from position ``offset`` (a narrow index walk to the position first)."""
    shape = _Shape(_narrowed(db, qq))
    segments = shape.segments()
    rows: list[QueueRow] = []
    cursor: Cursor | None = None
    with db.session() as s:
        _walks_only(s, db)
        if after is None and offset > 0:
            after = _cursor_at(s, shape, segments, offset - 1)
            if after is None:
                return QueuePage()
        for index in range(after.segment if after is not None else 0, len(segments)):
            if len(rows) >= limit:
                break
            seg = segments[index]
            bound: list[ColumnElement[bool]] = []
            if after is not None and index == after.segment:
                values = after.values if len(seg.order) == 3 else after.values[-2:]
                bound.append(_after(seg.order, values))
            conds = shape.conditions(folder=seg.image_folder) + seg.conditions + seg.bounds + bound
            order = [e.asc() if a else e.desc() for e, a in seg.order]
            if shape.qq.by_score and shape.qq.sort == "name":
                # The page's ids first (the range's index entries sorted, then each image's
                # folder checked), then their rows: sorting the range's rows after joining every
                # column costs the whole range's joins (1M images, 5,000 in range: 154 vs ~60 ms).
                ids = list(s.scalars(_keys_select(shape, seg).with_only_columns(Image.id).where(*bound)
                                     .limit(limit - len(rows))))
                by_id = {r.id: r for r in s.execute(_rows_select(shape, seg.inner).where(Image.id.in_(ids)))}
                got = [by_id[i] for i in ids if i in by_id]
            else:
                stmt = _rows_select(shape, seg.inner).where(*conds).order_by(*order).limit(limit - len(rows))
                got = list(s.execute(stmt))
            rows.extend(_queue_row(r) for r in got)
            if got:
                cursor = Cursor(index, _cursor_values(len(seg.order), got[-1]))
    return QueuePage(rows, cursor)


def _indexed_count(qq: QueueQuery) -> ColumnElement[int] | None:
    """The exact count of a folder's class filter, or of its score-range filter, alone (no other
    filter), as counts of index ranges (``0010_folder_counts``) instead of a join of every image
    of the folder with its prediction; None for any other query (``queue_count`` joins).

    - score range: the folder's predictions in the range that stand (in domain; index-only), less those of its
      missing images (found from the missing images, few);
    - class: the folder's predictions of the class that stand (in domain), plus the labelled images of the class
      whose prediction says otherwise or is out of domain (the labelled few, by ``ix_images_label_class``), less
      the missing images' standing predictions of the class.

    The inner ``+ 0`` and ``|| ''`` keep each missing-image count on the missing images' index
    (a planner free to start from the class's or the range's predictions would read them all)."""
    scored = qq.score_min is not None or qq.score_max is not None
    if (qq.folder_id is None or scored == (qq.class_name is not None) or qq.states or qq.flagged is not None
            or qq.path_contains or qq.out_of_domain_only or qq.within is not None):
        return None
    folder = qq.folder_id
    family = _FAMILY["pa"] if scored else _FAMILY["pc"]
    p = aliased(Prediction, name="p")
    own = and_(p.image_id == Image.id, p.current_family == family)
    missing = [Image.folder_id == folder, Image.missing == true()]

    def count(stmt: Select[Any]) -> ColumnElement[int]:
        return stmt.with_only_columns(func.count()).scalar_subquery()

    if scored:
        def in_range(score: SQLColumnExpression[Any]) -> list[ColumnElement[bool]]:
            return ([score >= qq.score_min] if qq.score_min is not None else []) + \
                   ([score <= qq.score_max] if qq.score_max is not None else [])
        stands = _stands(p, qq.domain_below)  # a score out of its model's domain is in no range
        total = count(select(p.id).where(p.current_family == family, p.folder_id == folder,
                                         *in_range(p.anomaly_score), stands))
        # (The family "|| ''" too: ix_predictions_queue_anomaly holds every column read here, and SQLite walked all
        # of the family's entries in it rather than start from the missing images: 200,000 images, 2 → 50 ms.)
        by_image = and_(p.image_id == Image.id, p.current_family.concat("") == family)
        gone = count(select(Image.id).join(p, by_image).where(*missing, *in_range(p.anomaly_score + 0), stands))
    else:
        name = qq.class_name
        stands = _stands(p, qq.domain_below)
        predicted = count(select(p.id).where(p.current_family == family, p.folder_id == folder,
                                             p.predicted_class == name, stands))
        other = or_(p.predicted_class.is_(None), p.predicted_class != name, _out_of_domain(p, qq.domain_below))
        # ("IS NOT TRUE": not a key of the folder's name indexes, so the planner starts from
        # the labelled images' index, not from every image of the folder.)
        kept = [] if qq.include_missing else [Image.missing.is_not(True)]
        labelled = count(select(Image.id).outerjoin(p, own)
                         .where(Image.folder_id == folder, Image.label_class == name, *kept, other))
        gone = count(select(Image.id).join(p, own).where(*missing, p.predicted_class.concat("") == name, stands))
        total = predicted + labelled
    return total if qq.include_missing else total - gone


def queue_count(db: "Database", qq: QueueQuery, at_most: int | None = None) -> int:
    """How many images the queue holds (an aggregate over the indexes; joins only what a
    filter reads). With ``at_most``, counting stops there (the answer is min(count, at_most)):
    a bound costs the rows up to it, where an exact count of a filter that reads the
    predictions costs every row of the folder (ADR 0024); a folder's class or score-range
    filter alone is counted exactly from index ranges (``_indexed_count``)."""
    indexed = _indexed_count(qq) if at_most is None else None
    if indexed is not None:
        with db.session() as s:
            _walks_only(s, db)
            return int(s.scalar(select(indexed)) or 0)
    shape = _Shape(_narrowed(db, qq, counting=True))
    if at_most is not None:
        narrow = (shape.joins(select(Image.id).select_from(Image), every=False, order=False)
                  .where(*shape.conditions(counting=True)).limit(max(0, at_most)).subquery())
        stmt = select(func.count()).select_from(narrow)
    else:
        stmt = (shape.joins(select(func.count(Image.id)).select_from(Image), every=False, order=False)
                .where(*shape.conditions(counting=True)))
    with db.session() as s:
        if at_most is not None:
            _walks_only(s, db)
        return int(s.scalar(stmt) or 0)


def queue_row(db: "Database", image_id: int) -> QueueRow | None:
    """One image's row (after a save or a flag change): a primary-key lookup, whatever the
    folder's size, with the predictions that count for it."""
    with db.session() as s:
        row = s.execute(_row_select(), {"image_id": image_id}).first()
    return None if row is None else _queue_row(row)


@functools.lru_cache(maxsize=1)
def _row_select() -> Select[*tuple[Any, ...]]:
    """One image's row, built once (a save re-reads a row: building the statement cost more
    than running it)."""
    return _rows_select(_Shape(QueueQuery(include_missing=True))).where(Image.id == bindparam("image_id"))


def queue_rows(db: "Database", qq: QueueQuery, page_size: int = 5000) -> list[QueueRow]:
    """Every row of the queue in its order, page by page (exports and tests; the gallery reads
    pages on demand instead)."""
    out: list[QueueRow] = []
    after: Cursor | None = None
    while True:
        page = queue_page(db, qq, page_size, after=after)
        out.extend(page.rows)
        if len(page.rows) < page_size:
            return out
        after = page.cursor


@dataclass(frozen=True, slots=True)
class Found:
    """An image of the queue and its row (how many rows come before it in the queue's order)."""

    image_id: int
    position: int
    cursor: Cursor  # its sort values: the page holding it is read from here (``page_of``)


def _reversed(seg: _Segment) -> _Segment:
    return replace(seg, order=[(e, not a) for e, a in seg.order])


def _start_of(s: Session, shape: _Shape, segments: list[_Segment], image_id: int,
              shown_state: str | None) -> tuple[int, tuple[Any, ...] | None] | None:
    """Where ``image_id`` sits in the queue's order: (its stretch, its sort values), or
    (the stretch it comes just before, None) when the state it shows has no stretch in this
    view. Read from its keys, not its membership: a row the inspector just reviewed (that no
    longer matches a state filter) still marks the place. None: the image is gone."""
    # By a score: the stretch whose keys it has (the rank, the score, an answer out of domain; not the filter's)
    stretch = (case(*((and_(*seg.conditions), index) for index, seg in enumerate(segments)))
               if shape.qq.sort not in ("name", "state") else literal(None))
    stmt = select(shape.sort_value().label("k0"), shape.name_key.label("k1"), Image.id, Image.review_state,
                  stretch.label("stretch"))
    row = s.execute(shape.joins(stmt.select_from(Image), every=False, order=True)
                    .where(Image.id == image_id)).first()
    if row is None:
        return None
    values = (row.k0, row.k1, row.id)
    if shape.qq.sort == "name":
        return 0, values[1:]
    if shape.qq.sort == "state":
        state = ReviewState(shown_state or row.review_state).value
        full = sorted(STATE_ORDER, key=STATE_ORDER.__getitem__, reverse=not shape.ascending)
        wanted = [st for st in full if not shape.qq.states or st in shape.qq.states]
        if state in wanted:
            return wanted.index(state), values[1:]
        return sum(1 for st in full[:full.index(state)] if st in wanted), None
    index = int(row.stretch)
    return index, values if len(segments[index].order) == 3 else values[1:]


def next_unreviewed(db: Database, qq: QueueQuery, after_id: int | None = None,
                    shown_state: str | None = None, backward: bool = False) -> Found | None:
    """The first unreviewed image after (``backward``: before) ``after_id`` in the queue's order
    and filter, wrapping once past the end, never ``after_id`` itself; without ``after_id``
    the first (last) unreviewed image of the queue. ``shown_state``: the state the row of
    ``after_id`` shows (by state, the stretch it sits in until the next refresh).

    Each stretch is one index walk with ``review_state = 'unreviewed'`` added (by name and by
    state that walk is ``ix_images_queue_state``'s), starting at the given row's keys; the row's
    position is an aggregate over the keys before it. None: no unreviewed image in this view."""
    shape = _Shape(_narrowed(db, qq))
    segments = shape.segments()
    unreviewed = Image.review_state == ReviewState.UNREVIEWED.value
    step = -1 if backward else 1

    def first(index: int, values: tuple[Any, ...] | None) -> tuple[int, Any] | None:
        """The first unreviewed row from stretch ``index`` on (in the walking direction),
        after ``values`` in that stretch when given."""
        while 0 <= index < len(segments):
            seg = segments[index] if not backward else _reversed(segments[index])
            conds = [unreviewed]
            if values is not None:
                conds.append(_after(seg.order, values if len(seg.order) == 3 else values[-2:]))
            row = s.execute(_keys_select(shape, seg).where(*conds).limit(1)).first()
            if row is not None:
                return index, row
            index, values = index + step, None
        return None

    with db.session() as s:
        start = _start_of(s, shape, segments, after_id, shown_state) if after_id is not None else None
        hit = None
        if start is not None:
            index, values = start
            if values is None and backward:
                index -= 1  # the view's stretch before the one this row comes before
            hit = first(index, values)
        if hit is None:  # from the queue's start (end): the wrap, or no row to start after
            hit = first(0 if not backward else len(segments) - 1, None)
            if hit is not None and hit[1].id == after_id:
                return None
        if hit is None:
            return None
        index, row = hit
        seg = segments[index]
        before = sum(_segment_count(s, shape, segments[i]) for i in range(index))
        before += _segment_count(s, shape, seg, _after(_reversed(seg).order,
                                                       _cursor_values(len(seg.order), row)))
        return Found(int(row.id), before, Cursor(index, _cursor_values(len(seg.order), row)))


def _walk_back(s: Session, shape: _Shape, segments: list[_Segment], cursor: Cursor, steps: int) -> Cursor | None:
    """The cursor of the row ``steps`` (>= 1) rows before ``cursor``'s (None: fewer rows
    before it): a short reversed walk from its keys, never from the queue's start."""
    index = cursor.segment
    values: tuple[Any, ...] | None = cursor.values
    while index >= 0:
        seg = _reversed(segments[index])
        bound = [] if values is None else [_after(seg.order, values if len(seg.order) == 3 else values[-2:])]
        row = s.execute(_keys_select(shape, seg).where(*bound).limit(1).offset(steps - 1)).first()
        if row is not None:
            return Cursor(index, _cursor_values(len(seg.order), row))
        steps -= _segment_count(s, shape, seg, *bound)
        index, values = index - 1, None
    return None


def page_of(db: Database, qq: QueueQuery, found: Found, size: int) -> QueuePage:
    """The page (``size`` rows from a multiple of ``size``) that holds ``found``: fewer than
    ``size`` rows walked back from its keys, then a keyset page, so a row deep in a large
    queue costs what an adjacent page costs (an ``offset`` read walks from the start)."""
    start = found.position - found.position % size
    if start == 0:
        return queue_page(db, qq, size)
    shape = _Shape(_narrowed(db, qq))
    with db.session() as s:
        before = _walk_back(s, shape, shape.segments(), found.cursor, found.position - start + 1)
    if before is None:  # the queue changed since ``found`` was read: its position is stale
        return queue_page(db, qq, size, offset=start)
    return queue_page(db, qq, size, after=before)
