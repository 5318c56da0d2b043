"""Champion and challenger: a retrained version waits as the challenger; the disagreement queue
compares stored predictions of both versions; promotion and roll back are recorded and audited."""
from __future__ import annotations

import csv
import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services import champion
from app.services.audit import write_audit
from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.model_catalog import ModelCatalog, ModelCatalogError
from database.dto import LabelChange, ModelVersionInfo, PredictionIn
from database.engine import open_database
from database.states import ReviewState
from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)
from tests.services.model_fixtures import make_model_dir
from tests.worker.helpers import good_images

COMPARISON = {"held_out_images": 12, "new": {"accuracy": 0.9, "macro_f1": 0.8},
              "parent": {"accuracy": 0.7, "macro_f1": 0.5}, "parent_name": "classifier-a"}


@pytest.fixture
def db(url: str):  # noqa: F811 - the imported fixture
    """SQLite, and PostgreSQL too when INSPECTION_TEST_POSTGRES_URL is set."""
    database = open_database(url)
    yield database
    database.close()


def _versions(db, tmp_path: Path, family: str = "classifier", arch: str = "memory_mamba"):
    a = db.model_versions.register(family, f"{family}-a", str(make_model_dir(tmp_path / f"{family}-a", family, arch)),
                                   activate=True)
    card = {"family": family, "retraining": {"held_out_comparison": COMPARISON}}
    b = db.model_versions.register(family, f"{family}-b", str(make_model_dir(tmp_path / f"{family}-b", family, arch, card)),
                                   card=card, parent_id=a.id, challenger=True)
    return a, b


def _png(mask: np.ndarray) -> bytes:
    return cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()


def test_a_challenger_is_not_active_and_one_per_family_and_parent(db, tmp_path) -> None:
    a, b = _versions(db, tmp_path)
    assert not b.active and b.challenger and db.model_versions.active("classifier").id == a.id
    c = db.model_versions.register("classifier", "classifier-c", str(tmp_path / "c"), parent_id=a.id, challenger=True)
    assert db.model_versions.challenger("classifier").id == c.id
    assert not db.model_versions.get(b.id).challenger   # the same parent: c replaces b
    d = db.model_versions.register("classifier", "classifier-d", str(tmp_path / "d"), challenger=True)
    e = db.model_versions.register("classifier", "classifier-e", str(tmp_path / "e"), parent_id=b.id, challenger=True)
    assert [v.id for v in db.model_versions.challengers("classifier")] == [e.id, d.id, c.id]   # three lineages
    f = db.model_versions.register("classifier", "classifier-f", str(tmp_path / "f"), challenger=True)
    assert [v.id for v in db.model_versions.challengers("classifier")] == [f.id, e.id, c.id]   # no parent: one too


def test_the_pair_shows_the_held_out_comparison_from_the_challengers_card(db, tmp_path) -> None:
    a, b = _versions(db, tmp_path)
    pair = champion.pair(db, "classifier")
    assert pair.champion.id == a.id and pair.challenger.id == b.id
    assert pair.held_out.images == 12 and pair.held_out.reference == "classifier-a"
    assert pair.held_out.rows == (("accuracy", 0.7, 0.9), ("macro_f1", 0.5, 0.8))
    assert champion.pair(db, "segmenter") is None


def test_the_held_out_note_says_when_the_challenger_was_refitted_after_its_check() -> None:
    """ADR 0048: the registered version learnt from every label after the check; the panel must not pass the
    checked fit's figures off as the registered version's (the terminal and the done message said it; the
    panel, read later, did not)."""
    card = {"retraining": {"held_out_comparison": {"held_out_images": 5, "new": {"accuracy": 0.6},
                                                   "refitted_on_all": True}}}
    v = ModelVersionInfo(id=1, family="classifier", name="c", checkpoint_path="x", config={}, metrics={}, card=card,
                         active=False, bundled=False, parent_id=None, created_at=datetime.now(timezone.utc))
    assert "then refitted on all reviewed labels" in champion.held_out(v).note


def test_the_held_out_note_says_the_champion_knows_classes_the_challenger_does_not() -> None:
    """A session-50 audit: the retrain line said the previous version "also knows 3 class(es) these labels do not
    use, …: the new version knows only those"; the Models dialog and ``models compare`` rebuilt their note from the
    card and left it out, so a challenger that would never answer three of the champion's classes read as a plain
    improvement."""
    compared = {"held_out_images": 7, "new": {"accuracy": 1.0}, "parent": {"accuracy": 0.9},
                "parent_name": "classifier-neu-texture",
                "parent_more_classes": ["inclusion", "pitted_surface", "rolled-in_scale"]}
    v = ModelVersionInfo(id=1, family="classifier", name="c", checkpoint_path="x", config={}, metrics={},
                         card={"retraining": {"held_out_comparison": compared}}, active=False, bundled=False,
                         parent_id=None, created_at=datetime.now(timezone.utc))
    assert ("classifier-neu-texture also knows 3 classes these labels do not use, inclusion, pitted_surface, "
            "rolled-in_scale: its answers there count as misses, its averages are over the reviewed classes; the new "
            "version knows only those") in champion.held_out(v).note


