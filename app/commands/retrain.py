"""``python main.py retrain FAMILY``: a new model version from the station's reviewed labels.

Runs in its own process (the GUI starts it with ``--progress-json`` and reads one JSON object per
line from stdout), so a training never blocks the window and a cancel is a SIGTERM: the partial
model and the exported data are removed and nothing is registered. Only a finished, readable
model becomes a version, inactive until someone activates it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from app.cli import CommandError
from app.services.wording import agree, plural
from database.model_versions import json_safe as finite

if TYPE_CHECKING:
    from app.services.retraining import RetrainPlan

CANCELLED_EXIT = 143  # 128 + SIGTERM, as a shell reports a terminated process


class Cancelled(BaseException):
    """SIGTERM arrived: unwind through every ``except Exception`` in the training code."""


class Events:
    """Progress for a person (stderr lines) or for the GUI (JSON lines on the real stdout)."""

    def __init__(self, as_json: bool, out: TextIO) -> None:
        self.as_json, self.out = as_json, out
        self.last_progress = 0.0
        self.first: tuple[float, int] | None = None  # (time, done) when the current task was first seen
        self.task = ""
        self.stage = ("", "")   # the last stage event's (stage, message): what an error stopped

    def emit(self, event: str, **fields: Any) -> None:
        if event == "stage":
            self.stage = (str(fields["stage"]), str(fields.get("message", "")))
        if self.as_json:
            self.out.write(json.dumps(finite({"event": event, **fields}), allow_nan=False) + "\n")
            self.out.flush()
        elif event in ("stage", "error", "cancelled", "done"):
            text = fields.get("message") or fields.get("name") or ""
            print(f"{event}: {text}" if event != "stage" else f"[{fields['stage']}] {text}", file=sys.stderr)

    def progress(self, stage: str, task: str, done: int, total: int) -> None:
        if not self.as_json:  # a person reads the trainers' own progress bars on stderr
            return
        now = time.monotonic()
        if task != self.task or self.first is None or done < self.first[1]:
            self.task, self.first = task, (now, done)
        if done < total and now - self.last_progress < 0.5:
            return
        self.last_progress = now
        t0, d0 = self.first
        eta = (now - t0) / (done - d0) * (total - done) if done > d0 and now > t0 else None
        self.emit("progress", stage=stage, task=task, done=done, total=total,
                  eta_s=None if eta is None else round(eta, 1))


def _family_args(verb: str, family: str, argv: list[str]) -> argparse.Namespace:
    """``VERB FAMILY ARGV`` parsed by the station's own parser: the same options and checks as on
    the command line (``--train-args`` is text a user typed, so it is parsed, never trusted)."""
    from app.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            return build_parser().parse_args([verb, family, *argv])
    except SystemExit as exc:  # a bad --train-args
        reason = err.getvalue().strip().splitlines()[-1:] or [""]
        raise CommandError(f"the {verb} options were refused: {' '.join(argv)} ({reason[0]})") from exc


def _family_cli(family: str) -> Any:
    import importlib

    from inference import families
    return importlib.import_module(families.family(family).train_cli)


def _train(family: str, argv: list[str], command: str) -> None:
    """Train through the family's typed options and its catalogue entry point, in this process."""
    from inference import families

    cli = _family_cli(family)
    args = _family_args("train", family, argv)
    try:
        families.load_entry(families.family(family).train_entry)(cli.train_options(args, command))
    except cli.train_errors() as exc:
        raise CommandError(str(exc).strip("'\"") or f"{type(exc).__name__} while training") from None


