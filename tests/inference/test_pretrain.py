"""Station pretraining (``main.py pretrain``): a loadable backbone, resume, cancel, --init, hostile files."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from inference.checkpoints import load_model
from inference.training.common import load_training_state, progress_listener
from inference.training.pretrain import KIND, STATE_FILE, PretrainCancelled, PretrainOptions, pretrain
from inference.training.pretrain_views import ViewConfig, random_view


def _images(root: Path, n: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / "a" if i % 2 else root / "b" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        img = rng.integers(60, 200, (32, 32)).astype(np.uint8)
        img[:, :: 3 + i % 3] = 240
        cv2.imwrite(str(sub / f"img{i}.png"), img)
    return root


def _opts(folder: Path, out: Path, **kw) -> PretrainOptions:
    base = dict(folder=folder, out=out, preset="test_tiny", epochs=2, batch_size=3, threads=1, device="cpu",
                quiet=True, save_every=1)
    return PretrainOptions(**{**base, **kw})


def test_views_stay_in_range_and_differ():
    x = torch.rand(4, 1, 32, 32)
    gen = torch.Generator().manual_seed(0)
    a, b = random_view(x, ViewConfig(blur_prob=1.0), gen), random_view(x, ViewConfig(), gen)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)


def test_cli_writes_a_loadable_backbone_and_skips_hostile_files(tmp_path, capsys, caplog):
    folder = _images(tmp_path / "imgs")
    (folder / "a" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "a" / "noise.jpg").write_bytes(os.urandom(300))
    (folder / "a" / "empty.png").write_bytes(b"")
    (folder / "a" / "dir.png").mkdir()
    big = np.random.default_rng(1).integers(0, 255, (200, 200)).astype(np.uint8)
    cv2.imwrite(str(folder / "a" / "big.png"), big)  # about 40 kB, over the 0.02 MB limit below
    (folder / ".cache").mkdir()
    (folder / ".cache" / "hidden.png").write_bytes(b"junk")  # hidden folders are not looked into
    out = tmp_path / "backbone"
    assert main(["pretrain", "--folder", str(folder), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "3", "--threads", "1", "--device", "cpu", "--max-file-mb", "0.02",
                 "--progress-json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(e["event"] == "progress" and e["task"] == "pretrain backbone" and e["done"] == e["total"] for e in lines)
    assert lines[-1]["event"] == "done" and lines[-1]["path"] == str(out)
    loaded = load_model(out, family="classifier")
    assert loaded.card["kind"] == KIND and "classes" not in loaded.card
    assert loaded.card["data"]["images"] == 6
    skipped = "\n".join(loaded.card["data"]["skipped"])
    for name in ("damaged.png", "noise.jpg", "empty.png", "dir.png", "big.png"):
        assert name in skipped and name in caplog.text  # each one named, with its reason
    assert "too large" in skipped and "hidden.png" not in skipped
    assert "InfoNCE" in loaded.card["pretraining"]["objective"]


def test_too_few_readable_images_is_one_clear_line(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"not an image")
    assert main(["pretrain", "--folder", str(folder), "--out", str(tmp_path / "o"), "--preset", "test_tiny",
                 "--device", "cpu", "--quiet"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_cancel_keeps_state_and_resume_matches_an_uninterrupted_run(tmp_path):
    folder = _images(tmp_path / "imgs")
    whole = pretrain(_opts(folder, tmp_path / "whole"))  # 2 epochs x 2 steps
    out = tmp_path / "cut"
    steps: list[int] = []
    with progress_listener(lambda task, done, total: steps.append(done) if task == "pretrain backbone" else None):
        with pytest.raises(PretrainCancelled, match="--resume"):
            pretrain(_opts(folder, out), should_stop=lambda: bool(steps) and steps[-1] >= 3)  # stop after step 3
    assert not (out / "model.safetensors").exists() and not (out / "card.json").exists()
    assert not list(out.rglob("*.tmp"))
    state = load_training_state(out / "training" / STATE_FILE)
    assert state["step"] == 3 and len(json.loads(state["losses"])) == 3
    resumed = pretrain(_opts(folder, out, resume=True, command="again"))
    a, b = load_model(whole), load_model(resumed)
    assert b.card["commands"][-1] == "again" and len(b.card["commands"]) == 2
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)  # the same batches and views after the resume
    with pytest.raises(ValueError, match="other images|configuration"):
        pretrain(_opts(folder, out, resume=True, epochs=3))


def test_sigterm_stops_the_command_between_steps(tmp_path, capsys):
    folder = _images(tmp_path / "imgs")
    out = tmp_path / "backbone"

    def kill_after_first_step(task: str, done: int, total: int) -> None:
        if task == "pretrain backbone" and done == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with progress_listener(kill_after_first_step):
        code = main(["pretrain", "--folder", str(folder), "--out", str(out), "--preset", "test_tiny", "--epochs", "2",
                     "--batch-size", "3", "--threads", "1", "--device", "cpu", "--quiet"])
    assert code == 143 and signal.getsignal(signal.SIGTERM) == previous
    assert "--resume" in capsys.readouterr().err
    assert load_training_state(out / "training" / STATE_FILE)["step"] == 1
    assert not (out / "model.safetensors").exists()
    assert main(["pretrain", "--folder", str(folder), "--out", str(out), "--preset", "test_tiny", "--epochs", "2",
                 "--batch-size", "3", "--threads", "1", "--device", "cpu", "--quiet", "--resume"]) == 0
    assert len(load_model(out).card["commands"]) == 2


def test_train_init_from_the_backbone_takes_all_but_the_class_layer(tmp_path, capsys):
    backbone = pretrain(_opts(_images(tmp_path / "imgs"), tmp_path / "backbone", epochs=1))
    data = tmp_path / "labelled"
    rng = np.random.default_rng(3)
    for c in ("dots", "plain", "stripes"):
        for i in range(4):
            (data / c).mkdir(parents=True, exist_ok=True)
            img = rng.integers(90, 110, (32, 32)).astype(np.uint8)
            img[:, ::4] = 220 if c == "stripes" else img[:, ::4]
            img[::6, ::6] = 20 if c == "dots" else img[::6, ::6]
            cv2.imwrite(str(data / c / f"{c}{i}.png"), img)
    base = ["train", "classifier", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--threads", "1",
            "--quiet", "--device", "cpu", "--preset", "test_tiny", "--init", str(backbone)]
    assert main(base + ["--out", str(tmp_path / "kept")]) == 2
    err = capsys.readouterr().err
    assert "pretrained backbone" in err and "--init-head new" in err
    assert main(base + ["--out", str(tmp_path / "model"), "--init-head", "new", "--lr", "1e-12", "--seed", "5"]) == 0
    a, b = load_model(backbone), load_model(tmp_path / "model")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert b.card["classes"] == ["dots", "plain", "stripes"]
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa if not k.startswith("head.3."))
    assert b.card["init_model"]["path"] == str(backbone) and b.card["init_model"]["kind"] == KIND
    assert "InfoNCE" in b.card["init_model"]["pretraining"]["objective"] and b.card["init_model"]["data"]["images"] == 6


def test_the_command_says_where_the_backbone_went_once(tmp_path, capsys):
    """A session-49 audit: ``pretrain`` said "done: pretrained classifier in X" and then "pretrained classifier written
    to X"; one line says it now, the next how to use it."""
    out = tmp_path / "backbone"
    assert main(["pretrain", "--folder", str(_images(tmp_path / "imgs")), "--out", str(out), "--preset", "test_tiny",
                 "--epochs", "1", "--batch-size", "3", "--threads", "1", "--device", "cpu", "--quiet"]) == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert text.count(str(out)) == 2 and "done:" not in text  # "written to OUT", "use it: ... --init OUT"
    assert f"pretrained classifier written to {out}" in said.out


