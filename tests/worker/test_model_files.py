"""A model version registered at one station runs at every station and worker of a shared database (ADR 0062).

Before, a version row was only a path on the registering station's disk: a worker elsewhere failed every image it
claimed with "model cannot be loaded" (found looking at two stations on one PostgreSQL database: a retraining
writes into the retraining station's user data folder)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.model_catalog import ModelCatalog
from app.services.model_files import ModelFilesError, folder_files, keep_in_database, local_model_dir
from app.services.prelabel import submit_prelabel, version_for_dir
from app.worker import Worker, WorkerOptions
from tests.worker.helpers import good_images


@pytest.fixture
def db(url):
    from database.engine import open_database
    database = open_database(url)
    yield database
    database.close()


def _elsewhere(tiny_models: dict[str, Path], tmp_path: Path, family: str) -> Path:
    """A copy of a tiny model in a folder of 'another station' (removed by the test to play this one)."""
    return Path(shutil.copytree(tiny_models[family], tmp_path / "station-a" / f"{family}-made-there"))


def test_a_version_made_at_another_station_prelabels_here_from_the_databases_copy(db, tiny_models, tmp_path,
                                                                                  capsys) -> None:
    versions = {}
    for family in ("classifier", "segmenter", "anomaly"):
        v = version_for_dir(db, family, _elsewhere(tiny_models, tmp_path, family))  # registers and keeps the files
        db.model_versions.activate(v.id)
        versions[family] = v
    assert {n for n, _sha, _size in db.model_versions.file_list(versions["classifier"].id)} >= {
        "config.json", "model.safetensors", "card.json"}
    shutil.rmtree(tmp_path / "station-a")  # this station does not see station A's disk

    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    worker = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=ArtifactStore(tmp_path / "a"))
    worker.run(once=True)
    assert worker.stats.predicted == 3 and worker.stats.failed == 0  # before: 3 failed, "model cannot be loaded"
    here = local_model_dir(db, versions["segmenter"])
    assert here.is_dir() and here != Path(versions["segmenter"].checkpoint_path)
    assert sorted(p.name for p in here.iterdir()) == sorted(p.name for p in tiny_models["segmenter"].iterdir()
                                                            if p.suffix in (".json", ".safetensors"))

    rows = {r.name: r for r in ModelCatalog(db).rows("classifier")}
    made_there = rows[versions["classifier"].name]
    assert made_there.exists and made_there.kept and not made_there.here
    from app.cli import main
    assert main(["models", "list", "--db", db.url]) == 0
    listed = capsys.readouterr().out
    assert f"{versions['classifier'].name}  [files: the database's copy]" in listed
    other = version_for_dir(db, "classifier", tiny_models["classifier"])
    assert ModelCatalog(db).activate(other.id).active
    assert ModelCatalog(db).activate(versions["classifier"].id).active  # its check reads the database's copy


def test_a_version_registered_before_is_shared_by_the_first_station_that_sees_it(db, tiny_models, tmp_path) -> None:
    folder = _elsewhere(tiny_models, tmp_path, "classifier")
    v = db.model_versions.register("classifier", "older", str(folder))  # as stations before ADR 0062 did
    assert db.model_versions.file_list(v.id) == []
    with pytest.raises(ModelFilesError):  # gone before anyone shared it: says where it was, and why not here
        shutil.move(str(folder), str(tmp_path / "hidden"))
        local_model_dir(db, v)
    shutil.move(str(tmp_path / "hidden"), str(folder))
    assert local_model_dir(db, v) == folder  # station A loads it from its disk, and keeps a copy in the database
    assert db.model_versions.file_list(v.id)
    shutil.rmtree(folder)
    assert (local_model_dir(db, v) / "config.json").is_file()


def test_a_bundled_version_registered_by_another_install_runs_this_installs_copy(db) -> None:
    from inference.bundled import bundled_model_dir
    mine = bundled_model_dir("classifier")
    v = db.model_versions.register("classifier", mine.name, f"/opt/other-install/resources/models/{mine.name}",
                                   bundled=True)
    assert local_model_dir(db, v) == mine
    assert keep_in_database(db, v) == 0  # bundled: every install has it


def test_only_the_files_inference_reads_are_kept_and_hostile_copies_are_refused(db, tiny_models, tmp_path) -> None:
    folder = _elsewhere(tiny_models, tmp_path, "classifier")
    (folder / "training").mkdir()
    (folder / "training" / "state.pt").write_bytes(b"a pickle stays where it was made")
    (folder / "training" / "snapshots").mkdir()   # the trainer's snapshots: not inference's (a session-46 probe)
    (folder / "training" / "snapshots" / "epoch10.safetensors").write_bytes(next(folder.glob("*.safetensors")).read_bytes())
    (folder / "training" / "report.json").write_text("{}")
    import os
    weights = next(folder.glob("*.safetensors"))
    (folder / "link.json").symlink_to(folder / "config.json")  # a Hugging Face cache links its JSON files so
    (folder / "verifier").mkdir()  # a part's folder (a card's "parts"): its files are read by the same names
    (folder / "verifier" / "model.safetensors").symlink_to(weights)  # a git-annex / DVC weights file is such a link:
    (folder / "linked.safetensors").symlink_to(weights)  # a name inference never reads is not followed
    (folder / "dir.json").symlink_to(folder / "training", target_is_directory=True)  # kept as the file it names
    os.mkfifo(folder / "pipe.json")  # never read (it would block)
    (tmp_path / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (folder / "notes.txt").symlink_to(tmp_path / "id_rsa")  # a session-44 probe: copied into the shared database
    (folder / "fake.safetensors").symlink_to(tmp_path / "id_rsa")
    (folder / "fake.json").symlink_to(tmp_path / "id_rsa")
    files = dict(folder_files(folder))
    assert not any(name.startswith("training/") for name in files) and "config.json" in files
    assert files["verifier/model.safetensors"] == weights.read_bytes() and "linked.safetensors" not in files
    assert "link.json" not in files  # a linked JSON inference does not read is left out (a session-51 audit)
    assert "dir.json" not in files and "pipe.json" not in files
    assert "notes.txt" not in files and "fake.safetensors" not in files and "fake.json" not in files
    with pytest.raises(ModelFilesError, match="no config.json"):
        folder_files(tmp_path / "imgs-none") if (tmp_path / "imgs-none").mkdir() is None else None

    v = db.model_versions.register("classifier", "hostile", str(tmp_path / "nowhere"))
    db.model_versions.put_files(v.id, [("config.json", b"{}"), ("../../escape.json", b"{}")])
    with pytest.raises(ModelFilesError, match="outside its folder"):
        local_model_dir(db, v)
    damaged = db.model_versions.register("classifier", "damaged", str(tmp_path / "nowhere2"))
    db.model_versions.put_files(damaged.id, [("config.json", b"{}")])
    from sqlalchemy import update

    from database.models import ModelFile
    with db.session(write=True) as s:
        s.execute(update(ModelFile).where(ModelFile.model_version_id == damaged.id).values(data=b"{ }"))
    with pytest.raises(ModelFilesError, match="damaged"):
        local_model_dir(db, damaged)


def test_a_folder_changed_after_it_was_registered_runs_the_kept_copy(db, tiny_models, tmp_path) -> None:
    """Found by a session-44 probe: after Add, the folder's weights and card were overwritten; this station's worker
    answered with the new weights under the same version while other stations ran the database's copy."""
    folder = _elsewhere(tiny_models, tmp_path, "classifier")
    v = version_for_dir(db, "classifier", folder)
    kept = (folder / "model.safetensors").read_bytes()
    assert local_model_dir(db, v) == folder
    (folder / "card.json").write_text('{"classes": ["ok", "defect"]}')
    here = local_model_dir(db, v)
    assert here != folder and (here / "model.safetensors").read_bytes() == kept
    assert "ok" not in (here / "card.json").read_text()
    from app.services.model_files import model_files_here  # the routing proposal's reader, the same copy
    assert model_files_here(db, v, ("config.json",)) != folder


