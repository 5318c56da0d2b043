"""Model routing: which families pre-label which images (rules, file, and the jobs it makes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.paths import SAMPLES
from app.services.indexing import index_folder
from app.services.prelabel import PrelabelError, submit_routed_prelabel
from app.services.project_settings import ROUTING, save_routing
from app.services.routing import Routing, RoutingError, RoutingRule, group_by_families, load_routing
from database.dto import ImageQuery
from database.engine import open_database
from tests.tiny_models import save_tiny_models

ALL = ("classifier", "segmenter", "anomaly")


def _routing(*rules: tuple[str, tuple[str, ...]]) -> Routing:
    return Routing(tuple(RoutingRule(p, f) for p, f in rules))


def test_first_matching_rule_wins_and_unmatched_images_get_every_family() -> None:
    r = _routing(("ir/*", ("segmenter",)), ("*.png", ("anomaly", "classifier")), ("skip/*", ()))
    assert r.families_for("ir/a.png") == ("segmenter",)
    assert r.families_for("IR/Deep/B.PNG") == ("segmenter",)       # case-insensitive, * crosses /
    assert r.families_for("steel\\c.png") == ("classifier", "anomaly")  # Windows separators, canonical order
    assert r.families_for("skip/x.bmp") == ()                        # nothing ticked: skipped
    assert r.families_for("other/x.bmp") == ALL
    assert r.families_for("other/x.bmp", default=("anomaly",)) == ("anomaly",)
    assert Routing().families_for("a.png") == ALL


def test_a_pattern_may_name_the_folder() -> None:
    r = _routing(("line3/*", ("anomaly",)))
    assert r.families_for("a/b.png", folder_name="line3") == ("anomaly",)
    assert r.families_for("a/b.png", folder_name="line4") == ALL


def test_bad_rules_are_refused_with_the_reason() -> None:
    with pytest.raises(RoutingError, match="unknown family 'detector'"):
        RoutingRule("*", ("detector",))
    with pytest.raises(RoutingError, match="needs a pattern"):
        RoutingRule("  ", ("anomaly",))
    with pytest.raises(RoutingError, match="rule 1"):
        Routing.from_dict({"rules": [{"families": ["anomaly"]}]})
    with pytest.raises(RoutingError, match="must be a list"):
        Routing.from_dict({"rules": "ir/*"})
    # a named version: text of a version's length, for a family the rule runs, in a mapping
    for versions in ({"classifier": 5}, {"classifier": " "}, {"classifier": "x" * 300}):
        with pytest.raises(RoutingError, match="no usable classifier version"):
            Routing.from_dict({"rules": [{"pattern": "*", "families": ["classifier"], "versions": versions}]})
    with pytest.raises(RoutingError, match="does not run anomaly"):
        Routing.from_dict({"rules": [{"pattern": "*", "families": ["classifier"], "versions": {"anomaly": "a"}}]})
    with pytest.raises(RoutingError, match="rule 1"):
        Routing.from_dict({"rules": [{"pattern": "*", "families": ["classifier"], "versions": ["classifier"]}]})


def test_a_misspelt_key_is_refused_not_read_as_absent(tmp_path: Path) -> None:
    """Session-46 probes: ``routing set`` saved {"family": [...]} as a rule that skips its images, and {"Rules": ...}
    or {} as no rules at all (every rule wiped), each with exit 0; a deeply nested file raised RecursionError."""
    with pytest.raises(RoutingError, match="rule 1: unknown key 'family'"):
        Routing.from_dict({"rules": [{"pattern": "*", "families": [], "family": ["segmenter"]}]})
    with pytest.raises(RoutingError, match="rule 1 must have"):
        Routing.from_dict({"rules": [{"pattern": "*", "family": ["segmenter"]}]})
    with pytest.raises(RoutingError, match="unknown key 'Rules'"):
        Routing.from_dict({"Rules": []})
    assert Routing.from_dict({"rules": [{"pattern": "*", "families": []}]}).rules[0].families == ()
    path = tmp_path / "r.json"
    for text, why in (("{}", "with 'rules'"), ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        path.write_text(text)
        with pytest.raises(RoutingError, match=why):
            load_routing(path)
    path.write_text('{"rules": []}')
    assert load_routing(path) == Routing()


def test_file_round_trip_missing_file_and_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    assert load_routing(path) == Routing()
    r = _routing(("ir/*", ("segmenter",)))
    path.write_text(json.dumps(r.to_dict()), encoding="utf-8")  # an older station's file
    assert load_routing(path) == r
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RoutingError, match=str(path.name)):
        load_routing(path)
    assert path.read_text(encoding="utf-8") == "{not json"  # never rewritten behind the user's back


def test_groups_keep_only_requested_families_and_drop_images_with_none() -> None:
    r = _routing(("ir/*", ("segmenter",)), ("steel/*", ("classifier", "anomaly")))
    images = [(1, "ir/a.png", "f"), (2, "steel/b.png", "f"), (3, "ir/c.png", "f"), (4, "x.png", "f")]
    assert group_by_families(images, r, ALL) == {(("segmenter",), ()): [1, 3], (("classifier", "anomaly"), ()): [2],
                                                 (ALL, ()): [4]}
    assert group_by_families(images, r, ("anomaly",)) == {(("anomaly",), ()): [2, 4]}
    # a rule naming a version makes its own group, with the names of the families that run
    named = Routing((RoutingRule("steel/*", ("classifier", "anomaly"), (("classifier", "steel-2"),)),))
    assert group_by_families(images, named, ALL)[(("classifier", "anomaly"), (("classifier", "steel-2"),))] == [2]
    assert group_by_families(images, named, ("anomaly",)) == {(("anomaly",), ()): [1, 2, 3, 4]}


def test_the_demo_routing_names_existing_subfolders() -> None:
    r = load_routing(SAMPLES / "demo_routing.json")
    subfolders = {p.name for p in (SAMPLES / "demo").iterdir() if p.is_dir()}
    assert {rule.pattern.split("/")[1] for rule in r.rules} == subfolders
    assert all(rule.families for rule in r.rules)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def test_routed_submission_makes_one_job_per_family_set(tmp_path: Path, models) -> None:
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = open_database(url)
    try:
        root = tmp_path / "parts"
        for rel in ("ir/a.png", "ir/b.png", "steel/c.png", "d.png", "junk/e.png"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x" * len(rel))
        folder = index_folder(db, root).folder_id
        by_rel = {im.rel_path: im.id for im in db.images.query()}

        [single] = submit_routed_prelabel(db, folder_id=folder, model_dirs=models, only_missing=False)
        assert db.jobs.get(single).params["families"] == list(ALL)  # no rules: as before

        save_routing(db, _routing(("ir/*", ("segmenter",)), ("parts/steel/*", ("classifier",)), ("junk/*", ())))
        jobs = submit_routed_prelabel(db, folder_id=folder, model_dirs=models, only_missing=False)
        got = {tuple(db.jobs.get(j).params["families"]): sorted(i.image_id for i in db.jobs.items(j))
               for j in jobs}
        assert got == {("segmenter",): sorted([by_rel["ir/a.png"], by_rel["ir/b.png"]]),
                       ("classifier",): [by_rel["steel/c.png"]],
                       ALL: [by_rel["d.png"]]}
        # a selection is routed the same way
        [sel] = submit_routed_prelabel(db, image_ids=[by_rel["ir/b.png"]], model_dirs=models, only_missing=False)
        assert db.jobs.get(sel).params["families"] == ["segmenter"]
        assert submit_routed_prelabel(db, image_ids=[by_rel["junk/e.png"]], model_dirs=models) == []

        db.project_settings.put(ROUTING, {"rules": [{"pattern": "*", "families": ["x"]}]})  # hand-edited
        with pytest.raises(PrelabelError, match="unknown family"):
            submit_routed_prelabel(db, folder_id=folder, model_dirs=models)
    finally:
        db.close()


def test_a_routed_submission_reads_only_its_images_answers(tmp_path: Path, models, monkeypatch) -> None:
    """What each image lacks is read for the images asked about, each once a version: the same active version runs in
    most groups, and a read of every image it answered (a million at a large folder) was made once a group, then
    (session 45) once a request; a session-51 audit timed an automatic submission of one file at 690 ms with 1.5M
    answers, at every re-scan that found files."""
    from database.predictions import PredictionRepository

    db = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    try:
        root = tmp_path / "parts"
        for rel in ("ir/a.png", "steel/c.png", "d.png"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x" * len(rel))
        folder = index_folder(db, root).folder_id
        save_routing(db, _routing(("ir/*", ("segmenter", "anomaly")), ("parts/steel/*", ("classifier", "anomaly"))))
        reads: list[tuple[int, int]] = []
        real = PredictionRepository.image_ids_with

        def spy(self, version_id: int, among=None) -> set[int]:
            assert among is not None, "every image the version answered was read"
            reads.extend((version_id, i) for i in among)
            return real(self, version_id, among)
        monkeypatch.setattr(PredictionRepository, "image_ids_with", spy)
        jobs = submit_routed_prelabel(db, folder_id=folder, model_dirs=models)
        assert len(jobs) == 3                    # three groups, the anomaly model in each
        folder_ids = {im.id for im in db.images.query(ImageQuery(folder_id=folder))}
        assert len(reads) == len(set(reads)) and {i for _v, i in reads} == folder_ids
        assert len({v for v, _i in reads}) == 3   # each version: the anomaly model in each group, classifier, segmenter
    finally:
        db.close()