def test_the_held_out_note_gives_the_check_on_every_label_that_decided() -> None:
    """ADR 0072: the refusal reads every reviewed label (nested cross-validation with the held-out part); the panel
    shows that figure beside the held-out one, which alone could read the other way."""
    simple = {"best_simple": "thumbnail_logreg", "held_out": {"thumbnail_logreg": {"accuracy": 0.75, "f1": 0.41}},
              "pooled": {"images": 240, "seconds": 3.9, "new": {"accuracy": 0.804, "f1": 0.611},
                         "simple": {"accuracy": 0.725, "f1": 0.446}, "wins": True}}
    card = {"retraining": {"held_out_comparison": {"held_out_images": 48, "new": {"accuracy": 0.729, "f1": 0.52},
                                                   "simple_answers": simple}}}
    v = ModelVersionInfo(id=1, family="classifier", name="c", checkpoint_path="x", config={}, metrics={}, card=card,
                         active=False, bundled=False, parent_id=None, created_at=datetime.now(timezone.utc))
    assert ("on all 240 reviewed labels (nested cross-validation, with the held-out ones): new accuracy 0.804, "
            "macro F1 0.611, best simple answer accuracy 0.725, macro F1 0.446") in champion.held_out(v).note
    assert "registered all the same" not in champion.held_out(v).note
    lost = {"retraining": {"held_out_comparison": {"held_out_images": 48, "simple_answers": {**simple, "wins": False}}}}
    assert "it lost to the best simple answer and was registered all the same" in \
        champion.held_out(dataclasses.replace(v, card=lost)).note


def test_the_pair_says_what_each_version_learnt_from_and_why_neither_was_scored() -> None:
    """Seen under Xvfb (session 35): a challenger retrained from 10 reviewed good bottles, its threshold from 2 of
    them, was one click from replacing the bundled bottle model (178 images, threshold from 31); the panel said only
    "the previous version was not scored: no held-out images it can be scored on"."""
    from app.services.retraining import RetrainPlan, comparison, comparison_text

    def version(vid: int, name: str, card: dict) -> ModelVersionInfo:
        return ModelVersionInfo(id=vid, family="anomaly", name=name, checkpoint_path="x", config={}, metrics={},
                                card=card, active=vid == 1, bundled=False, parent_id=None,
                                created_at=datetime.now(timezone.utc))

    parent = version(1, "anomaly-bottle", {"data": {"train_good": 178, "holdout_good": 31}})
    plan = RetrainPlan("anomaly", "anomaly-retrained", Path("."), Path("."), (), parent, "from scratch on good parts",
                       {"normal_train": 10, "anomalous_test": 0, "held_out": 2})
    compared = comparison(plan, None, None)
    assert "hold no anomalous part" in compared["parent_not_scored"]
    assert "hold no anomalous part" in comparison_text(compared)
    new = version(2, "anomaly-retrained", {"data": {"train_good": 8, "holdout_good": 2},
                                            "retraining": {"held_out_comparison": compared}})
    note = champion.held_out(new).note
    assert note.startswith("the challenger was not scored") and "hold no anomalous part" in note
    learnt = champion.trained_on_note(parent, new)
    assert learnt == ("learnt from: anomaly-retrained 8 images (its threshold from 2 held-out good ones), "
                      "anomaly-bottle 178 images (its threshold from 31 held-out good ones); "
                      "the challenger learnt from 1/5 or less of what the champion did")
    assert champion.trained_on(version(3, "x", {"data": {"train_images": 862}})) == (862, None)
    steel = version(5, "steel", {"classes": ["crazing"], "data": {"train_images": 1152}})
    bottles = version(6, "bottles", {"classes": ["broken"], "data": {"train_images": 31}})
    assert champion.trained_on_note(steel, bottles) == "learnt from: bottles 31 images, steel 1152 images"
    assert champion.trained_on_note(None, version(4, "y", {})) == ""


def test_mask_iou_and_the_documented_cut() -> None:
    a = np.zeros((8, 8), bool)
    a[:4] = True
    b = np.zeros((8, 8), bool)
    b[:2] = True
    assert champion.mask_iou(a, b) == pytest.approx(0.5)
    assert champion.mask_iou(None, np.zeros((4, 4), bool)) == 1.0
    assert champion.mask_iou(a, None) == 0.0
    big = cv2.resize(a.astype(np.uint8), (16, 16), interpolation=cv2.INTER_NEAREST) > 0
    assert champion.mask_iou(a, big) == 1.0   # another resolution, same mask


def _pred(**kw):
    from datetime import datetime, timezone

    from database.dto import PredictionInfo
    base = dict(id=1, image_id=1, model_version_id=1, class_scores=None, predicted_class=None, confidence=None,
                mask_png=None, mask_ref=None, target_count=None, anomaly_score=None, anomaly_map_ref=None, flags=(),
                created_at=datetime.now(timezone.utc))
    return PredictionInfo(**{**base, **kw})


