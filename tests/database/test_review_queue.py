"""The paged review queue agrees with a straightforward query, and a save reads one row.

Small random folders (names differing only in case, tied scores, missing files, images
without predictions) on SQLite and PostgreSQL: every sort key in both directions, under each
filter, read page by page (keyset cursors) and from arbitrary offsets, must give the order and
the count that sorting all rows in Python gives.
"""
from __future__ import annotations

import dataclasses
import random
import re

import pytest
from sqlalchemy import event, select

from database import Database
from database.dto import FileEntry, LabelChange, PredictionIn
from database.review_queue import (
    STATE_ORDER,
    QueueQuery,
    QueueRow,
    next_unreviewed,
    page_of,
    queue_count,
    queue_page,
    queue_row,
    queue_rows,
)
from database.states import ReviewState
from inference.domain import OUT_OF_DOMAIN_BELOW as DOMAIN

FAMILIES = ("classifier", "segmenter", "anomaly")
CLASSES = ("scratch", "dent", "ok")
NULLABLE = {"uncertainty": "confidence", "confidence": "confidence", "anomaly": "anomaly_score",
            "targets": "target_count"}


def _seed(db: Database, rng: random.Random, n: int = 70) -> tuple[int, dict[str, int]]:
    folder = db.folders.add("/data/line1")
    other = db.folders.add("/data/line2")
    stems = ["Part", "part", "PART_b", "a-1", "Z9", "b_2", "m"]
    names = sorted({f"{rng.choice(stems)}{rng.randint(0, 25)}.png" for _ in range(n)})
    db.images.sync(folder.id, [FileEntry(p, 10, 1) for p in names])
    db.images.sync(other.id, [FileEntry(p, 10, 1) for p in names[:5]])  # another folder: never in the queue
    ids = {}
    for fam in FAMILIES:
        stale = db.model_versions.register(fam, f"{fam}-old", "/m/old")
        mv = db.model_versions.register(fam, f"{fam}-new", "/m/new")
        db.model_versions.activate(mv.id)
        ids[fam] = mv.id
        ids[f"{fam}-stale"] = stale.id
    rows = queue_rows(db, QueueQuery(folder_id=folder.id, include_missing=True))
    preds = []
    for r in rows:
        if rng.random() < 0.75:
            preds.append(PredictionIn(r.image_id, ids["classifier"], predicted_class=rng.choice(CLASSES),
                                      confidence=rng.choice([0.2, 0.5, 0.5, 0.9, None]),
                                      in_domain=rng.choice([None, 0.9, DOMAIN, 0.1])))
        if rng.random() < 0.6:
            preds.append(PredictionIn(r.image_id, ids["segmenter"], target_count=rng.choice([0, 1, 2, 2, 3, None]),
                                      in_domain=rng.choice([None, 0.9, 0.9, 0.3])))
        if rng.random() < 0.7:
            preds.append(PredictionIn(r.image_id, ids["anomaly"], anomaly_score=rng.choice([0.1, 0.4, 0.4, 0.8]),
                                      in_domain=rng.choice([None, 0.8, 0.8, 0.2])))
        preds.append(PredictionIn(r.image_id, ids["anomaly-stale"], anomaly_score=rng.random()))
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                db.labels.append(r.image_id, LabelChange(rng.choice(list(ReviewState)),
                                                         class_name=rng.choice((*CLASSES, None))), "tester")
        if rng.random() < 0.2:
            db.images.set_flagged([r.image_id], True)
    # The other folder's images (names the first folder has too) have answers, most of them out of domain: a stretch
    # out of domain is one folder's (no draws of ``rng``: the first folder's stay those of every seed).
    for k, r in enumerate(queue_rows(db, QueueQuery(folder_id=other.id))):
        for j, (fam, key, value) in enumerate((("classifier", "confidence", 0.5), ("segmenter", "target_count", 2),
                                               ("anomaly", "anomaly_score", 0.4))):
            preds.append(PredictionIn(r.image_id, ids[fam], in_domain=(0.1, 0.1, 0.9, None, 0.1)[(k + j) % 5],
                                      predicted_class="dent" if fam == "classifier" else None, **{key: value}))
    db.predictions.upsert_many(preds)
    gone = [FileEntry(p, 10, 1) for p in names if rng.random() < 0.9]  # the others go missing
    db.images.sync(folder.id, gone)
    return folder.id, ids