def test_a_cache_folder_of_links_is_kept_whole(db, tiny_models, tmp_path) -> None:
    """The session-44 review: a Hugging Face cache folder (config, card and weights all links into its blobs) was
    refused at Add as "no config.json" after the link fix; a DVC one kept no card, so other stations ran the model
    without its classes. Links to the files inference reads are followed when they hold what their names say."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    folder = tmp_path / "snapshot"
    folder.mkdir()
    for name in ("config.json", "card.json", "model.safetensors"):
        (blobs / name).write_bytes((tiny_models["classifier"] / name).read_bytes())
        (folder / name).symlink_to(blobs / name)
    assert sorted(dict(folder_files(folder))) == ["card.json", "config.json", "model.safetensors"]


def test_a_linked_json_object_inference_does_not_read_is_left_out(tmp_path) -> None:
    """Found by a session-51 audit: extra.json -> a secret JSON object outside the folder was followed (it parsed as
    an object), so Add copied the secret into the shared database for every station. Only the files inference reads
    by name (config, card, weights, domain files, in the folder or a part's) are followed; any other link is left
    out, as the session-44 notes.txt was."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "hunter2"}')
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"family": "classifier"}')
    (folder / "extra.json").symlink_to(secret)
    assert sorted(dict(folder_files(folder))) == ["config.json"]
    from app.services.model_files import LINKED_NAMES
    from inference.checkpoints import CARD, CONFIG, WEIGHTS
    from inference.domain import DOMAIN_JSON, DOMAIN_WEIGHTS
    assert LINKED_NAMES == {CONFIG, CARD, WEIGHTS, DOMAIN_JSON, DOMAIN_WEIGHTS}