def test_disagreement_reasons_per_family() -> None:
    reason = champion.disagreement_reason
    assert reason("classifier", _pred(predicted_class="ok"), _pred(predicted_class="ok")) == (None, None)
    assert reason("classifier", _pred(predicted_class="ok"), _pred(predicted_class="scratch"))[0] == "class ok → scratch"
    # each version at its own threshold: 0.6 is anomalous for one and normal for the other
    assert reason("anomaly", _pred(anomaly_score=0.6), _pred(anomaly_score=0.6), (0.5, 0.7))[0] == "verdict anomalous → normal"
    assert reason("anomaly", _pred(anomaly_score=0.6), _pred(anomaly_score=0.9), (0.5, 0.7))[0] is None
    assert reason("anomaly", _pred(anomaly_score=0.6), _pred(anomaly_score=0.1), (None, 0.7))[0] is None   # no verdict
    a = np.zeros((8, 8), bool)
    a[:4] = True
    b = np.zeros((8, 8), bool)
    b[:3] = True
    c = np.zeros((8, 8), bool)
    c[:1] = True
    assert reason("segmenter", _pred(mask_png=_png(a)), _pred(mask_png=_png(b))) == (None, 0.75)
    text, iou = reason("segmenter", _pred(mask_png=_png(a)), _pred(mask_png=_png(c)))
    assert text == "mask IoU 0.25" and iou == 0.25 < champion.MASK_IOU_MIN


def test_an_answer_out_of_domain_is_withheld_in_the_queue_as_on_the_label_panel() -> None:
    """Found under Xvfb: the queue showed the NEU champion's "crazing 1.00" on magnetic tiles that the
    label panel (rightly) called out of domain."""
    foreign = _pred(predicted_class="crazing", confidence=1.0, in_domain=0.0, flags=("out_of_domain",))
    own = _pred(predicted_class="uneven", confidence=0.98, in_domain=0.9)
    assert champion.answer("classifier", foreign).text == "out of domain (in-domain score 0.00)"
    assert champion.answer("classifier", own).text == "uneven 0.98"
    assert champion.disagreement_reason("classifier", foreign, own)[0] == "out of domain → uneven 0.98"
    # the score alone decides where a row carries no flag (an older row); two withheld answers agree
    low = _pred(predicted_class="uneven", confidence=0.9, in_domain=0.01)
    assert champion.answer("classifier", low).text.startswith("out of domain")
    assert champion.disagreement_reason("classifier", foreign, low) == (None, None)
    seg = _pred(target_count=2, mask_png=_png(np.ones((4, 4), bool)), in_domain=0.0)
    assert champion.answer("segmenter", seg).mask_png is None   # no overlay for a withheld answer


def _folder(db, tmp_path: Path, n: int) -> list[int]:
    good_images(tmp_path / "imgs", n)
    index_folder(db, tmp_path / "imgs")
    return sorted(im.id for im in db.images.get_many(list(range(1, n + 1))))


def test_the_comparison_takes_recently_reviewed_then_recent_images_bounded(db, tmp_path) -> None:
    ids = _folder(db, tmp_path, 10)
    for i in (ids[2], ids[5], ids[1]):   # reviewed in this order: the latest first
        db.labels.append(i, LabelChange(ReviewState.ACCEPTED, class_name="ok"), "ann")
    chosen = champion.compare_image_ids(db, limit=4)
    assert chosen[:2] == [ids[1], ids[5]] and len(chosen) == 4 and len(set(chosen)) == 4
    assert ids[2] not in chosen   # half reviewed, half recent when both are plentiful
    assert champion.compare_image_ids(db, limit=100)[:3] == [ids[1], ids[5], ids[2]]
    assert len(champion.compare_image_ids(db, limit=100)) == 10


def test_submit_compare_queues_only_what_is_missing_and_disagreements_list_both_answers(db, tmp_path) -> None:
    a, b = _versions(db, tmp_path)
    ids = _folder(db, tmp_path, 4)
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in ids])
    jobs = champion.submit_compare(db, b.id)
    assert len(jobs) == 1   # the champion has predicted them all: only the challenger runs
    job = db.jobs.get(jobs[0])
    assert job.kind == champion.COMPARE and job.params["model_versions"] == {"classifier": b.id}
    assert "profile" not in job.params  # each card's default, as the project pre-labels
    assert sorted(it.image_id for it in db.jobs.items(job.id)) == sorted(ids)
    waiting = champion.find_disagreements(db, b.id)
    assert (waiting.images, waiting.compared, waiting.disagreements) == (4, 0, ())
    db.predictions.upsert_many([PredictionIn(i, b.id, predicted_class="scratch" if i in ids[:2] else "ok",
                                             confidence=0.9) for i in ids])
    found = champion.find_disagreements(db, b.id)
    assert (found.compared, found.waiting) == (4, 0)
    assert [d.image_id for d in found.disagreements] == [ids[0], ids[1]]
    first = found.disagreements[0]
    assert (first.reason, first.champion.text, first.challenger.text, first.human) == (
        "class ok → scratch", "ok 0.80", "scratch 0.90", "scratch")
    assert found.disagreements[1].human == "" and Path(first.path).is_file()
    assert champion.submit_compare(db, b.id) == jobs   # asked again while it waits: the same job
    db.jobs.request_cancel(jobs[0])
    assert champion.submit_compare(db, b.id) == []   # all there now


