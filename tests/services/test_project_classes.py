"""The project's class list: the model's until the project saves its own, labels never touched."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.services import project_classes as pc
from app.services.importing import ImportOptions, import_labels, preview_import
from app.services.review import ReviewService
from database import open_database
from database.dto import LabelChange
from database.states import ReviewState
from tests.services.import_fixtures import make_folder
from tests.services.test_import_labels import class_tree


@pytest.fixture
def db(tmp_path: Path):
    d = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    yield d
    d.close()


def _model(db, classes: list[str]) -> None:
    db.model_versions.register("classifier", "steel-v1", "/nowhere", card={"classes": classes}, activate=True)


def test_validate_strips_and_refuses_what_cannot_be_a_hotkey_list() -> None:
    assert pc.validate(["  crack ", "fray  edge"]) == ("crack", "fray edge")
    for bad, why in ((["crack", " Crack"], "'Crack' is already on the list as 'crack'"), (["crack", "crack"], "twice"),
                     ([""], "empty"), (["x" * 256], "256 bytes"),
                     ([str(i) for i in range(pc.MAX_CLASSES + 1)], "at most"), ([3], "text"),
                     # exported and retrained as "crack_1mm", a class the project lacks (a session-43 probe)
                     (["crack>1mm"], "cannot name a folder.*'crack_1mm'"), (["edge."], "cannot name a folder")):
        with pytest.raises(pc.ClassListError, match=why):
            pc.validate(bad)  # type: ignore[arg-type]


def test_names_that_look_alike_or_hide_their_folder_are_refused() -> None:
    """Session-46 probes: "Kratzer-ä" typed precomposed and decomposed, and "ok" with a zero-width space, gave two
    buttons that look the same (labels split between them); ".hidden" was exported as a hidden folder that training
    and imports pass over (a retraining "of 2 classes" learnt one)."""
    assert pc.validate(["Kratzer-a\u0308"]) == ("Kratzer-\xe4",)
    with pytest.raises(pc.ClassListError, match="twice"):
        pc.validate(["Kratzer-\xe4", "Kratzer-a\u0308"])
    with pytest.raises(pc.ClassListError, match="invisible"):
        pc.validate(["ok", "ok\u200b"])
    with pytest.raises(pc.ClassListError, match="start with a dot"):
        pc.validate([".hidden"])
    with pytest.raises(pc.ClassListError, match="twice"):  # a stored decomposed name meets the typed one
        pc.validate(["Kratzer-a\u0308", "Kratzer-\xe4"], kept=("Kratzer-a\u0308",))
    assert pc.validate(["Maße", "Masse", "ok"], kept=("Maße", "Masse", "ok")) == ("Maße", "Masse", "ok")  # as before
    assert pc.validate([".old", "x\u200by"], kept=(".old", "x\u200by")) == (".old", "x\u200by")  # stored ones pass


def test_a_name_is_bounded_by_the_bytes_a_folder_name_holds() -> None:
    """A session-49 audit: 200 "ä" (200 characters, 400 bytes in UTF-8) passed the count of characters, then every
    ImageFolder or MVTec export and every classifier retraining failed with "File name too long"."""
    with pytest.raises(pc.ClassListError, match="is 400 bytes long in UTF-8: .* at most 255 bytes"):
        pc.validate(["ä" * 200])
    assert pc.validate(["ä" * 127 + "x"]) == ("ä" * 127 + "x",)  # 255 bytes
    assert pc.validate(["ä" * 200], kept=("ä" * 200,)) == ("ä" * 200,)  # stored before: the list stays editable


def test_a_list_already_holding_a_name_no_folder_takes_can_still_be_edited(db) -> None:
    """The session-43 review: a list saved before the folder-name check (or copied from a model) refused every
    later add or remove. Names already on it pass; a new one is still refused."""
    db.classes.set(pc.TASK, ("crack>1mm", "ok"))
    assert pc.add(db, ["blowhole"]).names == ("crack>1mm", "ok", "blowhole")
    assert pc.remove(db, ["ok"]).names == ("crack>1mm", "blowhole")
    with pytest.raises(pc.ClassListError, match="cannot name a folder"):
        pc.add(db, ["edge|burr"])


def test_model_list_until_the_project_saves_its_own(db, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", tmp_path / "no-bundled-models")   # no classifier at all
    assert pc.read(db).source == "none" and pc.names(db) == []
    _model(db, ["crazing", "patches"])
    listing = pc.read(db)
    assert (listing.names, listing.source, listing.model) == (("crazing", "patches"), "model", "steel-v1")
    # Adding copies the model's list first: hotkey 1 stays "crazing".
    assert pc.add(db, ["blowhole", "patches"]).names == ("crazing", "patches", "blowhole")
    assert pc.read(db).source == "project"
    _model_v2 = db.model_versions.register("classifier", "steel-v2", "/nowhere", card={"classes": ["a", "b"]})
    db.model_versions.activate(_model_v2.id)
    assert pc.names(db) == ["crazing", "patches", "blowhole"]  # the project's list outlives a model change
    assert pc.save(db, []).names == ("a", "b")                  # empty: back to the active model's


def test_before_its_first_pre_label_a_project_offers_the_classes_of_the_classifier_that_will_run(db) -> None:
    """A session-52 audit: a new project offered no class before its first pre-label ("There is no class 2: the
    project has 0"), then those of the bundled classifier that run made active; only opening Project ▸ Models, whose
    listing activates it, changed that, the window not told. The list is that classifier's from the start, read
    without writing, and neither the listing nor the pre-label's activation changes it."""
    from app.services.model_catalog import ensure_bundled
    from app.services.prelabel import read_card, resolve_models
    from inference.bundled import bundled_model_dir
    name = bundled_model_dir(pc.TASK).name
    expected = list(read_card(bundled_model_dir(pc.TASK))["classes"])
    assert expected and db.model_versions.active(pc.TASK) is None
    listing = pc.read(db)
    assert (list(listing.names), listing.source, listing.model) == (expected, "model", name)
    assert pc.names(db) == expected and db.model_versions.list() == []   # nothing registered by reading
    assert resolve_models(db, [pc.TASK])[pc.TASK].name == name   # the one the first pre-label runs
    ensure_bundled(db)                                          # what listing the models does
    assert pc.names(db) == expected and db.model_versions.active(pc.TASK).name == name


def test_removing_a_class_keeps_every_label_and_reports_them(tmp_path: Path, db) -> None:
    from app.services.indexing import index_folder

    root = make_folder(tmp_path / "lot")
    index_folder(db, root)
    pc.save(db, ["crack", "good"])
    ids = [i.id for i in db.images.query()]
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    db.labels.append(ids[2], LabelChange(ReviewState.ACCEPTED, class_name="good"), "ann")
    before = pc.read(db)
    assert before.in_use == {"crack": 2, "good": 1}
    after = pc.remove(db, ["CRACK"])
    assert after.names == ("good",)
    assert before.dropped_in_use(after.names) == {"crack": 2}
    assert db.labels.current(ids[0]).class_name == "crack"  # the label is not touched
    with pytest.raises(pc.ClassListError, match="not on the list: nope"):
        pc.remove(db, ["nope"])
    # a class labels use that was not on the list is not "no longer offered" by a later change (a session-44 probe)
    assert pc.read(db).dropped_in_use(pc.add(db, ["fray"]).names) == {}


def test_the_window_and_the_import_read_the_same_list(tmp_path: Path, db) -> None:
    from app.services.indexing import index_folder

    root = make_folder(tmp_path / "lot1")
    index_folder(db, root)
    _model(db, ["crack", "good"])
    pc.save(db, ["crack", "good"])
    review = ReviewService(db)
    assert review.classes() == ["crack", "good"]
    src = class_tree(tmp_path / "tree", root, {"a.png": "fray"})
    refused = preview_import(db, src, ImportOptions(format="imagefolder"))
    assert refused.errors and "Project ▸ Classes" in refused.errors[0]
    pc.add(db, ["fray"])
    review.refresh_models()
    assert review.classes() == ["crack", "good", "fray"]
    assert import_labels(db, src, ImportOptions(format="imagefolder")).written == 1


def test_the_command_lists_adds_and_removes(tmp_path: Path, capsys) -> None:
    from app.cli import main

    url = f"sqlite:///{(tmp_path / 'cli.sqlite').as_posix()}"
    assert main(["classes", "add", "crack", "fray", "--db", url]) == 0
    assert main(["classes", "remove", "crack", "--db", url]) == 0
    assert main(["classes", "list", "--db", url]) == 0
    out = capsys.readouterr().out
    # the bundled classifier's classes, then the one added and kept (the list starts from the active classifier's)
    listed = out.rsplit("classes, the project's own list", 1)[1]   # what `classes list` printed last
    assert out.endswith(listed) and "7  fray  (0 labels)" in listed and "crack " not in listed
    assert main(["classes", "add", "FRAY ", "fray", "--db", url]) == 2  # twice on one line
    assert "'fray' is already on the list as 'FRAY'" in capsys.readouterr().err
    assert main(["classes", "add", "fray", "fray", "--db", url]) == 2
    assert "'fray' is on the list twice" in capsys.readouterr().err


def test_adding_another_spelling_of_a_listed_class_is_refused_as_the_dialog_refuses_it(tmp_path: Path, db,
                                                                                       capsys) -> None:
    """A session-49 audit: ``classes add Blowhole Fray`` on a list holding "blowhole" exited 0, added "Fray" and left
    "Blowhole" out without a word, where Project ▸ Classes… refuses it and says why."""
    from app.cli import main

    pc.save(db, ["crazing", "blowhole"])
    with pytest.raises(pc.ClassListError, match=r"'Blowhole' is already on the list as 'blowhole'"):
        pc.add(db, ["Blowhole", "Fray"])
    assert pc.names(db) == ["crazing", "blowhole"]
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    assert main(["classes", "add", "Blowhole", "Fray", "--db", url]) == 2
    assert "'Blowhole' is already on the list as 'blowhole'" in capsys.readouterr().err
    assert main(["classes", "add", "blowhole", "fray", "--db", url]) == 0  # the same name again: said, not refused
    assert "note: 'blowhole' is on the list already" in capsys.readouterr().out
    assert pc.names(db) == ["crazing", "blowhole", "fray"]


def test_an_image_offers_the_classes_of_the_classifier_its_rule_runs_never_another_parts(tmp_path: Path, db) -> None:
    """Seen under Xvfb (session 35): a bottle no classifier runs on offered the active steel classifier's classes
    on the label panel; found in the code: so did a tile not yet pre-labelled by the tile classifier its rule names,
    and every tile once the project had its own list."""
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images

    _model(db, ["crazing", "patches"])
    db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "free"]})
    for sub, seed in (("steel", 0), ("tiles", 1), ("bottles", 2)):
        good_images(tmp_path / "lot" / sub, 3, seed=seed)
    index_folder(db, tmp_path / "lot")
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier", "anomaly"), (("classifier", "tile-v1"),)),
                              RoutingRule("bottles/*", ("segmenter", "anomaly")))))
    svc = ReviewService(db)
    ids = {i.rel_path: i.id for i in db.images.query()}

    def offered(rel: str) -> tuple[tuple[str, ...], bool]:
        detail = svc.detail(ids[rel])
        return detail.classes, detail.classifier_runs

    assert offered("tiles/img_000.png") == (("blowhole", "free"), True)     # no answer yet: its rule's version
    assert offered("steel/img_000.png") == ((), True)                       # the folder's list (the active one's)
    assert offered("bottles/img_000.png") == ((), False)                    # no classifier: nothing offered
    from database.dto import PredictionIn  # an answer from before the rules
    steel = db.model_versions.active("classifier")
    db.predictions.upsert_many([PredictionIn(ids[rel], steel.id, class_scores={"crazing": 0.9, "patches": 0.1},
                                             predicted_class="crazing", confidence=0.9)
                                for rel in ("bottles/img_000.png", "steel/img_000.png")])
    assert svc.detail(ids["steel/img_000.png"]).prediction is not None
    assert offered("steel/img_000.png") == (("crazing", "patches"), True)
    assert offered("bottles/img_000.png") == ((), False)                    # still none: the rules run none there
    db.labels.append(ids["bottles/img_001.png"], LabelChange(ReviewState.CORRECTED, class_name="broken"), "ann")
    db.labels.append(ids["bottles/img_002.png"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    db.labels.append(ids["bottles/img_000.png"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    db.labels.append(ids["steel/img_000.png"], LabelChange(ReviewState.CORRECTED, class_name="patches"), "ann")
    assert offered("bottles/img_000.png") == ((), False)   # written elsewhere: read again within SUBFOLDER_CLASSES_S
    svc.refresh_models()                                    # (or at once after a refresh, or a save here)
    assert offered("bottles/img_000.png") == (("good", "broken"), False)    # what its subfolder's labels use
    pc.add(db, ["dent"])    # the project's list: a copy of the active model's, and a new defect
    svc.refresh_models()
    assert offered("steel/img_000.png") == (("crazing", "patches", "dent"), True)
    assert offered("bottles/img_000.png") == (("dent", "good", "broken"), False)   # added, then the subfolder's
    # the tiles keep their own classifier's classes on hotkeys 1-2 (not "crazing"), then what the project added
    assert offered("tiles/img_000.png") == (("blowhole", "free", "dent"), True)
    tile_answer = PredictionIn(ids["tiles/img_001.png"], db.model_versions.by_name("classifier", "tile-v1").id,
                               class_scores={"blowhole": 0.2, "free": 0.8}, predicted_class="free", confidence=0.8)
    db.predictions.upsert_many([tile_answer])
    assert offered("tiles/img_001.png") == (("blowhole", "free", "dent"), True)
    # the tiles' too, then the classes labels use (the bottles')
    assert svc.filter_classes() == ["crazing", "patches", "dent", "blowhole", "free", "good", "broken"]


def test_a_line_whose_labels_use_classes_its_classifier_lacks_offers_them(tmp_path: Path, db) -> None:
    """Seen under Xvfb (session 38): 100 imported tile labels on a folder the steel classifier answered (every
    answer out of domain) offered only the steel classes: key 1 would have said "crazing", no key "blowhole"."""
    from app.services.indexing import index_folder
    from database.dto import PredictionIn
    from tests.worker.helpers import good_images

    _model(db, ["crazing", "patches"])
    for sub, seed in (("steel", 0), ("tiles", 1)):
        good_images(tmp_path / "lot" / sub, 3, seed=seed)
    index_folder(db, tmp_path / "lot")
    steel = db.model_versions.active("classifier")
    ids = {i.rel_path: i.id for i in db.images.query()}
    db.predictions.upsert_many([PredictionIn(i, steel.id, class_scores={"crazing": 0.9, "patches": 0.1},
                                             predicted_class="crazing", confidence=0.9) for i in ids.values()])
    for rel, name in (("tiles/img_001.png", "free"), ("tiles/img_002.png", "free"), ("tiles/img_000.png", "blowhole"),
                      ("steel/img_001.png", "patches"), ("steel/img_002.png", "patches"), ("steel/img_000.png", "pit")):
        db.labels.append(ids[rel], LabelChange(ReviewState.CORRECTED, class_name=name), "ann")
    svc = ReviewService(db)

    def offered(rel: str) -> tuple[str, ...]:
        detail = svc.detail(ids[rel])
        assert detail.classifier_runs
        return detail.classes

    # most of the tiles' labels are in classes the steel model lacks: theirs first (most used first), on every tile
    assert offered("tiles/img_000.png") == offered("tiles/img_001.png") == ("free", "blowhole", "crazing", "patches")
    # most of the steel labels are the model's: its classes keep keys 1-2, the line's own class follows
    assert offered("steel/img_000.png") == ("crazing", "patches", "pit")
    assert svc.filter_classes() == ["crazing", "patches", "free", "blowhole", "pit"]   # the queue filters by them too


def test_the_list_says_which_routed_versions_offer_their_own_classes_first(tmp_path: Path, db, capsys) -> None:
    from app.commands.classes import _show
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule

    _model(db, ["crazing", "patches"])
    db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "free"]})
    db.model_versions.register("classifier", "plain-v1", "/nowhere")   # no classes of its own: the list stands
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),
                              RoutingRule("other/*", ("classifier",), (("classifier", "plain-v1"),)))))
    listing = pc.read(db)
    assert listing.routed == ("tile-v1",)
    _show(listing)
    assert "names tile-v1 offer its classes first" in capsys.readouterr().out