def _score(family: str, data: Path, model_dir: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """``evaluate FAMILY`` of one model on the held-out labels, as data; None (and a note) when it cannot be scored."""
    argv = ["--data", str(data), "--model", str(model_dir), "--device", args.device]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    cli = _family_cli(family)
    try:
        report: dict[str, Any] = cli.evaluate_report(_family_args("evaluate", family, argv))
        return report
    except cli.evaluate_errors() as exc:
        print(f"note: {model_dir} could not be scored on the held-out labels: {exc}", file=sys.stderr)
        return None


_TERMINATED = False   # a SIGTERM arrived (the window's Cancel): an error raised from inside a library's native code
# meanwhile (safetensors turned the Cancelled into a ValueError: "the backbone to start from cannot be read") is said
# as the cancel it is (a session-48 probe)


def _said_cancelled(events: "Events") -> int:
    events.emit("cancelled")
    print("retraining cancelled; nothing was registered", file=sys.stderr)
    return CANCELLED_EXIT


# The stages whose work is writing files and rows (making the version's folders, exporting, registering): any OSError
# in them is the disk's or the system's, said in one line; in the others only one about the models folder is. An ENOSPC
# or EIO from a write names no file, and it ended in a traceback (a session-52 audit).
FILE_STAGES = ("", "export", "register")


def _os_error_text(exc: OSError, in_models_folder: bool, registered: str | None, doing: str) -> str:
    """An error of the file system in one line, with the path where the error names one and the reason (an unwritable
    models folder gave a traceback, and the Models dialog "Retraining failed: FileExistsError: [Errno 17] File exists:
    …": a session-51 audit). ``in_models_folder``: the error is about the models folder (``_in_models_folder``);
    ``registered``: the version's name where it was registered before the error (it stands); ``doing``: what the
    error stopped, said where the error is not about the models folder."""
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
    reason = ("a file is there, not a folder" if exc.errno == errno.EEXIST
              else "a part of it is a file, not a folder" if exc.errno == errno.ENOTDIR else exc.strerror or str(exc))
    if registered:
        return f"{registered} was registered, then the retraining stopped: {where}{reason}"
    if in_models_folder:
        return f"the new version cannot be written: {where}{reason}; nothing was registered"
    return f"{doing} failed: {where}{reason}; nothing was registered"


def _in_models_folder(exc: OSError, root: Path) -> bool:
    """Whether the error is about the models folder ``root`` (making the version's folders, saving it there: a path
    at or under it), which ``_os_error_text`` says in one line. Any other (ENOMEM, EMFILE, a file elsewhere) is an
    unexpected error, said with its traceback: every OSError was called the models folder's, an ENOMEM in the domain
    fit reading "the new version cannot be written: …/station-models: Cannot allocate memory" with no traceback (a
    session-51 review)."""
    for name in (exc.filename, exc.filename2):
        if isinstance(name, (str, bytes, os.PathLike)):
            path = Path(os.fsdecode(name)).absolute()
            if path == root or root in path.parents:
                return True
    return False


def _on_sigterm(_signum, _frame) -> None:
    global _TERMINATED
    _TERMINATED = True
    raise Cancelled()


def epochs_unused(epochs: int | None, method: str, plan: RetrainPlan) -> str | None:
    """Why the epochs asked for were not used, where the new version is fitted in one go rather than trained in
    epochs: the classifier's light heads (any ``--method`` but train), and an anomaly model refitted like the model
    ``--like`` names (the last one, as the trainer reads it) where that is one the family refits (``refit_like``: no
    network, fitted anew); a ``--like`` network trains its epochs. None where they are used or none were asked for.
    The done event carries it, so the Models dialog says it beside the result (its Epochs field went unused unsaid,
    the note on stderr only: a session-51 audit)."""
    from inference import families
    from inference.checkpoints import CheckpointError, read_json

    if epochs is None:
        return None
    if method != "train":
        return (f"epochs ({epochs}) not used: the classifier's light heads are fitted in one go, not trained in "
                "epochs; epochs apply where a network is trained (--method train)")
    args = list(plan.train_args)
    at = [i + 1 for i, a in enumerate(args) if a == "--like" and i + 1 < len(args)]
    if plan.family != "anomaly" or not at:
        return None
    like = Path(args[at[-1]])
    try:
        config = read_json(like / "config.json")
    except CheckpointError:   # the trainer refuses it and says why
        return None
    arch = config.get("model")
    if arch not in families.family("anomaly").refit_like:
        return None
    settings = config.get("config")
    if isinstance(settings, dict) and settings.get("pixel_head") == "net":
        # a tile_defect model with the learned pixel net (preset tile_net, tile_net_bank) trains that net for the
        # epochs its recipe fixes: "not trained in epochs" was untrue of it (a session-51 review)
        return (f"epochs ({epochs}) not used: the {arch} model is refitted like {like.name}; the epochs of its pixel "
                "net are fixed by the model's preset")
    return f"epochs ({epochs}) not used: the {arch} model is refitted like {like.name} in one go, not trained in epochs"


def normal_classes(db: Any) -> tuple[str, ...]:
    """The classes the project calls not a defect (Settings ▸ Project; the flags' defaults when its settings cannot be
    read): the only ones the unreviewed pool may teach (ADR 0075)."""
    from app.services.project_settings import load_project_settings
    from inference.normal_classes import DEFAULT_NORMAL_CLASSES
    try:
        return tuple(load_project_settings(db).flags.good_classes)
    except Exception as exc:  # noqa: BLE001 - a broken stored value must not stop a retraining; said
        print(f"note: the project's settings cannot be read ({exc}); the default classes that are not a defect "
              "are used", file=sys.stderr)
        return DEFAULT_NORMAL_CLASSES


def run(args: argparse.Namespace) -> int:
    import shlex

    from app.commands import open_project_or_fail
    from app.commands.retrain_candidates import (
        backbone_dir,
        classifier_method,
        head_version,
        method_start,
        simple_answers_only,
        verdict_text,
    )
    from app.services.retraining import (
        KEEP_MIN_PER_CLASS,
        MIN_PER_CLASS,
        RetrainError,
        check_version_name,
        chosen_by_label_next,
        claim_work,
        comparison,
        comparison_text,
        data_text,
        models_root,
        plan_retraining,
        register_retrained,
        safe_remove_tree,
        sweep_dead_work,
        too_few,
        trainer_scores,
        unlabelled_pool,
        unreviewed_count,
        version_name,
        version_scope,
        work_dir,
    )
    from database import DatabaseError
    from inference import families
    from inference.domain_fit import fit_after_training, images_under
    from inference.training.common import progress_listener
    from inference.training.groups import path_groups

    events = Events(args.progress_json, sys.stdout)
    if args.family == "classifier" and args.min_per_class is not None and not 2 <= args.min_per_class <= 1000:
        raise CommandError(f"--min-per-class must be between 2 and 1000, not {args.min_per_class}")
    now = datetime.now(timezone.utc)
    name = args.name or version_name(args.family, now)
    try:  # before any path is made of it: "a/../../b" put the work folder, removed at the end, outside --out
        check_version_name(name)
    except RetrainError as exc:
        events.emit("error", message=str(exc))
        raise CommandError(str(exc)) from None
    global _TERMINATED
    _TERMINATED = False   # this run's (a command run twice in one process, as the tests do)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        db = open_project_or_fail(args.db)
    except CommandError as exc:
        events.emit("error", message=str(exc))
        raise CommandError(str(exc)) from None
    root = Path(args.out).expanduser().absolute() if args.out else models_root(db.url)
    final, work = root / name, work_dir(root, name)
    made_final = False
    refused: dict[str, Any] | None = None
    started = time.monotonic()

    registered = False

    def discard() -> None:  # only a model folder this run created, never one that was there before, nor a
        if made_final and not registered:  # registered version's (its row stands: the review of session 43)
            shutil.rmtree(final, ignore_errors=True)

    claimed = False
    try:
        root.mkdir(parents=True, exist_ok=True)
        kept = {(v.name, Path(v.checkpoint_path)) for v in db.model_versions.list()}   # any family's, by name or folder
        for gone in sweep_dead_work(root, lambda n: any(n == name or root / n == path for name, path in kept)):
            print(f"note: removed {gone}, left by a retraining that was killed", file=sys.stderr)
        # the model folder is made here, which reserves its name: two retrainings started in the same second took
        # one default name and one work folder, the second's refusal removing the first's export, and neither was
        # registered (a session-48 probe); a default name taken gets a number instead
        for n in range(2, 100):
            if db.model_versions.by_name(args.family, name) is None:
                try:
                    final.mkdir()
                    break
                except FileExistsError:
                    pass
            if args.name:
                if final.exists():
                    raise RetrainError(f"{final} already exists: choose another --name")
                raise RetrainError(f"a {args.family} version named {name!r} is already registered")
            name = f"{version_name(args.family, now)}-{n}"
            final, work = root / name, work_dir(root, name)
        else:
            raise RetrainError(f"no free name for the new {args.family} version in {root}")
        made_final = True
        safe_remove_tree(work)
        claim_work(work)
        claimed = True
        events.emit("stage", stage="export", message=f"exporting the reviewed {args.family} labels")
        scope = version_scope(db, args.family, getattr(args, "version", None))

        def planned(keep_min: int) -> RetrainPlan:
            return plan_retraining(db, args.family, work, final, folder=args.folder, epochs=args.epochs,
                                   threads=args.threads, device=args.device, name=name,
                                   extra_args=shlex.split(args.train_args), from_scratch=args.from_scratch,
                                   progress=lambda d, t: events.progress("export", "export", d, t),
                                   min_per_class=keep_min, scope=scope,
                                   groups=args.groups if families.family(args.family).takes_groups else "auto")
        plan = planned(args.min_per_class or KEEP_MIN_PER_CLASS)
        method = classifier_method(plan, args.method)
        thin = sorted(k for k, v in plan.data.get("classes", {}).items() if v < MIN_PER_CLASS)
        if method == "train" and thin:  # the network's trainer keeps a fifth of each class for validation
            if args.min_per_class is not None:
                raise too_few(f"--method train needs {MIN_PER_CLASS} reviewed images of each class; "
                              f"{', '.join(thin)} {agree(len(thin), 'has', 'have')} fewer "
                              f"(--min-per-class {args.min_per_class}): raise it to {MIN_PER_CLASS} or use a light method",
                              plan.skipped)
            safe_remove_tree(work)  # the network is trained: export again, leaving out the classes below 5
            claim_work(work)
            plan = planned(MIN_PER_CLASS)
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        parent_name = plan.parent.name if plan.parent else "--init"
        if method != "train":
            start_dir = backbone_dir(plan)
            if start_dir is not None and (plan.parent is None or start_dir != Path(plan.parent.checkpoint_path)):
                parent_name = str(start_dir)   # a pretrained backbone named by --train-args "--init DIR"
            network = start_dir is not None or (plan.parent is not None and not plan.fitted_parent)   # as _backbone
            plan = dataclasses.replace(plan, start=method_start(method, parent_name, with_backbone=network),
                                       head_only=args.groups, head_method=method)
            extra = shlex.split(args.train_args)
            ignored = [a for i, a in enumerate(extra) if a != "--init" and (i == 0 or extra[i - 1] != "--init")]
            if ignored:  # --init DIR names the backbone the head sits on: used
                print("note: --train-args (other than --init DIR) apply to --method train; "
                      "the linear heads ignore them", file=sys.stderr)
        unused = epochs_unused(args.epochs, method, plan)
        if unused:
            print(f"note: {unused}", file=sys.stderr)
        start = plan.start
        notes = [*plan.notes, *([unused] if unused else [])]
        said = "".join(f"; {n}" for n in notes)   # the scope of a routed line's version first (ADR 0060)
        events.emit("stage", stage="train", message=f"{start}; {data_text(args.family, plan.data)}{said}",
                    method=method, start=start, data=dict(plan.data), notes=notes, command=plan.command_line())
        listener: Callable[[str, int, int], None] = lambda task, d, t: events.progress("train", task, d, t)
        candidates = None
        refit_on_all: Callable[[], None] | None = None
        if method != "train":
            from inference.training.classifier_head import POOL_SAMPLE

            # their class mix is the feature heads' prior: of the images the version answers for
            pool = unlabelled_pool(db, args.folder, POOL_SAMPLE, within=scope.images)
            folder_mix = args.class_mix in ("acc-folder", "acc-folder-full")
            unreviewed = unreviewed_count(db, args.folder, scope.images) if folder_mix else None
            chosen = chosen_by_label_next(db, args.folder, scope.images) if folder_mix else None
            normal = normal_classes(db)
            with progress_listener(listener), contextlib.redirect_stdout(sys.stderr):
                candidates, refit_on_all = head_version(plan, args.groups, listener, method, pool, unreviewed, chosen,
                                                        temper=args.class_mix == "acc-folder",
                                                        unreviewed_in_fit=args.unreviewed_in_fit, normal=normal)
            plan = dataclasses.replace(plan, start=method_start(method, parent_name, candidates.chosen))
        else:
            with progress_listener(listener), contextlib.redirect_stdout(sys.stderr):
                _train(args.family, list(plan.train_args), plan.command_line())
        if not (plan.model_dir / "config.json").is_file():
            raise CommandError(f"training finished without writing a model in {plan.model_dir}")
        events.emit("stage", stage="compare", message=f"scoring the new version{' and ' + plan.parent.name if plan.comparable and plan.parent else ''} "
                                                      f"on {plural(plan.data.get('held_out', 0), 'held-out reviewed image')}")
        scoring: Callable[[str, int, int], None] = lambda task, d, t: events.progress("compare", task, d, t)
        with progress_listener(scoring), contextlib.redirect_stdout(sys.stderr):
            new_scores = trainer_scores(plan) or (
                _score(args.family, plan.data_dir, plan.model_dir, args) if plan.data.get("held_out") else None)
            parent_scores = _score(args.family, plan.data_dir, Path(plan.parent.checkpoint_path), args) \
                if plan.comparable and plan.parent is not None and new_scores is not None else None
        compared = comparison(plan, new_scores, parent_scores)
        if plan.family == "classifier":
            if candidates is None:
                with progress_listener(scoring), contextlib.redirect_stdout(sys.stderr):
                    candidates = simple_answers_only(plan, args.groups, new_scores, scoring)
            compared["simple_answers"] = candidates.as_dict()
            verdict = verdict_text(candidates)
            events.emit("verdict", message=verdict, wins=candidates.wins, simple_answers=compared["simple_answers"])
            if not candidates.wins and not args.keep_if_worse:
                refused = compared  # the error event carries the figures the refusal rests on
                from app.services.retrain_protocol import refusal_message
                raise RetrainError(refusal_message(verdict))
            print(verdict, file=sys.stderr)
        if refit_on_all is not None and args.refit_all:  # the check is over: the version learns from every reviewed label
            events.emit("stage", stage="refit", message=f"refitting {candidates.chosen if candidates else 'the head'} "
                                                        "on all reviewed labels, held-out ones included")
            with contextlib.redirect_stdout(sys.stderr):
                refit_on_all()
            compared["refitted_on_all"] = True  # the figures are the checked fit's; the version learnt from every label
        events.emit("stage", stage="domain", message="describing the training images (out-of-domain statistics)")
        rule = args.groups if families.family(plan.family).takes_groups else "auto"
        # A version refitted on every reviewed label learnt the held-out share too: its description says so
        # (more images: fewer of its own line's images called out of domain, benchmarks/results/ood-few.md).
        learnt_too = images_under(plan.data_dir / "val") if compared.get("refitted_on_all") and \
            (plan.data_dir / "val").is_dir() else []
        for line in fit_after_training([plan.model_dir], plan.data_dir, device=args.device,
                                       grouping=lambda paths: path_groups(paths, rule=rule), also=learnt_too):
            print(line, file=sys.stderr)
        events.emit("stage", stage="register", message=f"registering {name}", version=name)
        # A cancel from here on comes too late to undo: the row is committed and its files are being copied into
        # the database. It was taken then, the folder removed and "nothing was registered" said, while a challenger
        # with no files stood registered in place of the earlier one (found by a session-43 probe). It waits for
        # the registration, which then stands, and the command says so.
        # The handler stays until the command returns (the caller's is put back then): a cancel during the
        # promotion or the last lines left a registered, maybe promoted, version without its folder (the review).
        late: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _frame: late.append(signum))
        version = register_retrained(db, plan, time.monotonic() - started, compared)
        registered = True
        cancelled_before_promotion = bool(late)
        promoted = ""
        if args.activate and not late:   # recorded as a promotion, as the Models dialog's would be
            from app.services.model_catalog import ModelCatalog
            promoted = ModelCatalog(db).promote(version.id, "retrain --activate").text
            version = db.model_versions.get(version.id) or version
        if late:
            print(f"the cancel came after {name} was registered: it stands"
                  + (", as the challenger (compare it in Project ▸ Models…; it is not made active)"
                     if cancelled_before_promotion or not promoted else f" ({promoted})"), file=sys.stderr)
        events.emit("done", version_id=version.id, name=version.name, family=version.family,
                    path=version.checkpoint_path, metrics=version.metrics, comparison=compared,
                    activated=bool(version.active), **({"promoted": promoted} if promoted else {}),
                    **({"cancel_too_late": True} if late else {}), notes=[unused] if unused else [])
        if not args.progress_json:
            print(comparison_text(compared))
            from app.services.champion import trained_on_note
            trained = trained_on_note(plan.parent, version)
            if trained:
                print(trained)
            print(f"new {args.family} version {version.name!r} in {version.checkpoint_path}"
                  + (f" ({promoted})" if promoted else " (the challenger: compare and promote it in Project ▸ Models… "
                                                       f"or `python main.py models compare {version.id}`)"))
        return 0
    except Cancelled:
        discard()
        return _said_cancelled(events)
    except (RetrainError, DatabaseError, CommandError) as exc:
        discard()
        if _TERMINATED:   # the error came of the cancel (raised inside native code): said as the cancel
            return _said_cancelled(events)
        if events.as_json:  # a person reads it once, from the CommandError below (it was printed twice)
            events.emit("error", message=str(exc), **({"comparison": refused} if refused else {}),
                        **({"not_retrained": True} if isinstance(exc, RetrainError) and not refused
                           else {}))
        raise CommandError(str(exc)) from None
    except BaseException as exc:
        discard()
        if _TERMINATED and isinstance(exc, Exception):
            return _said_cancelled(events)
        stage, doing = events.stage
        if isinstance(exc, OSError):
            in_models = _in_models_folder(exc, root)
            if in_models or stage in FILE_STAGES:
                # the models folder unwritable, a file where it should be, a full disk or EIO making, exporting or
                # registering the version: one line; any other OSError (an ENOMEM in the domain fit) keeps its
                # traceback, as every exception that is no OSError
                message = _os_error_text(exc, in_models, name if registered else None, doing or f"preparing {root}")
                if events.as_json:  # a person reads it once, from the CommandError below
                    events.emit("error", message=message)
                raise CommandError(message) from None
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if claimed:   # only this run's (a refused one removed another run's work folder of the same name)
            safe_remove_tree(work)
        signal.signal(signal.SIGTERM, previous)
        db.close()