def test_anomaly_disagreements_use_the_folders_threshold(db, tmp_path) -> None:
    from app.services.flags import FolderThreshold
    from app.services.project_settings import save_flag_settings
    a, b = _versions(db, tmp_path, "anomaly", "pattern_anomaly")
    ids = _folder(db, tmp_path, 2)
    folder = db.images.get_many(ids)[0].folder_id
    db.predictions.upsert_many([PredictionIn(i, a.id, anomaly_score=0.6) for i in ids]
                               + [PredictionIn(i, b.id, anomaly_score=0.6) for i in ids])
    assert champion.find_disagreements(db, b.id).disagreements == ()   # no thresholds: no verdicts
    save_flag_settings(db, FlagSettings(anomaly_threshold=0.5, folder_thresholds=(
        FolderThreshold(folder, b.id, 0.7),)), "ann")
    found = champion.find_disagreements(db, b.id)
    assert {d.reason for d in found.disagreements} == {"verdict anomalous → normal"}


def test_no_comparison_without_a_champion_or_with_itself(db, tmp_path) -> None:
    a, b = _versions(db, tmp_path)
    with pytest.raises(champion.ComparisonError, match="is the active"):
        champion.submit_compare(db, a.id)
    with pytest.raises(champion.ComparisonError, match="does not exist"):
        champion.find_disagreements(db, 999)


def test_a_champion_that_answers_for_no_image_says_why_nothing_is_compared(db, tmp_path) -> None:
    """Seen under Xvfb: the tile line routed to the tile classifier, the pair of the steel champion and a challenger
    retrained from it on tiles read "0 disagreement(s) in 0 image(s) compared" and nothing more."""
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images

    a, b = _versions(db, tmp_path)
    db.model_versions.register("classifier", "tile-v1", str(tmp_path / "tile"))
    good_images(tmp_path / "lot" / "tiles", 3, seed=1)
    index_folder(db, tmp_path / "lot")
    assert champion.find_disagreements(db, b.id).note == ""          # every family on every image: a serves them
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
    found = champion.find_disagreements(db, b.id)
    assert found.images == 0 and found.note == (
        "classifier-a answers for none of this project's images now: the model routing runs other classifier versions "
        "on all of them, so there is nothing to compare classifier-b with here")


def test_a_version_promoted_for_its_rules_images_is_compared_with_the_one_it_was_made_from(db, tmp_path) -> None:
    """A session-48 audit: after ``models promote`` of a tile classifier retrained from the tile line's version, ``models
    compare`` paired it with the family's active steel classifier, which answers for none of the tiles, while its
    held-out line named its parent. It is compared with its parent, on the images it answers for."""
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database import PredictionIn
    from tests.worker.helpers import good_images

    _versions(db, tmp_path)   # classifier-a: the active (steel) one
    tile = db.model_versions.register("classifier", "tile-v1", str(make_model_dir(tmp_path / "t1", "classifier",
                                                                                  "memory_mamba")))
    new = db.model_versions.register("classifier", "tile-v2", str(make_model_dir(tmp_path / "t2", "classifier",
                                                                                 "memory_mamba")), parent_id=tile.id)
    good_images(tmp_path / "lot" / "tiles", 3, seed=1)
    good_images(tmp_path / "lot" / "steel", 2, seed=2)
    index_folder(db, tmp_path / "lot")
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v2"),)),)))   # promoted
    tiles = [im.id for im in db.images.query() if im.rel_path.startswith("tiles/")]
    db.predictions.upsert_many([PredictionIn(i, v.id, predicted_class=c, confidence=0.9)
                                for i in tiles for v, c in ((tile, "ok"), (new, "crack"))])
    found = champion.find_disagreements(db, new.id)
    assert found.champion_id == tile.id and found.images == 3 and len(found.disagreements) == 3
    # an earlier candidate of the active version (no longer the challenger: a later retraining replaced it) is still
    # compared with the active one on its images (the review of this fix: it was taken for a promoted one, 0 images)
    steel_a = db.model_versions.active("classifier")
    steel_b = db.model_versions.by_name("classifier", "classifier-b")
    db.model_versions.register("classifier", "classifier-c", str(make_model_dir(tmp_path / "c", "classifier",
                                                                                "memory_mamba")),
                               parent_id=steel_a.id, challenger=True)
    steel = [im.id for im in db.images.query() if im.rel_path.startswith("steel/")]
    db.predictions.upsert_many([PredictionIn(i, v.id, predicted_class=c, confidence=0.9)
                                for i in steel for v, c in ((steel_a, "ok"), (steel_b, "crack"))])
    earlier = champion.find_disagreements(db, steel_b.id)
    assert earlier.champion_id == steel_a.id and earlier.images == 2 and earlier.note == ""
    orphan = db.model_versions.register("classifier", "tile-v0", str(tmp_path / "t0"))
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v0"),)),)))
    with pytest.raises(champion.ComparisonError, match=r"tile-v0 answers for tiles/\* .* made from no earlier version"):
        champion.find_disagreements(db, orphan.id)