def _seed_rows(db: Database, rng: random.Random) -> tuple[int, dict[str, int], list[QueueRow]]:
    """A seeded folder, its model version ids, and every row of the folder (each read alone)."""
    folder_id, ids = _seed(db, rng)
    everything = [queue_row(db, r.image_id)
                  for r in queue_rows(db, QueueQuery(folder_id=folder_id, include_missing=True))]
    return folder_id, ids, [r for r in everything if r is not None]


def _reference(all_rows: list[QueueRow], qq: QueueQuery) -> list[int]:
    """The documented order, computed in Python over every row of the folder. An answer out of its model's domain
    (``qq.domain_below``) is not read by the class filter or the score range; it counts as the least confident, and
    by target count or anomaly score it comes after the values shown, by name A→Z."""
    def foreign(r: QueueRow, family: str = "classifier") -> bool:
        score = r.in_domain.get(family)
        return qq.domain_below is not None and score is not None and score < qq.domain_below

    def keep(r: QueueRow) -> bool:
        return ((qq.include_missing or not r.missing)
                and (not qq.states or r.review_state in qq.states)
                and (qq.flagged is None or r.flagged == qq.flagged)
                and (not qq.path_contains or qq.path_contains.lower() in r.rel_path.lower())
                and (qq.class_name is None or qq.class_name == r.label_class
                     or (qq.class_name == r.predicted_class and not foreign(r)))
                and (not qq.out_of_domain_only or any(foreign(r, f) for f in FAMILIES))
                and (qq.score_min is None or (r.anomaly_score is not None and r.anomaly_score >= qq.score_min))
                and (qq.score_max is None or (r.anomaly_score is not None and r.anomaly_score <= qq.score_max))
                and ((qq.score_min is None and qq.score_max is None) or not foreign(r, "anomaly")))
    rows = [r for r in all_rows if keep(r)]
    name = lambda r: (r.rel_path.lower(), r.image_id)  # noqa: E731
    if qq.sort == "name":
        return [r.image_id for r in sorted(rows, key=name, reverse=qq.descending)]
    if qq.sort == "state":
        return [r.image_id for r in sorted(rows, key=lambda r: (STATE_ORDER[r.review_state], *name(r)),
                                           reverse=qq.descending)]
    if qq.sort == "label_next":  # the ranked ones by rank (a repeated id counts once), then the others by name
        rank = {i: k for k, i in enumerate(dict.fromkeys(qq.ranking))}
        ranked = sorted((r for r in rows if r.image_id in rank), key=lambda r: rank[r.image_id], reverse=qq.descending)
        return [r.image_id for r in ranked] + [r.image_id for r in sorted(rows, key=name) if r.image_id not in rank]
    col = NULLABLE[qq.sort]
    family = {"confidence": "classifier", "target_count": "segmenter", "anomaly_score": "anomaly"}[col]
    sign = -1 if qq.sort in ("anomaly", "targets", "confidence") else 1   # "confidence": most confident first
    hidden = [r for r in rows if foreign(r, family)]                      # withheld: no value read
    have = [r for r in rows if getattr(r, col) is not None and r not in hidden]
    have.sort(key=lambda r: (sign * getattr(r, col), *name(r)), reverse=qq.descending)
    if col == "confidence":  # the least confident, tied
        hidden.sort(key=name, reverse=qq.descending)
        first, then = (hidden, have) if (sign == 1) != qq.descending else (have, hidden)
    else:  # after the values shown, by name A→Z (as the images without one)
        first, then = have, sorted(hidden, key=name)
    return [r.image_id for r in first + then] + [r.image_id for r in sorted(rows, key=name)
                                                 if getattr(r, col) is None and r not in hidden]


FILTERS = [{}, {"states": ("unreviewed",)}, {"states": ("accepted", "rejected")}, {"flagged": True},
           {"path_contains": "art"}, {"class_name": "dent"}, {"score_min": 0.3, "score_max": 0.5},
           {"include_missing": True}, {"path_contains": "_"}, {"out_of_domain_only": True},
           {"class_name": "scratch", "states": ("unreviewed",)}]


SORT_KEYS = ("name", "state", "uncertainty", "confidence", "anomaly", "targets", "label_next")


