"""Out-of-domain images through the real worker: tiny models given domain statistics of dark,
smooth images; a bright checkerboard is flagged ``out_of_domain`` with its in-domain score stored,
the family's other reasons are withheld, and the prelabel report counts it."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.artifacts import ArtifactStore
from app.services.flags import OUT_OF_DOMAIN, FlagSettings
from app.services.indexing import index_folder
from app.services.prelabel import submit_prelabel
from app.services.reflag import reflag_folder
from app.worker import Worker, WorkerOptions
from database.dto import ImageQuery
from inference.domain import OUT_OF_DOMAIN_BELOW, load_domain
from inference.domain_fit import fit_directory
from tests.worker.helpers import make_db


def dark_images(folder: Path, n: int, seed: int) -> list[Path]:
    """The tiny models' "training domain": dark, smooth gradients with a little noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    out = []
    for i in range(n):
        a, b = rng.uniform(0.05, 0.2, 2)
        img = 40 + 30 * (a * xx + b * yy) + rng.normal(0, 2, (32, 32))
        p = folder / f"dark_{i:03d}.png"
        assert cv2.imwrite(str(p), np.clip(img, 0, 255).astype(np.uint8))
        out.append(p)
    return out


def checkerboard(path: Path) -> Path:
    """Far from that domain: full-contrast 2-pixel checks."""
    yy, xx = np.mgrid[0:32, 0:32]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), (((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def domain_models(tmp_path_factory, tiny_models) -> dict[str, Path]:
    """Copies of the tiny models, each with statistics fitted on 150 dark images (the image
    descriptor has 31 features: a Gaussian of them needs several times that many images)."""
    root = tmp_path_factory.mktemp("domain_models")
    train = dark_images(root / "train", 150, seed=1)
    out = {}
    for family, path in tiny_models.items():
        out[family] = Path(shutil.copytree(path, root / path.name))
        fit_directory(out[family], train, device="cpu", components=8)
    return out


def test_an_image_far_from_the_training_domain_is_flagged_out_of_domain(url, domain_models, tmp_path: Path) -> None:
    db = make_db(url, domain_models)
    try:
        dark_images(tmp_path / "imgs", 4, seed=7)
        checkerboard(tmp_path / "imgs" / "checks.png")
        folder = index_folder(db, tmp_path / "imgs").folder_id
        # Thresholds that flag nothing else, so the flag seen is the domain's.
        settings = FlagSettings(min_confidence=0.0, min_targets=10**6, good_classes=("free", "crack"),
                                anomaly_threshold=1e9)
        submit_prelabel(db, folder_id=folder, flag_settings=settings)
        Worker(db, WorkerOptions(device="cpu", batch_size=5, poll_s=0.05),
               artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
        images = {im.rel_path: im for im in db.images.query(ImageQuery(folder_id=folder))}
        far = db.predictions.for_image(images["checks.png"].id)
        assert len(far) == 3
        for p in far:
            assert p.in_domain is not None and p.in_domain < OUT_OF_DOMAIN_BELOW
            assert p.flags == (OUT_OF_DOMAIN,)
            # Why, in words: half its pixels are white, the dark training images have none (inference.domain_notes).
            assert p.domain_note and "(training images: " in p.domain_note, p.domain_note
        assert images["checks.png"].flagged and images["checks.png"].priority >= 1
        near = [p for name, im in images.items() if name != "checks.png" for p in db.predictions.for_image(im.id)]
        assert len(near) == 12 and all(p.in_domain is not None for p in near)
        assert all(p.domain_note is None for p in near)
        assert min(p.in_domain for p in near) > max(p.in_domain for p in far)
        family_of = {v.id: v.family for v in db.model_versions.list()}
        assert {family_of[p.model_version_id] for p in far} == {"classifier", "segmenter", "anomaly"}

        # New thresholds re-flag stored rows: the far image stays out of domain, scores kept.
        reflag_folder(db, folder, replace(settings, anomaly_threshold=-1.0))
        again = {p.model_version_id: p for p in db.predictions.for_image(images["checks.png"].id)}
        assert all(again[p.model_version_id].flags == (OUT_OF_DOMAIN,)
                   and again[p.model_version_id].in_domain == p.in_domain for p in far)
        near_anomaly = [p for name, im in images.items() if name != "checks.png"
                        for p in db.predictions.for_image(im.id) if family_of[p.model_version_id] == "anomaly"]
        assert all(p.flags == ("anomaly",) and p.in_domain is not None for p in near_anomaly)
    finally:
        db.close()


def test_prelabel_report_counts_out_of_domain_images_per_family(sqlite_url, domain_models, tmp_path: Path,
                                                                capsys) -> None:
    from app.cli import main

    db = make_db(sqlite_url, domain_models)
    db.close()
    dark_images(tmp_path / "imgs", 3, seed=9)
    checkerboard(tmp_path / "imgs" / "checks.png")
    checkerboard(tmp_path / "imgs" / "more" / "checks2.png")
    report = tmp_path / "report.json"
    assert main(["prelabel", str(tmp_path / "imgs"), "--db", sqlite_url, "--device", "cpu",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["out_of_domain"] == {"classifier": 2, "segmenter": 2, "anomaly": 2}
    # Each one, with why; and the run says so on stderr, not only "N images pre-labelled".
    listed = data["out_of_domain_images"]
    assert sorted((i["path"], i["family"]) for i in listed) == sorted(
        (p, f) for p in ("checks.png", "more/checks2.png") for f in ("classifier", "segmenter", "anomaly"))
    assert all(i["why"] and i["in_domain"] < OUT_OF_DOMAIN_BELOW for i in listed)
    err = capsys.readouterr().err
    assert "out of domain (their answers are withheld" in err and "classifier 2, segmenter 2, anomaly 2" in err
    assert f"checks.png (classifier): {next(i['why'] for i in listed if i['path'] == 'checks.png')}" in err


def test_the_report_counts_the_answers_that_count_not_a_version_the_rules_took_the_images_from(
        sqlite_url, domain_models, tmp_path: Path) -> None:
    """Seen: a bottle subfolder routed to anomaly-bottle was counted "anomaly: 10 out of domain" from the tile
    model's earlier answers there, while the bottle model, whose answers count, called all 10 in domain."""
    from app.cli import main
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule

    db = make_db(sqlite_url, domain_models)
    dark_images(tmp_path / "imgs", 3, seed=9)
    checkerboard(tmp_path / "imgs" / "more" / "checks2.png")
    report = tmp_path / "report.json"
    args = ["prelabel", str(tmp_path / "imgs"), "--db", sqlite_url, "--device", "cpu", "--families", "anomaly",
            "--report", str(report)]
    try:
        assert main(args) == 0
        assert json.loads(report.read_text())["out_of_domain"] == {"anomaly": 1}   # checks2, by the active version
        plain = Path(shutil.copytree(domain_models["anomaly"], tmp_path / "anomaly-plain"))
        for name in ("domain.json", "domain.safetensors"):   # a version with no description: no in-domain score
            (plain / name).unlink()
        db.model_versions.register("anomaly", "anomaly-plain", str(plain))
        save_routing(db, Routing((RoutingRule("more/*", ("anomaly",), (("anomaly", "anomaly-plain"),)),)))
        assert main(args) == 0
        data = json.loads(report.read_text())
        assert data["out_of_domain"] == {"anomaly": 0} and data["predicted"] == {"anomaly": 4}
    finally:
        db.close()


def test_the_report_counts_every_family_asked_over_the_images_the_rules_give_it_now(
        sqlite_url, domain_models, tmp_path: Path, capsys) -> None:
    """Session-46 probes: counted over the families this run's jobs ran, an image a rule no longer gives the
    classifier still counted for it, a family no job ran here lost its key (the station still flags its answers),
    the keys came in job order; and the command ran another folder's queued job in its process first."""
    from app.cli import main
    from app.services.indexing import index_folder
    from app.services.prelabel import submit_prelabel
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule

    db = make_db(sqlite_url, domain_models)
    dark_images(tmp_path / "imgs", 3, seed=9)
    checkerboard(tmp_path / "imgs" / "checks.png")
    checkerboard(tmp_path / "imgs" / "more" / "checks2.png")
    dark_images(tmp_path / "backlog", 2, seed=3)
    waiting = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "backlog").folder_id)
    report = tmp_path / "report.json"
    args = ["prelabel", str(tmp_path / "imgs"), "--db", sqlite_url, "--device", "cpu", "--report", str(report)]
    try:
        assert main(args) == 0
        data = json.loads(report.read_text())
        assert data["out_of_domain"] == {"classifier": 2, "segmenter": 2, "anomaly": 2} and data["not_routed"] == 0
        assert db.jobs.get(waiting).status == "queued"  # the other folder's job is left to a worker
        save_routing(db, Routing((RoutingRule("more/*", ("segmenter",)),)))
        assert main(args) == 0
        assert json.loads(report.read_text())["out_of_domain"] == {"classifier": 1, "segmenter": 2, "anomaly": 1}
        save_routing(db, Routing((RoutingRule("*", ("segmenter",)),)))
        assert main(args) == 0
        data = json.loads(report.read_text())
        assert list(data["out_of_domain"].items()) == [("classifier", 0), ("segmenter", 2), ("anomaly", 0)]
        assert list(data["predicted"]) == ["classifier", "segmenter", "anomaly"]
        save_routing(db, Routing((RoutingRule("more/*", ()), RoutingRule("*", ("segmenter",)))))
        assert main(args) == 0
        assert json.loads(report.read_text())["not_routed"] == 1
        (tmp_path / "empty").mkdir()   # no images: not the routing's doing
        assert main(["prelabel", str(tmp_path / "empty"), "--db", sqlite_url, "--device", "cpu"]) == 0
        assert "nothing to run: the folder holds no images" in capsys.readouterr().err
    finally:
        db.close()


def test_damaged_statistics_cost_the_score_only(tiny_models, tmp_path: Path) -> None:
    from inference.engine import InspectionEngine

    d = Path(shutil.copytree(tiny_models["classifier"], tmp_path / "cls"))
    fit_directory(d, dark_images(tmp_path / "train", 20, seed=3), device="cpu", components=4)
    assert load_domain(d) is not None
    (d / "domain.safetensors").write_bytes(b"not a safetensors file")
    with InspectionEngine({"classifier": d}, device="cpu") as engine:
        assert "unreadable" in engine.model("classifier").domain_problem
        [r] = engine.predict_paths([checkerboard(tmp_path / "c.png")])
    assert r.ok and r.classifier is not None and r.in_domain == {}


def test_the_files_size_and_channels_reach_the_descriptor(domain_models, tmp_path: Path) -> None:
    """The decoder shrinks and channel-converts for the model; the descriptor still reads the
    file's own size and channel count, so the same picture stored another way is out of domain."""
    from inference.engine import InspectionEngine

    [same] = dark_images(tmp_path / "imgs", 1, seed=11)
    grey = cv2.imread(str(same), cv2.IMREAD_GRAYSCALE)
    colour = tmp_path / "imgs" / "colour.png"
    assert cv2.imwrite(str(colour), np.repeat(grey[:, :, None], 3, axis=2))  # identical channels, 3 in the file
    larger = tmp_path / "imgs" / "larger.png"
    assert cv2.imwrite(str(larger), cv2.resize(grey, (48, 48), interpolation=cv2.INTER_LINEAR))
    with InspectionEngine({"classifier": domain_models["classifier"]}, device="cpu") as engine:
        scores = {Path(r.path).name: r.in_domain["classifier"] for r in engine.predict_paths([same, colour, larger])}
    assert scores[same.name] >= OUT_OF_DOMAIN_BELOW
    assert scores["colour.png"] < OUT_OF_DOMAIN_BELOW and scores["larger.png"] < OUT_OF_DOMAIN_BELOW


def test_domain_fit_command_writes_the_chosen_parts_and_refuses_unknown_ones(tiny_models, tmp_path: Path) -> None:
    from app.cli import main

    d = Path(shutil.copytree(tiny_models["classifier"], tmp_path / "cls"))
    dark_images(tmp_path / "train", 60, seed=5)
    assert main(["domain", "fit", "--model", str(d), "--data", str(tmp_path / "train"), "--device", "cpu",
                 "--parts", "bogus"]) != 0
    assert load_domain(d) is None
    assert main(["domain", "fit", "--model", str(d), "--data", str(tmp_path / "train"), "--device", "cpu"]) == 0
    meta = json.loads((d / "domain.json").read_text())
    assert meta["format"] == 2 and set(meta["parts"]) == {"descriptor", "descriptor_range"} and meta["images"] == 60
    assert main(["domain", "fit", "--model", str(d), "--data", str(tmp_path / "train"), "--device", "cpu",
                 "--parts", "embedding,descriptor"]) == 0
    stats = load_domain(d)
    assert stats is not None and set(stats.parts) == {"embedding", "descriptor"}


def test_domain_fit_groups_folds_by_the_rule_asked_and_train_hands_its_own(tiny_models, tmp_path: Path) -> None:
    import argparse

    from app.cli import main
    from app.commands.domain import after_train
    from inference.domain import THRESHOLD_QUANTILES

    d = Path(shutil.copytree(tiny_models["classifier"], tmp_path / "cls"))
    for i, p in enumerate(dark_images(tmp_path / "train", 60, seed=5)):  # six capture sessions s0..s5
        p.rename(p.with_name(f"s{i % 6}_{p.name}"))
    data = str(tmp_path / "train")

    def fit(*extra: str) -> int:
        return main(["domain", "fit", "--model", str(d), "--data", data, "--device", "cpu", *extra])

    assert fit("--group-by", "prefix") == 0
    meta = json.loads((d / "domain.json").read_text())
    assert (meta["fold_groups"], meta["fold_group_count"]) == ("prefix", 6)
    assert set(meta["own_rates_group_cv"]) == {f"{q:g}" for q in THRESHOLD_QUANTILES}
    assert meta["quantile"] in THRESHOLD_QUANTILES
    assert fit("--group-by", "none") == 0
    assert json.loads((d / "domain.json").read_text())["fold_groups"] == "none"
    assert fit("--group-by", "bogus") != 0
    assert fit("--quantile", "0.995") == 0
    assert json.loads((d / "domain.json").read_text())["quantile"] == 0.995
    # After training: the family's own --group-by (here the anomaly trainer's regex form) sets the folds.
    after_train(argparse.Namespace(out=str(d), data=data, device="cpu", group_by=r"regex:^(s\d)_"))
    meta = json.loads((d / "domain.json").read_text())
    assert (meta["fold_groups"], meta["fold_group_count"]) == (r"regex:^(s\d)_", 6)


def test_domain_fit_refuses_a_group_by_pattern_that_is_no_regular_expression(tiny_models, tmp_path: Path,
                                                                            capsys) -> None:
    """A session-49 audit: ``domain fit --group-by 'regex:('`` ended in a traceback (re.error) after reading the
    images; it is one line before any work now, and the model's statistics are left as they were."""
    from app.cli import main

    d = Path(shutil.copytree(tiny_models["classifier"], tmp_path / "cls"))
    dark_images(tmp_path / "train", 10, seed=5)
    before = (d / "domain.json").read_bytes() if (d / "domain.json").exists() else None
    assert main(["domain", "fit", "--model", str(d), "--data", str(tmp_path / "train"), "--device", "cpu",
                 "--group-by", "regex:("]) == 2
    err = capsys.readouterr().err
    assert "grouping 'regex:(': '(' is not a regular expression (missing ), unterminated subpattern" in err
    assert "Traceback" not in err
    assert ((d / "domain.json").read_bytes() if (d / "domain.json").exists() else None) == before


def test_domain_fit_on_groups_too_uneven_to_fold_says_its_folds_are_mixed(tiny_models, tmp_path: Path, capsys) -> None:
    """A session-49 audit: 10 training images in groups of 1 and 9 gave no domain statistics ("IndexError: index -1
    is out of bounds"); they are fitted on mixed folds now, and the line and domain.json say the folds were not the
    groups', and why."""
    from app.cli import main

    d = Path(shutil.copytree(tiny_models["classifier"], tmp_path / "cls"))
    for i, p in enumerate(dark_images(tmp_path / "train", 10, seed=5)):
        p.rename(p.with_name(f"{'s0' if i == 0 else 's1'}_{p.name}"))
    assert main(["domain", "fit", "--model", str(d), "--data", str(tmp_path / "train"), "--device", "cpu",
                 "--group-by", "prefix"]) == 0
    assert ("folds by none (prefix groups: a fold of whole groups would leave fewer than 8 images to fit without it)"
            in capsys.readouterr().out)
    meta = json.loads((d / "domain.json").read_text())
    assert (meta["fold_groups"], meta["fold_group_count"], meta["images"]) == ("none", 0, 10)


def test_a_report_path_that_cannot_be_written_is_refused_before_the_run(sqlite_url, tmp_path: Path, capsys) -> None:
    """Found by a session-44 CLI probe: ``prelabel --report`` into a folder that does not exist ran every image, then
    died with a FileNotFoundError traceback (exit 1) and printed no summary."""
    from app.cli import main
    dark_images(tmp_path / "imgs", 1, seed=3)
    assert main(["prelabel", str(tmp_path / "imgs"), "--db", sqlite_url, "--device", "cpu",
                 "--report", str(tmp_path / "nowhere" / "r.json")]) == 2
    assert "cannot be written there" in capsys.readouterr().err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # refused before anything was opened or run


def test_a_report_path_with_a_tilde_is_the_one_checked_and_written(sqlite_url, tmp_path: Path, monkeypatch) -> None:
    """The session-44 review: the check expanded ``~`` and the write did not, so ``--report '~/r.json'`` ran every image
    and then failed to write, exit 0."""
    from app.cli import main
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    dark_images(tmp_path / "imgs", 1, seed=4)
    assert main(["prelabel", str(tmp_path / "imgs"), "--db", sqlite_url, "--device", "cpu", "--families", "anomaly",
                 "--report", "~/r.json"]) == 0
    assert json.loads((tmp_path / "home" / "r.json").read_text())["jobs"]