def test_promotion_and_roll_back_are_recorded_and_in_the_audit_export(db, tmp_path) -> None:
    a, b = _versions(db, tmp_path)
    catalog = ModelCatalog(db, author=lambda: "ann")
    assert catalog.previous_champion("classifier") is None
    with pytest.raises(ModelCatalogError, match="nothing to roll back"):
        catalog.rollback("classifier")
    row = catalog.activate(b.id)
    assert row.active and not row.challenger and db.model_versions.challenger("classifier") is None
    assert catalog.previous_champion("classifier").id == a.id
    back = catalog.rollback("classifier", note="worse on night shift")
    assert back.id == a.id and back.active
    assert db.model_versions.challenger("classifier").id == b.id   # under review again
    assert catalog.previous_champion("classifier") is None   # no roll back of the roll back: promote it again
    log = db.model_versions.activations("classifier")
    assert [(x.action, x.version_name, x.previous_name, x.author) for x in log] == [
        ("promote", "classifier-b", "classifier-a", "ann"), ("rollback", "classifier-a", "classifier-b", "ann")]
    assert log[1].note == "worse on night shift"
    out = write_audit(db, tmp_path / "audit.csv", None, FlagSettings())
    rows = list(csv.DictReader(open(out.path, encoding="utf-8-sig")))
    assert out.rows == 2
    assert [(r["who"], r["model_version"], r["changed"]) for r in rows] == [
        ("ann", "classifier-b", "active: classifier-a → classifier-b (promote)"),
        ("ann", "classifier-a", "active: classifier-b → classifier-a (rollback)")]


def test_after_a_roll_back_the_pair_is_the_replaced_version_not_one_made_from_it(db, tmp_path) -> None:
    """Found by a session-45 probe: b promoted over a; c retrained from b and registered; roll back to a (b is a's
    challenger again, as the message said). The panel paired a with c, whose figures were measured against b, and
    Make active promoted c."""
    a, b = _versions(db, tmp_path)
    catalog = ModelCatalog(db, author=lambda: "ann")
    catalog.activate(b.id)
    c = db.model_versions.register("classifier", "classifier-c", str(make_model_dir(tmp_path / "c", "classifier",
                                                                                   "memory_mamba")),
                                   parent_id=b.id, challenger=True)
    catalog.rollback("classifier")
    assert {v.id for v in db.model_versions.challengers("classifier")} == {b.id, c.id}
    pair = champion.pair(db, "classifier")
    assert pair.champion.id == a.id and pair.challenger.id == b.id
    assert champion.pair(db, "classifier", a.id).challenger.id == b.id