def test_a_new_spelling_of_a_class_labels_or_a_model_use_is_refused(tmp_path: Path, db) -> None:
    """A session-49 audit: ``classes set Crazing …`` (or Remove, then Add in Project ▸ Classes…) renamed "crazing",
    which 5 labels used, by case. Key 1 then saved "Crazing", the old labels kept "crazing", and every ImageFolder or
    MVTec export and ``retrain classifier`` was refused from then on (one folder on Windows and macOS); setting the
    list back changed no label, so the refusal came again and again."""
    from app.services.indexing import index_folder

    index_folder(db, make_folder(tmp_path / "lot"))
    _model(db, ["crazing", "inclusion"])
    pc.save(db, ["crazing", "inclusion"])
    ids = [i.id for i in db.images.query()]
    for image_id in ids[:2]:
        db.labels.append(image_id, LabelChange(ReviewState.CORRECTED, class_name="crazing"), "ann")
    with pytest.raises(pc.ClassListError, match=r"'Crazing' would share a class folder with 'crazing' \(2 labels "
                                                r"use it\).*Keep 'crazing'"):
        pc.save(db, ["Crazing", "inclusion"])
    pc.save(db, ["inclusion"])  # "crazing" off the list: its labels and the model still have it
    for bad in ("Crazing", "CRAZING"):
        with pytest.raises(pc.ClassListError, match="would share a class folder"):
            pc.add(db, [bad])
    db.model_versions.register("classifier", "steel-v2", "/nowhere", card={"classes": ["Dent"]}, activate=True)
    with pytest.raises(pc.ClassListError, match=r"with 'Dent' \(the project has it"):  # the active model's
        pc.add(db, ["dent"])
    assert pc.add(db, ["crazing", "Dent"]).names == ("inclusion", "crazing", "Dent")  # the spellings they have
    # A project caught before: both spellings on labels, "Crazing" on the list. Either spelling labels use may be
    # put back on the list (it is theirs), and is the one key the inspector moves the other's labels to.
    db.classes.set(pc.TASK, ("Crazing", "inclusion"))
    db.labels.append(ids[2], LabelChange(ReviewState.CORRECTED, class_name="Crazing"), "ann")
    assert pc.save(db, ["crazing", "inclusion"]).names == ("crazing", "inclusion")
    assert pc.save(db, ["Crazing", "inclusion"]).names == ("Crazing", "inclusion")