def _updated_install(tiny_models: dict[str, Path], tmp_path: Path, monkeypatch, db):
    """This install's bundled ``segmenter-sirst-v3`` (a tiny model) and the row an older install registered for it
    before fingerprints were kept: at its own folder, with its own card and no fingerprint (``config`` {})."""
    import json

    from app.services import model_files
    root = tmp_path / "install" / "models"
    here = Path(shutil.copytree(tiny_models["segmenter"], root / "segmenter-sirst-v3"))
    (here / "card.json").write_text(json.dumps({"retrained": "80 epochs"}))   # the update's card
    monkeypatch.setattr("inference.bundled.BUNDLED_ROOT", root)
    monkeypatch.setattr(model_files, "_FINGERPRINTS", {})
    old = db.model_versions.register("segmenter", here.name, "/opt/station-1.4/resources/models/segmenter-sirst-v3",
                                     bundled=True, activate=True, card={"retrained": "40 epochs"})
    assert old.config == {}
    return here, old


def test_a_job_queued_before_an_update_runs_with_the_version_that_replaced_its_bundled_one(
        db, tiny_models, tmp_path, monkeypatch) -> None:
    """A session-52 audit: a pre-label job the old station queued was run by the updated worker, which loaded the
    install's new segmenter-sirst-v3 and stored its answers under the old version row (registered before fingerprints
    were kept, so nothing was checked); the next `models list` retired that row as "segmenter-sirst-v3 (until …)" with
    those answers, and the new version had none for the images. The worker then retired the replaced bundle before
    loading, and the job's images failed with "replaced by an update … pre-label again": the queued work was lost
    until the inspector found and queued it again (a session-52 audit). Now the job moves to the version that took
    the bundle's place: its images are answered under the new version, none fails, none is filed under the old one."""
    here, old = _updated_install(tiny_models, tmp_path, monkeypatch, db)
    good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder, families=["segmenter"])   # as the station before the update queued it
    assert db.jobs.get(job).params["model_versions"] == {"segmenter": old.id}
    worker = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=ArtifactStore(tmp_path / "a"))
    worker.run(once=True)
    ids = [im.id for im in db.images.query()]
    assert db.predictions.for_images(ids, old.id) == {}   # before the first fix: both images' new answers, filed here
    retired = db.model_versions.get(old.id)
    assert retired.name.startswith("segmenter-sirst-v3 (until ") and not retired.bundled
    new = db.model_versions.active("segmenter")
    assert new.id != old.id and new.name == here.name and Path(new.checkpoint_path) == here
    assert db.model_versions.replaced_by(old.id) == new and db.model_versions.replaced_by(new.id) is None
    assert db.jobs.failed_items(job) == []   # before: both failed, "… replaced by an update …; pre-label again"
    assert set(db.predictions.for_images(ids, new.id)) == set(ids)
    assert db.jobs.get(job).params["model_versions"] == {"segmenter": new.id}
    assert worker.stats.predicted == 2 and worker.stats.failed == 0


def test_a_job_naming_a_replaced_version_no_bundle_took_the_place_of_still_fails_with_the_reason(
        db, tiny_models, tmp_path) -> None:
    """Only a version an update replaced with a new bundled one is moved: one whose name no bundled version holds
    now fails its images as before, with the reason."""
    gone = db.model_versions.register("segmenter", "sirst (until 2026-12-01)", str(tiny_models["segmenter"]),
                                      config={"replaced": {"by_update_of": "segmenter-gone", "note": "an update"}})
    assert db.model_versions.replaced_by(gone.id) is None
    good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder, families=["segmenter"], named={"segmenter": gone.id})
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=ArtifactStore(tmp_path / "a")
           ).run(once=True)
    reasons = {it.error for it in db.jobs.failed_items(job)}
    assert len(db.jobs.failed_items(job)) == 2 and len(reasons) == 1
    [reason] = reasons
    assert reason.startswith("model cannot be loaded: ") and "was replaced by an update of the station" in reason
    assert reason.endswith("pre-label again to run the new one")


def test_a_bundled_row_without_a_fingerprint_never_loads_an_updated_installs_files(db, tiny_models, tmp_path,
                                                                                   monkeypatch) -> None:
    """The same session-52 audit: with no fingerprint stored, a bundled row ran whatever this install held under its
    name. A row whose stored card is not the one on disk is now refused, as one whose fingerprint differs is; one
    whose card is the one on disk runs this install's copy."""
    import json
    here, old = _updated_install(tiny_models, tmp_path, monkeypatch, db)
    with pytest.raises(ModelFilesError, match="holds other files than the ones registered with it: the station was "
                                              "updated; pre-label again"):
        local_model_dir(db, old)
    (here / "card.json").write_text(json.dumps(old.card))   # the same model: its card is the one registered
    assert local_model_dir(db, db.model_versions.get(old.id)) == here