def test_the_models_command_compares_promotes_and_rolls_back_headless(tmp_path, capsys) -> None:
    from app.cli import main
    cli_url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    db = open_database(cli_url)
    a, b = _versions(db, tmp_path)
    ids = _folder(db, tmp_path, 2)
    db.labels.append(ids[0], LabelChange(ReviewState.ACCEPTED, class_name="ok"), "ann")
    db.predictions.upsert_many([PredictionIn(ids[0], a.id, predicted_class="ok", confidence=0.7),
                                PredictionIn(ids[0], b.id, predicted_class="scratch", confidence=0.6)])
    db.close()
    assert main(["models", "compare", str(b.id), "--db", cli_url]) == 0
    out, err = capsys.readouterr()
    assert "champion classifier-a · challenger classifier-b" in out and "accuracy 0.700 → 0.900" in out
    assert "1 disagreement in 1 of 2 images" in out and "class ok → scratch" in out and "[human: ok]" in out
    assert "1 image not run by both versions yet: queued for a worker" in err
    assert main(["models", "compare", str(b.id), "--db", cli_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["waiting"] == 1 and data["disagreements"][0]["why"] == "class ok → scratch"
    assert main(["models", "promote", str(b.id), "--db", cli_url, "--author", "bob", "--note", "reviewed"]) == 0
    assert "classifier-b is now the active classifier model: the next pre-label run uses it. Recorded for bob." \
        in capsys.readouterr().out
    assert main(["models", "rollback", "classifier", "--db", cli_url, "--author", "bob"]) == 0
    assert main(["models", "rollback", "classifier", "--db", cli_url]) == 2   # once: b is the challenger again
    # said as it is (a session-46 probe: "replaced none that still exists" of b, which exists)
    assert "the last change of the classifier was a roll back: promote classifier-b to undo it" in \
        capsys.readouterr().err
    assert main(["models", "promote", str(b.id), "--db", cli_url]) == 0   # promoted again after another look
    assert main(["models", "compare", "999", "--db", cli_url]) == 2
    db = open_database(cli_url)
    try:
        log = db.model_versions.activations("classifier")
        assert [(x.action, x.author, x.note) for x in log][:2] == [("promote", "bob", "reviewed"), ("rollback", "bob", None)]
        assert db.model_versions.active("classifier").id == b.id
        queued = db.jobs.list(kind=champion.COMPARE)   # asked twice, queued once: each version on the image it lacks
        assert sorted(j.params["model_versions"]["classifier"] for j in queued) == [a.id, b.id]
    finally:
        db.close()
    assert main(["models", "list", "--db", cli_url]) == 0
    assert "active" in capsys.readouterr().out


def test_the_models_list_columns_are_the_ones_the_docs_name(tmp_path, capsys) -> None:
    """A session-51 audit: docs/retraining.md gave `models list`'s columns as "id, family, …" and the command prints
    the family first, then the id."""
    from app.cli import main
    cli_url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    db = open_database(cli_url)
    a, _b = _versions(db, tmp_path)
    db.close()
    doc = (Path(__file__).resolve().parents[2] / "docs" / "retraining.md").read_text(encoding="utf-8")
    columns = next(line for line in doc.splitlines() if line.startswith("python main.py models list"))
    named = [c.strip() for c in columns.split("#", 1)[1].split(",")]
    assert main(["models", "list", "--db", cli_url]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if a.name in line).split()
    assert (row[named.index("family")], row[named.index("id")], row[named.index("active / challenger")]) == \
        ("classifier", str(a.id), "active"), (named, row)


def test_side_by_side_draws_each_versions_mask_at_the_images_size(tmp_path) -> None:
    img = np.full((40, 80), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "part.png"), img)
    left = np.zeros((10, 20), bool)
    left[:, :10] = True   # the champion's mask: the left half, at a model's smaller size
    d = champion.Disagreement(1, str(tmp_path / "part.png"), "part.png", "mask IoU 0.00",
                              champion.Answer("1 target", _png(left)), champion.Answer("no mask", None), "")
    a, b = champion.side_by_side(d, size=40, color=(255, 0, 0))
    assert a.shape == b.shape == (20, 40, 3)   # the longer side brought down to 40
    assert a[10, 5, 0] > a[10, 5, 1] and tuple(a[10, 30]) == (100, 100, 100)   # drawn on the left half only
    assert (b == 100).all()   # no mask, the image as it is
    with pytest.raises(champion.ComparisonError, match="no longer indexed"):
        champion.side_by_side(dataclasses.replace(d, path=None), 40, (255, 0, 0))


def test_compare_jobs_run_the_projects_speed_profile(db, tmp_path) -> None:
    """A challenger is compared as the project would run it (ADR 0025)."""
    from app.services.project_settings import save_speed_profile

    a, b = _versions(db, tmp_path)
    _folder(db, tmp_path, 2)
    save_speed_profile(db, "fast")
    jobs = champion.submit_compare(db, b.id)
    assert jobs and all(db.jobs.get(j).params["profile"] == "fast" for j in jobs)


def test_disagreements_on_labels_older_than_the_retraining_say_it_may_have_learnt_them(db, tmp_path) -> None:
    """A retrained challenger (refitted on every reviewed label by default, ADR 0048) repeats the labels it learnt:
    beside them the disagreement queue showed "human: scratch · challenger: scratch" as if it had found it."""
    a = db.model_versions.register("classifier", "classifier-a", str(make_model_dir(tmp_path / "a")), activate=True)
    ids = _folder(db, tmp_path, 3)
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")   # before: read by it
    card = {"family": "classifier", "retraining": {"held_out_comparison": COMPARISON, "seconds": 0.0}}
    b = db.model_versions.register("classifier", "classifier-b", str(make_model_dir(tmp_path / "b", card=card)),
                                   card=card, parent_id=a.id, challenger=True)
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")   # after: new evidence
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in ids]
                               + [PredictionIn(i, b.id, predicted_class="scratch", confidence=0.9) for i in ids])
    found = champion.find_disagreements(db, b.id)
    assert {d.image_id: (d.human, d.learnt) for d in found.disagreements} == {
        ids[0]: ("scratch", True), ids[1]: ("scratch", False), ids[2]: ("", False)}
    assert found.learnt == 1
    assert champion.retrained_at(db.model_versions.get(a.id)) is None   # not retrained here: nothing said


def test_a_label_read_by_the_retraining_and_put_back_after_it_counts_as_learnt(db, tmp_path) -> None:
    """A session-47 audit: a class read by the retraining, cleared by a slip and put back after it, read as not
    learnt (only the newest revision's time was looked at); a class changed after it stays new evidence."""
    a = db.model_versions.register("classifier", "classifier-a", str(make_model_dir(tmp_path / "a")), activate=True)
    ids = _folder(db, tmp_path, 3)
    for i in ids[:2]:
        db.labels.append(i, LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")   # read by it
    card = {"family": "classifier", "retraining": {"held_out_comparison": COMPARISON, "seconds": 0.0}}
    b = db.model_versions.register("classifier", "classifier-b", str(make_model_dir(tmp_path / "b", card=card)),
                                   card=card, parent_id=a.id, challenger=True)
    db.labels.revert(ids[0], 0, "ann")                                                      # a slip...
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")  # ...put back
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, class_name="dent"), "ann")     # changed: new
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in ids]
                               + [PredictionIn(i, b.id, predicted_class="scratch", confidence=0.9) for i in ids])
    found = champion.find_disagreements(db, b.id)
    assert {d.image_id: d.learnt for d in found.disagreements if d.human} == {ids[0]: True, ids[1]: False}
    assert found.learnt == 1