def test_a_routed_classifier_and_the_list_never_offer_one_class_on_two_keys(tmp_path: Path, db) -> None:
    """A session-49 audit: the list held "Blowhole" and "Fray" (added before the tile classifier was routed); a rule
    then ran the tile classifier (classes "blowhole", "fray") on odd/: its images offered "blowhole" on key 1 and
    "Blowhole" on key 8, and labels split between the two refused every class-folder export."""
    from app.services.indexing import index_folder
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.worker.helpers import good_images

    _model(db, ["crazing", "patches"])
    tile = db.model_versions.register("classifier", "tile-v1", "/nowhere", card={"classes": ["blowhole", "fray"]})
    db.classes.set(pc.TASK, ("crazing", "patches", "Blowhole", "Fray", "dent"))   # stored before the check
    good_images(tmp_path / "lot" / "tiles", 1, seed=1)
    index_folder(db, tmp_path / "lot")
    save_routing(db, Routing((RoutingRule("tiles/*", ("classifier",), (("classifier", "tile-v1"),)),)))
    assert pc.names_for_version(db, tile) == ["blowhole", "fray", "dent"]
    with pytest.raises(pc.ClassListError, match="'FRAY' would share a class folder with 'fray'"):
        pc.validate(["FRAY"], taken=pc.read(db).taken())  # the routed version's class counts as the project's