def _ranking(rng: random.Random, everything: list[QueueRow], sort: str) -> dict[str, tuple[int, ...]]:
    """A "label next" ranking over some of the folder's images, a repeat and an id of no image."""
    if sort != "label_next":
        return {}
    ids = rng.sample([r.image_id for r in everything], 12)
    return {"ranking": (*ids, ids[0], 10**9)}


def test_pages_and_counts_agree_with_a_straightforward_sort(db: Database) -> None:
    rng = random.Random(1)
    folder_id, models, everything = _seed_rows(db, rng)
    assert len(everything) == len({r.image_id for r in everything}) > 20
    for sort in SORT_KEYS:
        for descending in (False, True):
            for flt in [{}, *rng.sample(FILTERS[1:], 3)]:
                qq = QueueQuery(folder_id=folder_id, sort=sort, descending=descending, domain_below=DOMAIN, **flt,
                                **_ranking(rng, everything, sort))
                want = _reference(everything, qq)
                what = (sort, descending, flt)
                assert queue_count(db, qq) == len(want), what
                size = rng.randint(2, 9)
                assert [r.image_id for r in queue_rows(db, qq, page_size=size)] == want, what
                for offset in {rng.randrange(len(want) + 2), len(want) - 1}:
                    page = queue_page(db, qq, size, offset=offset)
                    assert [r.image_id for r in page.rows] == want[max(0, offset):offset + size], (what, offset)
    # The other folder's queue (its answers mostly out of domain, names the first folder has too): its own stretches
    other = next(f.id for f in db.folders.list() if f.id != folder_id)
    theirs = [queue_row(db, r.image_id) for r in queue_rows(db, QueueQuery(folder_id=other, include_missing=True))]
    assert sum(r is not None and r.in_domain.get("classifier", 1) < DOMAIN for r in theirs) > 1
    for sort in NULLABLE:
        for descending in (False, True):
            qq = QueueQuery(folder_id=other, sort=sort, descending=descending, domain_below=DOMAIN)
            want = _reference([r for r in theirs if r is not None], qq)
            assert queue_count(db, qq) == len(want) and [r.image_id for r in queue_rows(db, qq, page_size=2)] == want
            for offset in range(len(want) + 1):
                assert [r.image_id for r in queue_page(db, qq, 2, offset=offset).rows] == want[offset:offset + 2]


def test_a_page_continues_after_its_cursor_when_rows_change_before_it(db: Database) -> None:
    folder_id, ids = _seed(db, random.Random(3))
    qq = QueueQuery(folder_id=folder_id, sort="anomaly")
    first = queue_page(db, qq, 5)
    rest = [r.image_id for r in queue_rows(db, qq)][5:12]
    db.images.set_flagged([first.rows[0].image_id], True)  # a change above the cursor moves nothing
    assert [r.image_id for r in queue_page(db, qq, 7, after=first.cursor).rows] == rest


def test_unknown_sort_key_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="sort key"):
        queue_count(db, QueueQuery(sort="bogus"))