def test_only_labels_the_retraining_could_read_are_said_to_be_learnt(db, tmp_path) -> None:
    """A session-46 probe: after `retrain --folder line`, a second folder's labelled parts and labels without a class
    were said "labelled before its retraining, which may have learnt them": evidence it never saw, discounted."""
    a = db.model_versions.register("classifier", "classifier-a", str(make_model_dir(tmp_path / "a")), activate=True)
    ids = _folder(db, tmp_path, 3)
    good_images(tmp_path / "other", 1)
    other = index_folder(db, tmp_path / "other")
    (elsewhere,) = other.added
    for i in (ids[0], elsewhere):
        db.labels.append(i, LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, anomaly_verdict="anomalous"), "ann")  # no class
    line = db.images.get(ids[0]).folder_id
    card = {"family": "classifier", "retraining": {"held_out_comparison": COMPARISON, "seconds": 0.0,
                                                   "folder_id": line}}
    b = db.model_versions.register("classifier", "classifier-b", str(make_model_dir(tmp_path / "b", card=card)),
                                   card=card, parent_id=a.id, challenger=True)
    every = [*ids, elsewhere]
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in every]
                               + [PredictionIn(i, b.id, predicted_class="scratch", confidence=0.9) for i in every])
    found = champion.find_disagreements(db, b.id)
    assert {d.image_id for d in found.disagreements if d.learnt} == {ids[0]} and found.learnt == 1


def test_images_the_worker_could_not_read_are_not_said_to_be_waiting(db, tmp_path) -> None:
    """Seen under Xvfb (session 36): an empty and a truncated file were "2 image(s) not run by both yet: Find
    disagreements runs them" after every run, which never answered them."""
    a, b = _versions(db, tmp_path)
    ids = _folder(db, tmp_path, 3)
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in ids])
    db.predictions.upsert_many([PredictionIn(i, b.id, predicted_class="ok", confidence=0.8) for i in ids[:2]])
    job = champion.submit_compare(db, b.id)[0]
    worker = "w1"
    db.jobs.register_worker(worker)
    claimed = db.jobs.claim_items(worker, 10)
    assert claimed is not None
    db.jobs.fail_items(worker, {it.id: "not a decodable image" for it in claimed.items})
    result = champion.find_disagreements(db, b.id)
    assert (result.images, result.compared, result.failed, result.waiting) == (3, 2, 1, 0)
    assert db.jobs.get(job) is not None


