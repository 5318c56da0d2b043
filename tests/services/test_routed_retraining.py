"""Retraining and promoting a version routing rules name (ADR 0060): the tile classifier is retrained from the
tile labels only and starts from itself, its challenger is compared on tile images against it, and promoting
the challenger names it in the tiles rule instead of replacing the project's active classifier."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import select

from app.services import champion
from app.services.audit import write_audit
from app.services.flags import FlagSettings
from app.services.model_catalog import ModelCatalog, ModelCatalogError
from app.services.project_settings import readable_routing, save_routing
from app.services.retraining import RetrainError, plan_retraining, version_scope
from app.services.routing import Routing, RoutingRule
from database import FileEntry, LabelChange, PredictionIn, ReviewState, open_database
from database.models import Prediction
from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)
from tests.services.test_retraining import SIZE, events_of, run_retrain, save_tiny_classifier, write_part
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

TILES = Routing((RoutingRule("tiles/*", ("classifier", "anomaly"), (("classifier", "clf-tile"),)),))


@pytest.fixture
def lines(tmp_path: Path, url: str):  # noqa: F811 - the imported fixture: SQLite, and PostgreSQL when reachable
    """Two lines in one folder: tiles/ (5 crack, 5 good) routed to ``clf-tile``, steel/ (6 crack, 6 good) left
    to the active ``clf-steel``; every image reviewed (good parts bright, cracked ones dark). Returns db, url,
    {rel_path: id}, the tile and the steel versions."""
    root = tmp_path / "lot1"
    names = ([f"tiles/crack{i}" for i in range(5)] + [f"tiles/good{i}" for i in range(5)]
             + [f"steel/crack{i}" for i in range(6)] + [f"steel/good{i}" for i in range(6)])
    for i, n in enumerate(names):
        write_part(root / f"{n}.png", "good" in n, i)
    db = open_database(url)
    folder = db.folders.add(str(root))
    db.images.sync(folder.id, [FileEntry(f"{n}.png", (root / f"{n}.png").stat().st_size, 0, width=SIZE, height=SIZE)
                               for n in names])
    by_path = {im.rel_path: im.id for im in db.images.query()}
    for rel, image_id in by_path.items():
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED,
                                               class_name="good" if "good" in rel else "crack"), "ann")
    steel = db.model_versions.register("classifier", "clf-steel",
                                       str(save_tiny_classifier(tmp_path / "steel-model", ["crack", "good"])),
                                       activate=True)
    tile = db.model_versions.register("classifier", "clf-tile",
                                      str(save_tiny_classifier(tmp_path / "tile-model", ["crack", "good"])))
    save_routing(db, TILES)
    yield db, url, by_path, tile, steel
    db.close()


def _exported(plan) -> set[str]:
    return {p.name for p in plan.data_dir.rglob("*.png")}


def test_a_routed_version_learns_from_its_own_images_and_starts_from_itself(lines, tmp_path: Path) -> None:
    db, _url, by_path, tile, steel = lines
    tiles = {i for p, i in by_path.items() if p.startswith("tiles/")}
    scope = version_scope(db, "classifier", "clf-tile")
    assert scope.version.id == tile.id and scope.images == tiles and scope.routed == ("tiles/*",)
    plan = plan_retraining(db, "classifier", tmp_path / "t.work", tmp_path / "out", scope=scope)
    assert plan.parent.id == tile.id and plan.start == "fine-tuned from clf-tile"
    assert plan.data["classes"] == {"crack": 5, "good": 5}   # the steel labels are not its to learn
    assert len(_exported(plan)) == 10
    assert any("10 images clf-tile answers for only (routing rule tiles/*)" in n for n in plan.notes)
    # the active version: the images no rule gives to another version (steel), by default
    default = plan_retraining(db, "classifier", tmp_path / "s.work", tmp_path / "out2")
    assert default.parent.id == steel.id and default.data["classes"] == {"crack": 6, "good": 6}
    assert any("12 images clf-steel answers for only (the images whose rule runs the family and names no other "
               "version)" in n for n in default.notes)
    assert version_scope(db, "classifier", "clf-steel").images == frozenset(by_path.values()) - tiles


def test_a_project_without_named_versions_retrains_on_every_label_as_before(lines, tmp_path: Path) -> None:
    db = lines[0]
    save_routing(db, Routing())
    scope = version_scope(db, "classifier")
    assert scope.images is None and scope.describe() is None
    plan = plan_retraining(db, "classifier", tmp_path / "a.work", tmp_path / "out", scope=scope)
    assert plan.data["classes"] == {"crack": 11, "good": 11} and not any("answers for" in n for n in plan.notes)


def test_images_whose_rule_does_not_run_the_family_are_nobodys_to_learn_from(lines, tmp_path: Path) -> None:
    """Rules that name no version but leave the classifier out of steel/ (as the demo's infrared/): a steel label
    feeds no classifier retraining, and no comparison runs the classifier there."""
    db, _url, by_path, _tile, steel = lines
    save_routing(db, Routing((RoutingRule("steel/*", ("segmenter",)),)))
    scope = version_scope(db, "classifier")
    assert scope.version.id == steel.id and scope.images == {i for p, i in by_path.items() if p.startswith("tiles/")}
    plan = plan_retraining(db, "classifier", tmp_path / "n.work", tmp_path / "out", scope=scope)
    assert plan.data["classes"] == {"crack": 5, "good": 5}
    assert version_scope(db, "segmenter").images is None   # every rule runs it or names nothing: not narrowed
    for rel, image_id in by_path.items():   # the tiles unlabelled: nothing left to learn from, and it says why
        if rel.startswith("tiles/"):
            db.labels.append(image_id, LabelChange(ReviewState.UNREVIEWED), "ann")
    with pytest.raises(RetrainError, match=r"nothing to export.* \(only the 10 images the version answers for"):
        plan_retraining(db, "classifier", tmp_path / "e.work", tmp_path / "out2", scope=version_scope(db, "classifier"))


def test_the_active_version_left_without_labels_names_the_version_the_rules_give_them_to(lines, tmp_path: Path) -> None:
    """Seen at the station: a folder of bottles routed to the bundled anomaly-bottle and labelled; `retrain anomaly`
    said "no training data ... (only the 0 image(s) the version answers for by the routing rules were read)", twice,
    and nothing said which version the labels were for."""
    db, db_url, _by_path, _tile, _steel = lines
    save_routing(db, Routing((RoutingRule("*", ("classifier",), (("classifier", "clf-tile"),)),)))
    with pytest.raises(RetrainError, match=r"only the 0 images .*the rules give the others to clf-tile \(22 reviewed "
                                           r"images\): retrain "
                                           r"that version \(--version clf-tile, or select it in the Models dialog and retrain it there\)"):
        plan_retraining(db, "classifier", tmp_path / "e.work", tmp_path / "out", scope=version_scope(db, "classifier"))
    assert version_scope(db, "classifier", "clf-tile").others == ()
    if db_url.startswith("sqlite"):
        import subprocess
        import sys
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.Popen([sys.executable, str(root / "main.py"), "--db", db_url, "retrain", "classifier",
                                 "--method", "texture", "--threads", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=root)
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0 and err.count("the rules give the others to clf-tile") == 1, err


def test_a_too_few_refusal_names_the_versions_the_rules_give_the_other_labels_to(lines, tmp_path: Path) -> None:
    """A session-51 audit: 11 reviewed labels, 10 of them tiles the rules give to the tile classifier; `retrain
    classifier` refused with "reviewed so far: crazing 1" and no word of the 10, though the docs promise a note."""
    db, _url, by_path, _tile, _steel = lines
    for rel, image_id in by_path.items():   # the steel line keeps one reviewed label
        if rel.startswith("steel/") and rel != "steel/crack0.png":
            db.labels.append(image_id, LabelChange(ReviewState.UNREVIEWED), "ann")
    with pytest.raises(RetrainError, match=r"reviewed so far: crack 1 \(only the 12 images the version answers for "
                                           r"by the routing rules were read; the rules give the others to clf-tile "
                                           r"\(10 reviewed images\): retrain that version \(--version clf-tile, "):
        plan_retraining(db, "classifier", tmp_path / "f.work", tmp_path / "out", scope=version_scope(db, "classifier"))


def test_a_refusal_offers_no_version_without_reviewed_labels(lines, tmp_path: Path) -> None:
    """A session-51 review: with none of the tiles reviewed, the refusal still said "the rules give the others to
    clf-tile (0 reviewed images): retrain that version (--version clf-tile, …)", a retraining refused the same way.
    It offers --version only for a version holding reviewed labels, and otherwise says no other version does."""
    from app.services.retraining import narrowing_note

    db, _url, by_path, _tile, _steel = lines
    for rel, image_id in by_path.items():   # tiles: none reviewed; steel: one reviewed
        if rel.startswith("tiles/") or rel != "steel/crack0.png":
            db.labels.append(image_id, LabelChange(ReviewState.UNREVIEWED), "ann")
    with pytest.raises(RetrainError) as refused:
        plan_retraining(db, "classifier", tmp_path / "f.work", tmp_path / "out", scope=version_scope(db, "classifier"))
    assert "--version" not in str(refused.value) and str(refused.value).endswith(
        "the rules give the others to clf-tile (0 reviewed images): no other version holds reviewed labels either)")
    note = narrowing_note({1}, ("clf-a", "clf-b"), {"clf-a": 0, "clf-b": 3})
    assert note.endswith("clf-a (0 reviewed images), clf-b (3 reviewed images): retrain that version "
                         "(--version clf-b, or select it in the Models dialog and retrain it there))")


def test_labels_under_rules_that_run_no_classifier_are_counted_with_the_way_out(lines, tmp_path: Path) -> None:
    """A session-48 audit followed docs/new_line.md on bottles routed to the anomaly model alone: `retrain classifier`
    said only "nothing to export (only the 0 image(s) the version answers for ...)", nothing about the 15 labels on
    images whose rule runs no classifier."""
    db = lines[0]
    save_routing(db, Routing((RoutingRule("tiles/*", ("anomaly",)), RoutingRule("steel/*", ("segmenter",)))))
    with pytest.raises(RetrainError, match=r"22 reviewed images sit under routing rules that run no classifier: "
                                           r"tiles/\* \(10\), steel/\* \(12\): tick classifier in those rules"):
        plan_retraining(db, "classifier", tmp_path / "e.work", tmp_path / "out", scope=version_scope(db, "classifier"))
    assert version_scope(db, "anomaly").unrun == (("steel/*", 12),)


def test_a_version_that_answers_for_nothing_or_does_not_exist_is_refused(lines, tmp_path: Path) -> None:
    db = lines[0]
    db.model_versions.register("classifier", "clf-idle", str(save_tiny_classifier(tmp_path / "idle", ["a", "b"])))
    with pytest.raises(RetrainError, match="clf-idle answers for no image: no routing rule names it"):
        version_scope(db, "classifier", "clf-idle")
    with pytest.raises(RetrainError, match="no classifier version named 'clf-nope'"):
        version_scope(db, "classifier", "clf-nope")


def _challenger(db, tmp_path: Path, parent):
    return db.model_versions.register("classifier", "clf-tile-2",
                                      str(save_tiny_classifier(tmp_path / "tile-2", ["crack", "good"])),
                                      parent_id=parent.id, challenger=True)


def test_a_routed_versions_challenger_is_compared_on_its_images_against_it(lines, tmp_path: Path) -> None:
    db, _url, by_path, tile, steel = lines
    new = _challenger(db, tmp_path, tile)
    pair = champion.pair(db, "classifier")
    assert pair.champion.id == tile.id and pair.challenger.id == new.id   # not the active steel classifier
    tiles = [i for p, i in by_path.items() if p.startswith("tiles/")]
    jobs = champion.submit_compare(db, new.id)
    items = {it.image_id for j in jobs for it in db.jobs.items(j)}
    assert items == set(tiles)   # both versions run on the tile images only
    db.predictions.upsert_many([PredictionIn(i, v.id, predicted_class="crack" if v is new and i == tiles[0] else "good",
                                             confidence=0.9) for i in tiles for v in (tile, new)])
    found = champion.find_disagreements(db, new.id)
    assert found.images == 10 and [d.image_id for d in found.disagreements] == [tiles[0]]
    # a challenger retrained from the active version is compared with it, on the images it answers for
    other = db.model_versions.register("classifier", "clf-steel-2", str(save_tiny_classifier(
        tmp_path / "steel-2", ["crack", "good"])), parent_id=steel.id, challenger=True)
    assert champion.pair(db, "classifier").champion.id == steel.id
    assert set(champion.compare_image_ids(db, 100, champion.champion_images(db, steel))) == \
        set(by_path.values()) - set(tiles)
    assert other.id != new.id


def test_promoting_a_routed_versions_challenger_names_it_in_the_rules(lines, tmp_path: Path) -> None:
    db, _url, by_path, tile, steel = lines
    new = _challenger(db, tmp_path, tile)
    first = by_path["tiles/crack0.png"]
    db.predictions.upsert_many([PredictionIn(first, new.id, predicted_class="crack", confidence=0.9)])
    done = ModelCatalog(db, author=lambda: "ann").promote(new.id)
    assert done.patterns == ("tiles/*",) and done.replaced == "clf-tile"
    assert "clf-tile-2 now answers for tiles/* in place of clf-tile" in done.text
    assert readable_routing(db).rules[0].named == {"classifier": "clf-tile-2"}
    assert db.model_versions.active("classifier").id == steel.id   # the steel line keeps its classifier
    assert not db.model_versions.get(new.id).challenger and db.model_versions.challenger("classifier") is None
    record = db.model_versions.activations("classifier")[-1]   # audited, and no roll back of the active version
    assert (record.action, record.previous_name, record.version_name, record.author, record.note) == (
        "route", "clf-tile", "clf-tile-2", "ann", "routing tiles/*")
    assert ModelCatalog(db).previous_champion("classifier") is None
    # A second click (or another station first) promotes nothing more: it made the tile version the active one for
    # every image, the steel line's too (a session-44 probe)
    with pytest.raises(ModelCatalogError, match="already answers for tiles/"):
        ModelCatalog(db, author=lambda: "ann").promote(new.id)
    assert db.model_versions.active("classifier").id == steel.id
    out = write_audit(db, tmp_path / "audit.csv", None, FlagSettings())
    rows = [r for r in csv.DictReader(open(out.path, encoding="utf-8-sig")) if r["model_version"] == "clf-tile-2"]
    assert [(r["who"], r["changed"], r["note"]) for r in rows] == [
        ("ann", "routed: clf-tile → clf-tile-2 (promote in routing rules)", "routing tiles/*")]
    with db.session() as s:   # the marker moved to its answer: the window shows it on that tile at once
        assert s.scalar(select(Prediction.model_version_id).where(
            Prediction.image_id == first, Prediction.current_family == "classifier")) == new.id


def test_a_routed_promotion_never_overwrites_rules_saved_meanwhile_at_another_station(lines, tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """The promotion computes new rules from the rules it read; when another station saved rules in between,
    it is refused whole (nothing written, still the challenger) instead of putting the old rules back unseen."""
    from app.services.model_catalog import ModelCatalogError
    db, _url, _by_path, tile, _steel = lines
    new = _challenger(db, tmp_path, tile)
    theirs = Routing((*TILES.rules, RoutingRule("ir/*", ("segmenter",))))
    original = db.model_versions.record_routed

    def after_bob_saved(*args, **kwargs):
        save_routing(db, theirs, by="bob")   # another station's save, after the promotion read the rules
        return original(*args, **kwargs)
    monkeypatch.setattr(db.model_versions, "record_routed", after_bob_saved)
    with pytest.raises(ModelCatalogError, match="clf-tile-2 was not promoted: the project's routing was changed by bob"):
        ModelCatalog(db, author=lambda: "ann").promote(new.id)
    assert readable_routing(db) == theirs                      # bob's rules stand
    assert db.model_versions.get(new.id).challenger            # nothing of the promotion was written
    assert [a.action for a in db.model_versions.activations("classifier")].count("route") == 0


def test_promoting_a_challenger_of_the_active_version_activates_it(lines, tmp_path: Path) -> None:
    db, _url, _by_path, tile, steel = lines
    new = db.model_versions.register("classifier", "clf-steel-2", str(save_tiny_classifier(
        tmp_path / "steel-2", ["crack", "good"])), parent_id=steel.id, challenger=True)
    done = ModelCatalog(db, author=lambda: "ann").promote(new.id, "better")
    assert done.patterns == () and done.replaced == "clf-steel" and done.row.active
    assert readable_routing(db) == TILES   # the tiles rule still names its own version
    assert [a.action for a in db.model_versions.activations("classifier")][-1] == "promote"


def test_promoting_a_challenger_of_an_active_version_a_rule_also_names_takes_both(lines, tmp_path: Path) -> None:
    """Found by a session-43 probe: the rules named the active version for steel/* (and another for tiles/*), every
    image under a rule; its challenger promoted was only made active, said "the next pre-label run uses it", and no
    image ran it. It now takes the rules' place and the active one."""
    db, _url, _by_path, _tile, steel = lines
    pinned = Routing((RoutingRule("steel/*", ("classifier",), (("classifier", "clf-steel"),)), *TILES.rules))
    save_routing(db, pinned)
    new = db.model_versions.register("classifier", "clf-steel-2", str(save_tiny_classifier(
        tmp_path / "steel-2", ["crack", "good"])), parent_id=steel.id, challenger=True)
    done = ModelCatalog(db, author=lambda: "ann").promote(new.id)
    assert done.patterns == ("steel/*",) and done.activated and done.row.active
    assert "in place of clf-steel, and it is the active classifier model" in done.text
    assert readable_routing(db).rules[0].named == {"classifier": "clf-steel-2"}
    assert readable_routing(db).rules[1:] == TILES.rules


def test_the_retrain_command_retrains_the_version_it_is_given(lines, tmp_path: Path, capsys) -> None:
    db, db_url, _by_path, tile, _steel = lines
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's model folder lies beside a SQLite file; the scope is the same on PostgreSQL (above)")
    proc = run_retrain(db_url, "--version", "clf-tile", "--name", "clf-tile-2", "--method", "texture", "--groups", "none",
                       "--keep-if-worse", "--activate")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    events = events_of(out)
    train = next(e for e in events if e["event"] == "stage" and e["stage"] == "train")
    assert train["data"]["classes"] == {"crack": 5, "good": 5}
    assert any("clf-tile answers for only" in n for n in train["notes"])
    assert "clf-tile answers for only" in train["message"]   # the Models dialog's stage line shows it
    done = events[-1]
    new = db.model_versions.get(done["version_id"])
    assert new.parent_id == tile.id and not new.active   # promoted by routing, not made active
    assert "now answers for tiles/* in place of clf-tile" in done["promoted"]
    assert readable_routing(db).rules[0].named == {"classifier": "clf-tile-2"}
    from app.cli import main
    assert main(["models", "list", "--db", db_url]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if " clf-" in line]
    assert any("clf-tile-2  [routing: tiles/*]" in line for line in listed)
    assert any(" active " in line and "clf-steel " in line for line in listed)
    bad = run_retrain(db_url, "--version", "clf-nope")
    _out, err = bad.communicate(timeout=120)
    assert bad.returncode != 0 and "no classifier version named 'clf-nope'" in err


def test_each_lines_version_keeps_its_own_challenger(lines, tmp_path: Path) -> None:
    """One challenger per family and parent (migration 0015): retraining the steel classifier no longer takes the
    tile classifier's challenger away, each pair is found from either of its versions, and promoting one leaves the
    other waiting."""
    db, _url, _by_path, tile, steel = lines
    tile_2 = _challenger(db, tmp_path, tile)
    steel_2 = db.model_versions.register("classifier", "clf-steel-2", str(save_tiny_classifier(
        tmp_path / "steel-2", ["crack", "good"])), parent_id=steel.id, challenger=True)
    assert {v.id for v in db.model_versions.challengers("classifier")} == {tile_2.id, steel_2.id}
    for version, expected in ((tile.id, (tile.id, tile_2.id)), (tile_2.id, (tile.id, tile_2.id)),
                              (steel.id, (steel.id, steel_2.id)), (steel_2.id, (steel.id, steel_2.id))):
        found = champion.pair(db, "classifier", version)
        assert (found.champion.id, found.challenger.id) == expected
    assert champion.pair(db, "classifier", tile.id).routed == ("tiles/*",) and not champion.pair(
        db, "classifier", steel.id).routed
    ModelCatalog(db).promote(tile_2.id)
    assert [v.id for v in db.model_versions.challengers("classifier")] == [steel_2.id]
    assert db.model_versions.active("classifier").id == steel.id


def test_a_broken_challenger_folder_is_refused_and_the_rules_stay(lines, tmp_path: Path) -> None:
    from app.services.model_catalog import ModelCatalogError

    db, _url, _by_path, tile, _steel = lines
    new = _challenger(db, tmp_path, tile)
    (Path(new.checkpoint_path) / "config.json").write_text("{not json")
    with pytest.raises(ModelCatalogError, match="clf-tile-2 cannot be promoted"):
        ModelCatalog(db).promote(new.id)
    assert readable_routing(db) == TILES and db.model_versions.get(new.id).challenger
    assert [a.action for a in db.model_versions.activations("classifier")].count("route") == 0


def test_a_retraining_with_no_version_chosen_learns_for_the_one_whose_images_hold_the_labels(lines) -> None:
    """Seen under Xvfb (session 40): 61 tiles labelled under a rule naming the tile classifier; *Retrain* in the
    Models dialog with no row selected retrained the active steel classifier and failed with "nothing to export"."""
    from app.services.counting_versions import learning_version, reviewed_by_version

    db, _url, by_path, tile, steel = lines
    assert reviewed_by_version(db, "classifier") == {"clf-tile": 10, "clf-steel": 12}
    assert learning_version(db, "classifier") == (None, "")            # the active one's images hold labels
    for rel, image_id in by_path.items():
        if rel.startswith("steel/"):
            db.labels.append(image_id, LabelChange(ReviewState.UNREVIEWED), "ann")   # cleared
    assert learning_version(db, "classifier") == ("clf-tile", "")      # all the labels are the tile version's
    assert ModelCatalog(db).learning_versions()["classifier"] == ("clf-tile", "")
    db.model_versions.register("classifier", "clf-tile-b", tile.checkpoint_path)
    save_routing(db, Routing(TILES.rules + (RoutingRule("steel/*", ("classifier",), (("classifier", "clf-tile-b"),)),)))
    for rel, image_id in by_path.items():
        if rel.startswith("steel/good"):
            db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    name, why = learning_version(db, "classifier")
    assert name is None and why.startswith("The reviewed images belong to several classifier versions the model "
                                           "routing names: clf-tile (10 labelled), clf-tile-b (6 labelled)")
    save_routing(db, Routing())
    assert learning_version(db, "classifier") == (None, "")            # no rule names a version: the active one