def test_one_row_by_id_reads_only_that_image(db: Database) -> None:
    folder_id, _ids = _seed(db, random.Random(4))
    image_id = queue_rows(db, QueueQuery(folder_id=folder_id))[3].image_id
    seen: list[str] = []
    listen = lambda conn, cursor, statement, params, context, many: seen.append(statement)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        row = queue_row(db, image_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert row is not None and row.image_id == image_id
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert re.search(r"\nWHERE images\.id = (\?|%\(image_id\)s(::INTEGER)?)$", selects[0].rstrip()), selects[0]


def _reference_next(want: list[int], states: dict[int, str], after: int | None, backward: bool) -> tuple[int, int] | None:
    """The next unreviewed image by a plain scan of the whole ordered queue, wrapping once."""
    order = list(range(len(want)))
    if backward:
        order.reverse()
    if after is not None:
        k = order.index(want.index(after))
        order = order[k + 1:] + order[:k]
    for pos in order:
        if states[want[pos]] == "unreviewed":
            return want[pos], pos
    return None


def test_next_unreviewed_agrees_with_a_scan_of_the_whole_queue(db: Database) -> None:
    rng = random.Random(5)
    folder_id, _ids, everything = _seed_rows(db, rng)
    states = {r.image_id: r.review_state for r in everything}
    assert 5 < sum(s == "unreviewed" for s in states.values()) < len(states) - 5
    found_some = 0
    for sort in SORT_KEYS:
        for descending in (False, True):
            for flt in [{}, *rng.sample(FILTERS[1:], 3)]:
                qq = QueueQuery(folder_id=folder_id, sort=sort, descending=descending, domain_below=DOMAIN, **flt,
                                **_ranking(rng, everything, sort))
                want = _reference(everything, qq)
                starts = [None, *rng.sample(want, min(6, len(want)))]
                if want:
                    starts += [want[0], want[-1]]
                for after in starts:
                    for backward in (False, True):
                        got = next_unreviewed(db, qq, after, backward=backward)
                        expected = _reference_next(want, states, after, backward)
                        assert (None if got is None else (got.image_id, got.position)) == expected, \
                            (sort, descending, flt, after, backward)
                        found_some += got is not None
                        if got is not None and rng.random() < 0.3:  # its page, read from its keys
                            size = rng.randint(1, 9)
                            start = got.position - got.position % size
                            assert [r.image_id for r in page_of(db, qq, got, size).rows] == \
                                want[start:start + size], (sort, descending, flt, after, size)
    assert found_some > 100


def test_next_unreviewed_starts_at_a_row_that_left_the_filter(db: Database) -> None:
    """A row the inspector just accepted stays on screen under "unreviewed only" (and, by
    state, in the unreviewed stretch) until the next refresh: N goes on from its place."""
    folder_id, _ids = _seed(db, random.Random(6))
    for sort, flt in (("name", {"states": ("unreviewed",)}), ("state", {})):
        qq = QueueQuery(folder_id=folder_id, sort=sort, **flt)
        before = [r.image_id for r in queue_rows(db, qq) if r.review_state == "unreviewed"]
        assert len(before) > 3
        db.labels.append(before[1], LabelChange(ReviewState.ACCEPTED), "tester")
        got = next_unreviewed(db, qq, before[1], shown_state="unreviewed")
        assert got is not None and got.image_id == before[2], sort
        rows = [r.image_id for r in queue_rows(db, qq)]
        assert rows[got.position] == before[2]


@pytest.mark.parametrize("bound", [-1, 10**6])  # "many" in range: the name walk; few: read from the score index
def test_score_range_by_name_agrees_with_a_straightforward_filter(db: Database, monkeypatch, bound: int) -> None:
    """A score range in the name order: the same rows, order, pages, counts and N/Shift+N
    whether the range is read from the score index (``by_score``) or found by a name walk."""
    import database.review_queue as rq
    monkeypatch.setattr(rq, "SCORE_CANDIDATES", bound)
    rng = random.Random(8)
    folder_id, ids, everything = _seed_rows(db, rng)
    states = {r.image_id: r.review_state for r in everything}
    ranges = [{"score_min": 0.3, "score_max": 0.5}, {"score_min": 0.4}, {"score_max": 0.4},
              {"score_min": 0.8, "score_max": 0.8}, {"score_min": 0.9}]
    extras = [{}, {"states": ("unreviewed",)}, {"path_contains": "art"}, {"include_missing": True},
              {"class_name": "dent"}]
    for rng_flt in ranges:
        for extra in extras:
            for descending in (False, True):
                qq = QueueQuery(folder_id=folder_id, sort="name", descending=descending, domain_below=DOMAIN,
                                **rng_flt, **extra)
                assert rq._narrowed(db, qq).by_score == (bound > 0)
                want = _reference(everything, qq)
                what = (rng_flt, extra, descending)
                assert queue_count(db, qq) == len(want), what
                size = rng.randint(2, 9)
                assert [r.image_id for r in queue_rows(db, qq, page_size=size)] == want, what
                for offset in {rng.randrange(len(want) + 2), max(0, len(want) - 1)}:
                    page = queue_page(db, qq, size, offset=offset)
                    assert [r.image_id for r in page.rows] == want[offset:offset + size], (what, offset)
                for after in [None, *rng.sample(want, min(3, len(want)))]:
                    for backward in (False, True):
                        got = next_unreviewed(db, qq, after, backward=backward)
                        expected = _reference_next(want, states, after, backward)
                        assert (None if got is None else (got.image_id, got.position)) == expected, \
                            (what, after, backward)
                        if got is not None:
                            start = got.position - got.position % size
                            assert [r.image_id for r in page_of(db, qq, got, size).rows] == \
                                want[start:start + size], (what, after)
    # an active version without predictions: an empty range either way
    db.model_versions.activate(db.model_versions.register("anomaly", "anomaly-unused", "/m/u").id)
    qq = QueueQuery(folder_id=folder_id, score_min=0.0)
    assert queue_rows(db, qq) == [] and queue_count(db, qq) == 0


def test_a_folders_class_and_score_counts_from_indexes_agree_with_a_straightforward_count(db: Database) -> None:
    """The exact counts of a class or a score range alone are sums of index ranges (0010):
    they must equal the Python count whatever the missing images, labels against predictions,
    another folder's predictions of the same models, or a family without an active model."""
    import database.review_queue as rq
    from database.models import Image, Prediction
    rng = random.Random(10)
    folder_id, ids, everything = _seed_rows(db, rng)
    other = next(f.id for f in db.folders.list() if f.id != folder_id)
    others = [r.image_id for r in queue_rows(db, QueueQuery(folder_id=other, include_missing=True))]
    db.predictions.upsert_many([PredictionIn(i, ids["classifier"], predicted_class="dent")
                                for i in others] + [PredictionIn(i, ids["anomaly"], anomaly_score=0.4)
                                                    for i in others])
    with db.session() as s:  # every prediction carries its image's folder (inserted or replaced)
        pairs = s.execute(select(Prediction.folder_id, Image.folder_id).join(Image, Image.id == Prediction.image_id))
        assert all(a == b for a, b in pairs)
    assert any(r.missing for r in everything) and any(r.label_class for r in everything)
    filters = [{"class_name": c} for c in (*CLASSES, "none-such")] + \
              [{"score_min": 0.3, "score_max": 0.5}, {"score_min": 0.4}, {"score_max": 0.4}, {"score_min": 0.95}]
    unpredicted = [dataclasses.replace(r, predicted_class=None, anomaly_score=None) for r in everything]
    for rows in (everything, unpredicted):
        if rows is unpredicted:  # active versions that predicted nothing: no prediction counts
            for fam in ("classifier", "anomaly"):
                db.model_versions.activate(db.model_versions.register(fam, f"{fam}-unused", "/m/u").id)
        for flt in filters:
            for extra in ({}, {"include_missing": True}, {"domain_below": DOMAIN},
                          {"domain_below": DOMAIN, "include_missing": True}):
                qq = QueueQuery(folder_id=folder_id, **extra, **flt)
                assert rq._indexed_count(qq) is not None
                assert queue_count(db, qq) == len(_reference(rows, qq)), (flt, extra)
    # with another filter the join counts (no index range holds both)
    assert rq._indexed_count(QueueQuery(folder_id=folder_id, class_name="dent", states=("unreviewed",))) is None


def test_a_name_search_finds_both_unicode_spellings(db: Database) -> None:
    """A session-46 probe: "défaut" typed (precomposed) found no file named as macOS writes it (decomposed)."""
    folder = db.folders.add("/data/line7")
    names = ["d\u00e9faut_1.png", "de\u0301faut_2.png", "other.png"]
    db.images.sync(folder.id, [FileEntry(n, 1, 0) for n in names])
    for typed in ("d\u00e9faut", "de\u0301faut"):
        rows = queue_rows(db, QueueQuery(folder_id=folder.id, path_contains=typed))
        assert sorted(r.rel_path for r in rows) == sorted(names[:2]), typed
        assert queue_count(db, QueueQuery(folder_id=folder.id, path_contains=typed)) == 2


def test_a_name_search_folds_the_case_of_letters_beyond_ascii(db: Database) -> None:
    """A session-49 audit: the README says the name filter is case-insensitive, but the database folds ASCII letters
    alone: "écaille" found no "ÉCAILLE.png", "łódź" no "Łódź_part.png", and "DÉFAUT" only the decomposed "défaut"."""
    folder = db.folders.add("/data/line8")
    names = ["\u00c9CAILLE.png", "\u0141\u00f3d\u017a_part.png", "d\u00e9faut_1.png", "de\u0301faut_2.png",
             "other.png", "\u21167-\u0141\u00f3d\u017a.png"]
    db.images.sync(folder.id, [FileEntry(n, 1, 0) for n in names])
    for typed, found in (("\u00e9caille", names[:1]), ("\u00c9CAILLE", names[:1]), ("\u0142\u00f3d\u017a", [names[1], names[5]]),
                         ("\u0141\u00d3D\u0179", [names[1], names[5]]), ("D\u00c9FAUT", names[2:4]), ("d\u00e9faut", names[2:4]),
                         ("\u21167-\u0142\u00f3d\u017a", names[5:6])):   # a sign before: not taken for the capital
        rows = queue_rows(db, QueueQuery(folder_id=folder.id, path_contains=typed))
        assert sorted(r.rel_path for r in rows) == sorted(found), typed
        assert queue_count(db, QueueQuery(folder_id=folder.id, path_contains=typed)) == len(found), typed


def test_the_confidence_sort_is_not_the_uncertainty_sort_again() -> None:
    """A session-49 audit: "confidence" gave exactly the order of "uncertainty (least confident first)", forwards and
    reversed: two entries of the sort box doing one thing. It puts the most confident first."""
    from database.review_queue import SORTS
    assert SORTS["uncertainty"] == ("confidence", True) and SORTS["confidence"] == ("confidence", False)


def test_an_answer_out_of_its_domain_names_no_class_and_is_the_least_confident(db: Database) -> None:
    """A session-50 audit: the gallery's chip said "out of domain" for infrared frames and bottles through the steel
    classifier, yet the class filter "crazing" listed them (10 of its 14 rows), "confidence (most confident first)"
    put an out-of-domain sky frame at the top (its hidden confidence 1.0) and "uncertainty (least confident first)"
    put those images last. The class filter reads a predicted class only where its answer is in domain (a label's class
    always counts); an answer out of domain is the least confident: first from least confident, last from most."""
    folder = db.folders.add("/data/mixed")
    names = ["bottle.png", "crazing_1.png", "crazing_2.png", "labelled_sky.png", "patches_1.png", "sky.png",
             "unknown.png"]
    db.images.sync(folder.id, [FileEntry(n, 10, 1) for n in names])
    steel = db.model_versions.register("classifier", "steel", "/m/steel")
    db.model_versions.activate(steel.id)
    ids = {r.rel_path: r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder.id))}
    answers = {"bottle.png": ("crazing", 0.97, 0.2), "crazing_1.png": ("crazing", 0.9, 0.8),
               "crazing_2.png": ("crazing", 0.6, None), "labelled_sky.png": ("crazing", 1.0, 0.05),
               "patches_1.png": ("patches", 0.99, DOMAIN), "sky.png": ("crazing", 1.0, 0.01)}
    db.predictions.upsert_many([PredictionIn(ids[n], steel.id, predicted_class=c, confidence=p, in_domain=d)
                                for n, (c, p, d) in answers.items()])
    db.labels.append(ids["labelled_sky.png"], LabelChange(ReviewState.CORRECTED, class_name="crazing"), "tester")

    def shown(**kw: object) -> list[str]:
        qq = QueueQuery(folder_id=folder.id, domain_below=DOMAIN, **kw)
        rows = [r.rel_path for r in queue_rows(db, qq, page_size=2)]
        assert queue_count(db, qq) == len(rows), kw
        return rows

    assert shown(class_name="crazing") == ["crazing_1.png", "crazing_2.png", "labelled_sky.png"]  # index count
    assert shown(class_name="crazing", states=("unreviewed",)) == ["crazing_1.png", "crazing_2.png"]  # joined
    assert shown(sort="confidence") == ["patches_1.png", "crazing_1.png", "crazing_2.png", "bottle.png",
                                        "labelled_sky.png", "sky.png", "unknown.png"]
    assert shown(sort="uncertainty") == ["bottle.png", "labelled_sky.png", "sky.png", "crazing_2.png",
                                         "crazing_1.png", "patches_1.png", "unknown.png"]
    assert shown(out_of_domain_only=True) == ["bottle.png", "labelled_sky.png", "sky.png"]
    by_confidence = QueueQuery(folder_id=folder.id, domain_below=DOMAIN, sort="confidence")
    for after, backward, want in (("crazing_2.png", False, ("bottle.png", 3)), ("bottle.png", True, ("crazing_2.png", 2)),
                                  ("labelled_sky.png", False, ("sky.png", 5))):
        got = next_unreviewed(db, by_confidence, ids[after], backward=backward)
        assert got is not None and (got.image_id, got.position) == (ids[want[0]], want[1]), after
    with pytest.raises(ValueError, match="domain_below"):
        queue_count(db, QueueQuery(folder_id=folder.id, out_of_domain_only=True))