def test_a_challenger_that_cannot_be_loaded_is_said_so_not_counted_as_unreadable_images(db, tmp_path) -> None:
    """A session-50 audit: the challenger's weights corrupt and no database copy; Find disagreements read "0
    disagreement(s) in 0 image(s) compared; 55 image(s) the worker could not read (their reasons are in the Jobs
    dock)" and ``models compare`` "55 image(s) the worker could not read (the prelabel report and the Jobs dock say
    why)", though the images were fine and the Jobs dock lists no compare job. The compare job's own reason is said,
    in the panel and the command alike; a file the worker could not read is said with its reason."""
    from app.services.artifacts import ArtifactStore
    from app.worker import Worker, WorkerOptions
    a, b = _versions(db, tmp_path)
    weights = Path(b.checkpoint_path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    ids = _folder(db, tmp_path, 3)
    db.predictions.upsert_many([PredictionIn(i, a.id, predicted_class="ok", confidence=0.8) for i in ids])
    champion.submit_compare(db, b.id)
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
    result = champion.find_disagreements(db, b.id)
    assert (result.compared, result.failed, result.unreadable, result.waiting) == (0, 3, 0, 0)
    text = champion.failures_text(result)
    assert text.startswith("classifier-b cannot be loaded here: ") and "model.safetensors" in text
    assert "could not read" not in text and "Jobs dock" not in text
    db.predictions.upsert_many([PredictionIn(i, b.id, predicted_class="ok", confidence=0.8) for i in ids[:2]])
    job = db.jobs.create(champion.COMPARE, {"families": ["classifier"], "model_versions": {"classifier": b.id},
                                            "challenger": b.id}, ids[2:])
    db.jobs.register_worker("w1")
    claimed = db.jobs.claim_items("w1", 10)
    assert claimed is not None and claimed.job.id == job.id
    db.jobs.fail_items("w1", {it.id: "not a decodable image" for it in claimed.items})
    result = champion.find_disagreements(db, b.id)
    assert (result.compared, result.failed, result.unreadable, result.cannot_load) == (2, 1, 1, None)
    rel = db.images.get_many(ids[2:])[0].rel_path
    assert champion.failures_text(result) == f"1 image the worker could not read (first: {rel}: not a decodable image)"


def test_compare_json_queues_what_waits_and_promote_of_the_active_version_says_nothing_changed(tmp_path, capsys) -> None:
    """Found by a session-44 CLI probe: ``models compare ID --json`` never queued the images not run by both versions
    (a script read "waiting" for good; only the printed form queued them), ``--limit 0`` was taken for the default,
    and ``models promote`` of the version already active said "is now the active … Recorded for bob." (exit 0)
    although it recorded nothing and dropped the note."""
    from app.cli import main
    cli_url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    db = open_database(cli_url)
    a, b = _versions(db, tmp_path)
    ids = _folder(db, tmp_path, 2)
    db.predictions.upsert_many([PredictionIn(ids[0], a.id, predicted_class="ok", confidence=0.7)])
    db.close()
    assert main(["models", "compare", str(b.id), "--db", cli_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["waiting"] == 2 and data["queued_jobs"]
    db = open_database(cli_url)
    try:
        assert sorted(j.id for j in db.jobs.list(kind=champion.COMPARE)) == sorted(data["queued_jobs"])
    finally:
        db.close()
    assert main(["models", "compare", str(b.id), "--db", cli_url, "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main(["models", "promote", str(a.id), "--db", cli_url, "--note", "again"]) == 2
    assert "already the active classifier model: nothing was changed or recorded" in capsys.readouterr().err


def test_the_models_command_says_a_locked_database_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    """Found by a session-44 CLI probe: ``models list`` (which registers the bundled versions, a write) and ``models
    promote`` on a SQLite file another program held locked ended in a Python traceback, exit 1; every other command
    says it in one line, exit 2."""
    from app.cli import main
    from app.services.model_catalog import ModelCatalog
    from database import LockedError
    cli_url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    open_database(cli_url).close()

    def locked(self, *args, **kwargs):
        raise LockedError("the database file cli.sqlite is locked by another program; close it there or try again.")
    monkeypatch.setattr(ModelCatalog, "rows", locked)
    monkeypatch.setattr(ModelCatalog, "promote", locked)
    assert main(["models", "list", "--db", cli_url]) == 2
    assert main(["models", "promote", "1", "--db", cli_url]) == 2
    err = capsys.readouterr().err
    assert err.count("is locked by another program") == 2 and "Traceback" not in err


def test_a_roll_back_goes_to_the_version_it_names_or_nowhere(tmp_path) -> None:
    """Found by a session-44 probe: the dialog's button read "Roll back to A"; another station made C active; the click
    rolled back to B (and made C a challenger never retrained). A roll back names its target and is refused when the
    history now leads elsewhere."""
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    a, b = _versions(db, tmp_path)
    catalog = ModelCatalog(db, author=lambda: "ann")
    catalog.promote(b.id)
    assert catalog.previous_champion("classifier").id == a.id
    c = db.model_versions.register("classifier", "classifier-c", str(make_model_dir(tmp_path / "c")))
    ModelCatalog(db, author=lambda: "bob").activate(c.id)  # another station
    with pytest.raises(ModelCatalogError, match="changed meanwhile"):
        catalog.rollback("classifier", to=a.id)
    assert db.model_versions.active("classifier").id == c.id
    db.close()


def test_two_stations_making_one_version_active_or_rolling_back_at_once_record_it_once(db, tmp_path,
                                                                                        monkeypatch) -> None:
    """A session-50 audit: two stations clicked Make active on clf-r1 at once; both said "is now the active
    classifier model", the second recorded "promote clf-r1 -> clf-r1", the button then read "Roll back to clf-r1"
    and its click recorded "rollback clf-r1 -> clf-r1", changing nothing; the way back to the old champion was lost.
    The second is refused and records nothing, and so is the second of two roll backs at once."""
    import app.services.model_catalog as mc
    a, b = _versions(db, tmp_path)
    alice, bob = ModelCatalog(db, author=lambda: "alice"), ModelCatalog(db, author=lambda: "bob")
    real = mc.check_model_dir
    other: list = []   # what the other station does while this one checks the folder (after its look)

    def slow(family, path):
        real(family, path)
        while other:
            other.pop()()
    monkeypatch.setattr(mc, "check_model_dir", slow)
    other.append(lambda: bob.promote(b.id))
    with pytest.raises(ModelCatalogError, match="classifier-b was already made active at another station meanwhile: "
                                                "nothing was recorded"):
        alice.promote(b.id)
    assert [(x.action, x.previous_name, x.version_name) for x in db.model_versions.activations("classifier")] == [
        ("promote", "classifier-a", "classifier-b")]
    assert alice.previous_champion("classifier").id == a.id   # the way back is kept
    other.append(lambda: bob.rollback("classifier", to=a.id))
    with pytest.raises(ModelCatalogError, match="classifier-a was already made active again at another station"):
        alice.rollback("classifier", to=a.id)
    assert [(x.action, x.previous_name, x.version_name) for x in db.model_versions.activations("classifier")] == [
        ("promote", "classifier-a", "classifier-b"), ("rollback", "classifier-b", "classifier-a")]
    assert db.model_versions.active("classifier").id == a.id and db.model_versions.challenger("classifier").id == b.id
