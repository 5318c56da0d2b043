"""``python main.py pretrain --folder DIR [--family classifier|segmenter]``: a network pretrained on unlabelled images.

A cancel (SIGTERM, as the GUI and job runners send, or Ctrl+C) is honoured between training
steps: the resume state under OUT/training/ is saved, no model directory is written, and the
exit status is 143 (SIGTERM) or 130 (Ctrl+C). ``--resume`` continues from the saved step.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from types import FrameType

from app.cli import CommandError
from inference import families
from inference.shell_words import shell_join

INTERRUPTED_EXIT = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folder", required=True, type=Path,
                   help="folder of images, searched recursively; labels and class folders are ignored. Not a folder "
                        "on disk: an indexed folder of the station's database (id, path or name), its indexed images")
    p.add_argument("--out", type=Path, default=None,
                   help="model directory to write (default: FOLDER-pretrained beside the folder); "
                        "resume state under OUT/training/")
    p.add_argument("--family", default="classifier", choices=families.pretrainable(),
                   help="whose network to pretrain: the classifier's MemoryMamba backbone (contrastive views) or the "
                        "segmenter's MiM-ISTD (masked-patch prediction) (default: classifier)")
    p.add_argument("--preset", default="cpu",
                   choices=sorted({p for f in families.pretrainable() for p in families.family(f).presets}),
                   help="model size; must match the later `train --preset` (default: cpu)")
    p.add_argument("--img-size", type=int, default=None,
                   help="input size (classifier default: the preset's); segmenter: the side frames are resized to (256)")
    p.add_argument("--input-norm", default=None, choices=("fixed", "per_image"),
                   help="classifier: input normalisation; must match the later training's (default: the preset's)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: classifier 32, each bringing two views; segmenter 8)")
    p.add_argument("--crop", type=int, default=128, help="segmenter: side of the crops cut from each frame (default 128)")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="segmenter: share of a crop's patches hidden (default 0.5)")
    p.add_argument("--mask-patch", type=int, default=8, help="segmenter: side of a hidden square in pixels (default 8)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.2, help="classifier: InfoNCE temperature (default 0.2)")
    p.add_argument("--max-images", type=int, default=20_000, help="use at most this many images (default 20000)")
    p.add_argument("--max-file-mb", type=float, default=64.0, help="skip image files larger than this (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and the scan kernel)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/training/pretrain_state.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress-json", action="store_true",
                   help="progress as JSON lines on stdout (as retrain prints them); messages go to stderr")


def indexed_images(db_url: str, folder: str) -> tuple[Path, tuple[Path, ...]]:
    """The root and image files of an indexed folder of the station's database (id, path or name)."""
    from app.commands import open_database_or_fail
    from app.services.export_source import FolderNotFound, resolve_folder

    try:   # (a database another station uses is not upgraded under it: ``open_database_or_fail``)
        db = open_database_or_fail(db_url, starts=True, say_new=False)
    except CommandError as exc:
        raise CommandError(f"--folder {folder}: not a folder on disk, and the station's database cannot be opened ({exc})") from None
    try:
        found = resolve_folder(db, folder)
        if found is None:
            raise FolderNotFound("no folder given")
        root = Path(found.root_path)
        return root, tuple(root / rel for rel in sorted(db.images.known_files(found.id)))
    except FolderNotFound as exc:
        raise CommandError(f"--folder {folder}: not a folder on disk, and {exc}") from None
    finally:
        db.close()


def _command_line(argv: list[str]) -> str:
    return "python main.py " + shell_join(argv)


def _use_flags(args: argparse.Namespace) -> list[str]:
    """The flags ``train`` needs to start from the pretrained network: its architecture (the preset; the classifier's
    input size and normalisation where given), which ``--init`` refuses to differ from, and the classifier's new class
    layer. A session-51 audit copied the "use it:" line of a test_tiny run, which named no preset, and ``train``
    refused it as "another architecture than this run's preset/ablation"."""
    flags = ["--preset", args.preset]
    if args.family == "classifier":  # the segmenter's train reads no input size: it crops its frames (--crop)
        flags = ["--init-head", "new", *flags]
        for flag, value in (("--img-size", args.img_size), ("--input-norm", args.input_norm)):
            if value is not None:
                flags += [flag, str(value)]
    return flags


def run(args: argparse.Namespace) -> int:
    from app.commands.retrain import CANCELLED_EXIT, Events  # its progress lines, as the GUI reads them
    from inference.training.common import progress_listener
    from inference.training.pretrain import PretrainCancelled, PretrainOptions, pretrain

    folder = Path(args.folder).expanduser()
    paths, source = None, ""
    if not folder.is_dir():
        folder, paths = indexed_images(args.db, str(args.folder))
        source = f"the {len(paths)} images indexed in the station's folder {args.folder}"
    out = Path(args.out).expanduser() if args.out else folder.absolute().parent / f"{folder.absolute().name}-pretrained"
    events = Events(args.progress_json, sys.stdout)
    stop: dict[str, int] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.setdefault("signal", signum)  # honoured between steps: nothing is left half-written

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    opts = PretrainOptions(
        folder=folder, out=out, family=args.family, preset=args.preset, img_size=args.img_size,
        input_norm=args.input_norm, epochs=args.epochs, batch_size=args.batch_size or families.family(args.family).pretrain_batch,
        lr=args.lr, temperature=args.temperature, crop=args.crop, mask_ratio=args.mask_ratio, mask_patch=args.mask_patch, max_images=args.max_images, max_file_mb=args.max_file_mb, seed=args.seed,
        device=args.device, threads=args.threads, resume=args.resume, quiet=args.quiet or args.progress_json,
        command=_command_line(sys.argv[1:]), paths=paths, source=source,
    )
    try:
        events.emit("stage", stage="pretrain", message=f"pretraining the {args.family} network on {folder}")
        with progress_listener(lambda task, d, t: events.progress("pretrain", task, d, t)), \
                contextlib.redirect_stdout(sys.stderr if args.progress_json else sys.stdout):
            model_dir = pretrain(opts, should_stop=lambda: "signal" in stop)
    except PretrainCancelled as exc:
        events.emit("cancelled", message=str(exc))
        print(str(exc), file=sys.stderr)
        return INTERRUPTED_EXIT if stop.get("signal") == signal.SIGINT else CANCELLED_EXIT
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        if events.as_json:  # a person reads it once, from the CommandError (it was printed twice)
            events.emit("error", message=str(exc))
        raise CommandError(str(exc)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if args.progress_json:
        events.emit("done", path=str(model_dir), message=f"pretrained {args.family} in {model_dir}")
    else:  # one line says where it went ("done: pretrained … in X" said it too, a session-49 audit), then how to use it
        print(f"pretrained {args.family} written to {model_dir}\n"
              f"use it: python main.py train {args.family} --data DATA --out MODEL --init {model_dir} "
              f"{shell_join(_use_flags(args))}")
    return 0