def test_a_count_or_score_out_of_its_domain_is_withheld_by_the_sorts_and_the_range(db: Database) -> None:
    """A session-50 audit: "target count" put Misc_145.png and Misc_15_rot.jpg among the 2-target frames, on the count
    of a segmenter answer out of its domain (the chip said "out of domain", no ◎ chip, no "targets:" line): the order
    read the count the window withholds. "anomaly score" and the score range read an anomaly answer out of domain the
    same way. Withheld answers of the sort's family come after the values shown, by name A→Z whatever the direction
    (then the images without a value); the score range matches no score out of domain, and its count agrees."""
    folder = db.folders.add("/data/misc")
    names = ["a_two.png", "b_foreign_two.png", "c_one.png", "d_foreign_three.png", "e_two.png", "f_none.png",
             "g_foreign_none.png"]
    db.images.sync(folder.id, [FileEntry(n, 10, 1) for n in names])
    seg = db.model_versions.register("segmenter", "seg", "/m/seg")
    ano = db.model_versions.register("anomaly", "ano", "/m/ano")
    for mv in (seg, ano):
        db.model_versions.activate(mv.id)
    ids = {r.rel_path: r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder.id))}
    answers = {"a_two.png": (2, 0.4, 0.9), "b_foreign_two.png": (2, 0.45, 0.1), "c_one.png": (1, 0.2, None),
               "d_foreign_three.png": (3, 0.9, 0.3), "e_two.png": (2, 0.6, DOMAIN), "g_foreign_none.png": (None, None, 0.2)}
    db.predictions.upsert_many([PredictionIn(ids[n], mv.id, in_domain=d, **{key: v})
                                for n, (count, score, d) in answers.items()
                                for mv, key, v in ((seg, "target_count", count), (ano, "anomaly_score", score))])
    foreign = ["b_foreign_two.png", "d_foreign_three.png", "g_foreign_none.png"]

    def shown(**kw: object) -> list[str]:
        qq = QueueQuery(folder_id=folder.id, domain_below=DOMAIN, **kw)
        rows = [r.rel_path for r in queue_rows(db, qq, page_size=2)]
        assert queue_count(db, qq) == len(rows), kw
        for offset in range(len(rows) + 1):
            assert [r.rel_path for r in queue_page(db, qq, 2, offset=offset).rows] == rows[offset:offset + 2], kw
        return rows

    for sort, values in (("targets", ["a_two.png", "e_two.png", "c_one.png"]),  # 2, 2 (by name), 1
                         ("anomaly", ["e_two.png", "a_two.png", "c_one.png"])):  # 0.6, 0.4, 0.2
        assert shown(sort=sort) == [*values, *foreign, "f_none.png"], sort
        assert shown(sort=sort, descending=True) == [*values[::-1], *foreign, "f_none.png"], sort
    assert shown(score_min=0.3) == ["a_two.png", "e_two.png"]            # the name walk (a joined count)
    assert shown(score_min=0.3, states=("unreviewed",)) == ["a_two.png", "e_two.png"]
    assert shown(score_max=0.5, sort="anomaly") == ["a_two.png", "c_one.png"]
    by_targets = QueueQuery(folder_id=folder.id, domain_below=DOMAIN, sort="targets")
    for after, backward, want in (("c_one.png", False, ("b_foreign_two.png", 3)),
                                  ("b_foreign_two.png", True, ("c_one.png", 2)),
                                  ("g_foreign_none.png", False, ("f_none.png", 6)),
                                  ("f_none.png", True, ("g_foreign_none.png", 5))):
        got = next_unreviewed(db, by_targets, ids[after], backward=backward)
        assert got is not None and (got.image_id, got.position) == (ids[want[0]], want[1]), after