def test_another_spelling_is_said_to_be_on_the_list_once(tmp_path: Path, capsys) -> None:
    """A session-51 audit: ``classes add Crazing`` beside "crazing" was refused with "'Crazing' is on the list twice
    (as 'crazing')", of a list holding it once."""
    from app.cli import main

    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    assert main(["classes", "add", "crazing", "--db", url]) == 0
    capsys.readouterr()
    assert main(["classes", "add", "Crazing", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "'Crazing' is already on the list as 'crazing'" in err and "twice" not in err


def test_a_class_nothing_uses_is_renamed_by_case_in_one_step(db) -> None:
    """The review of a session-49 fix: a list-only "blowhole" (no label, no model) renamed "Blowhole" was refused as
    "would share a class folder", though nothing would use "blowhole" after the save; removing it and adding it back
    in two saves went round the refusal."""
    pc.save(db, ["blowhole", "crazing"])
    assert pc.save(db, ["Blowhole", "crazing"]) is not None
    assert pc.names(db) == ["Blowhole", "crazing"]
    with pytest.raises(pc.ClassListError, match=r"'blowhole' is already on the list as 'Blowhole'"):
        pc.save(db, ["Blowhole", "crazing", "blowhole"])


def test_the_list_counts_one_label_and_one_class_in_the_singular(capsys) -> None:
    """``classes list`` printed "patches  (1 labels)" (and "1 classes"): a session-51 audit; counted with ``plural``."""
    from app.commands.classes import _show

    _show(pc.ClassList(names=("patches",), source="project", in_use={"patches": 1}))
    out = capsys.readouterr().out
    assert out.startswith("1 class, the project's own list:") and "patches  (1 label)" in out
    _show(pc.ClassList(names=("crazing", "patches"), source="project", in_use={"patches": 2}))
    out = capsys.readouterr().out
    assert out.startswith("2 classes,") and "crazing  (0 labels)" in out and "patches  (2 labels)" in out