def test_the_use_it_line_trains_from_the_backbone_as_printed(tmp_path, capsys):
    """A session-51 audit: the "use it:" line of a test_tiny pretraining named no preset, and `train classifier`
    run as printed refused the backbone as "another architecture than this run's preset/ablation"."""
    import shlex

    out = tmp_path / "backbone"
    assert main(["pretrain", "--folder", str(_images(tmp_path / "imgs")), "--out", str(out), "--preset", "test_tiny",
                 "--img-size", "48", "--input-norm", "per_image", "--epochs", "1", "--batch-size", "3",
                 "--threads", "1", "--device", "cpu", "--quiet"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("use it: python main.py "))
    data = tmp_path / "data"
    for c in ("dots", "plain"):
        _images(data / c, n=4, seed=len(c))
    printed = [str(data) if a == "DATA" else str(tmp_path / "model") if a == "MODEL" else a
               for a in shlex.split(line.removeprefix("use it: python main.py "))]
    assert main(printed + ["--epochs", "1", "--batch-size", "4", "--threads", "1", "--device", "cpu", "--quiet",
                           "--cv-folds", "0"]) == 0, capsys.readouterr().err
    card = load_model(tmp_path / "model").card
    assert card["init_model"]["path"] == str(out) and card["preset"] == "test_tiny"


def test_folder_may_be_an_indexed_folder_of_the_station(tmp_path, capsys):
    """--folder NAME that is no directory: the images the station indexed in that folder, and only those."""
    from database import FileEntry, open_database

    root = _images(tmp_path / "line3")
    cv2.imwrite(str(root / "a" / "not_indexed.png"), np.full((32, 32), 128, np.uint8))
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_database(url)
    folder = db.folders.add(str(root))
    indexed = sorted(str(p.relative_to(root)) for p in root.rglob("img*.png"))
    db.images.sync(folder.id, [FileEntry(rel, (root / rel).stat().st_size, 0, width=32, height=32) for rel in indexed])
    db.close()
    out = tmp_path / "backbone"
    args = ["--db", url, "pretrain", "--out", str(out), "--preset", "test_tiny", "--epochs", "1", "--batch-size", "3",
            "--threads", "1", "--device", "cpu", "--quiet"]
    assert main(args + ["--folder", "line3"]) == 0
    card = load_model(out).card
    assert card["data"]["images"] == len(indexed) == 6 and card["data"]["root"] == str(root)
    assert "indexed" in card["data"]["source"]
    capsys.readouterr()
    assert main(args + ["--folder", "no-such-line"]) == 2
    assert "no indexed folder 'no-such-line'" in capsys.readouterr().err


def test_label_folders_are_not_pretrained_on(tmp_path):
    """A session-46 probe: a segmentation tree of 12 frames and their 12 masks gave 24 "frames" (the docs: labels are
    ignored); an MVTec category's ground_truth/ masks likewise."""
    from inference.training.pretrain import find_images

    for rel in ("images/f1.png", "masks/f1.png", "tile/train/good/a.png", "tile/ground_truth/crack/b_mask.png",
                ".hidden/c.png", "line/masks/wafer.png", "exp/masks/images/e.png", "exp/masks/masks/e.png",
                "seg/frames/f2.png", "seg/masks/f2.png"):  # masks beside frames/ were read (a session-47 audit)
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    # a folder of real frames named "masks" (no images/ beside it), and the station's masks export (masks/images/
    # beside masks/masks/), are read (the review of the first version of this rule)
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == [
        "exp/masks/images/e.png", "images/f1.png", "line/masks/wafer.png", "seg/frames/f2.png", "tile/train/good/a.png"]


def test_paths_a_command_cannot_write_are_one_line(tmp_path, capsys):
    """A session-46 probe: a trainer's --out that is a file, an evaluation's --json that is a folder, ended in a
    traceback from deep inside (NotADirectoryError, FileExistsError, IsADirectoryError)."""
    from app.cli import main

    (tmp_path / "out").write_text("a file")
    for argv in (["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "out")],
                 ["train", "anomaly", "--data", str(tmp_path), "--out", str(tmp_path / "out")],
                 ["pretrain", "--family", "classifier", "--folder", str(tmp_path), "--out", str(tmp_path / "out")]):
        assert main(argv) == 2
        assert "a file is there" in capsys.readouterr().err
    assert main(["evaluate", "classifier", "--data", str(tmp_path), "--model", str(tmp_path),
                 "--json", str(tmp_path)]) == 2
    assert "a folder is there" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", os.urandom(300), b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94."
                                     b"\x8c\x01a\x94\x8c\x01b\x94s."])
def test_a_damaged_resume_state_is_one_line_never_unpickled(tmp_path, capsys, content):
    """A session-47 audit: random bytes, an empty file or a plain pickle as the resume state ended in a traceback
    (IndexError, EOFError, torch's invitation to load it with weights_only=False), and the line was printed twice."""
    folder = _images(tmp_path / "imgs")
    out = tmp_path / "o"
    (out / "training").mkdir(parents=True)
    (out / "training" / STATE_FILE).write_bytes(content)
    assert main(["pretrain", "--folder", str(folder), "--out", str(out), "--preset", "test_tiny", "--device", "cpu",
                 "--epochs", "1", "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a resume state this station wrote" in err and err.count("not a resume state") == 1
    with pytest.raises(ValueError, match="drop --resume"):
        load_training_state(out / "training" / STATE_FILE)
