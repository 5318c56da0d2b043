"""Command line: ``python main.py [FOLDER]`` opens the GUI; subcommands run headless.

Heavy imports (torch, Qt, SQLAlchemy) happen inside the handlers so ``--help`` and
``--version`` answer at once and a missing optional piece only breaks the command that needs it.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Callable, Sequence

from app import __version__
from app.paths import default_database_url
from inference import families
from inference.threads_option import threads_arg

FAMILIES = families.NAMES
FAMILY_TITLES = families.table("title")
COMMANDS = ("gui", "prelabel", "train", "evaluate", "retrain", "export", "import", "worker", "db", "audit", "models",
            "domain", "pretrain", "classes", "routing")
# Each family's train/evaluate CLI lives beside its training code; these modules import no
# torch at module level (``add_*_arguments`` must stay cheap).
FAMILY_CLI = families.table("train_cli")

log = logging.getLogger("station")


class CommandError(Exception):
    """A failure to report as one clear line (exit status 2), not a traceback."""


def _common(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # SUPPRESS on subcommands so `main.py --db URL prelabel X` keeps the top-level value.
    # The example keeps the password out (a session-51 audit: it showed user:pass@, while README and docs/database.md
    # say a command line is visible to every local user through ps).
    parser.add_argument("--db", metavar="URL", default=default,
                        help="database URL (default: SQLite in the user data folder; "
                             "postgresql+psycopg://user@host/db for a shared server, the password in ~/.pgpass or "
                             "PGPASSWORD, never in the URL: ps shows a command line)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages")


def _handler(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), func)(args) or 0)

    return run


def _then_fit_domain(train: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A family's train command, then its model's domain statistics (``app.commands.domain``);
    the family's own function stays reachable as ``__wrapped__``."""
    @functools.wraps(train)
    def run(args: argparse.Namespace) -> int:
        code = int(train(args) or 0)
        if code == 0:   # (without a fit, an earlier training's statistics in the folder would describe other data)
            importlib.import_module("app.commands.domain").after_train(
                args, fit=not getattr(args, "no_domain_fit", False))
        return code

    return run


def _model_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto",
                   help="torch/numba threads for the models (default auto: before each batch, as many as "
                        "the machine's other work leaves idle, at least 1; on a busy machine the models' "
                        "small operations lose far more to thread barriers than they gain; a batch of images runs in one "
                        "lane more than that, lanes having no barrier; ADR 0025, 0040, 0041)")


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="main.py",
        description="Inspection review station. With no command, opens the GUI on FOLDER "
                    "(or on the bundled demo project when no folder is given).",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(top, default=None)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the review station (the default command)")
    p.add_argument("folder", nargs="?", help="image folder to open (default: the bundled demo project)")
    _common(p)
    p.set_defaults(func=_handler("app.commands.gui", "run"))

    p = sub.add_parser("prelabel", help="pre-label a folder with the active models (headless)")
    p.add_argument("folder")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help="comma-separated families to run (default: all)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=8)
    _model_threads(p)
    p.add_argument("--report", metavar="FILE", help="write a JSON report here")
    _common(p)
    p.set_defaults(func=_handler("app.commands.prelabel", "run"))

    p = sub.add_parser("worker", help="run a standing worker that claims jobs from the database")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--once", action="store_true", help="exit when no job is left")
    p.add_argument("--batch-size", type=int, default=8, help="images claimed and run together")
    _model_threads(p)
    p.add_argument("--stale-after", type=float, default=60.0, metavar="SECONDS",
                   help="requeue the work of workers silent this long (default 60)")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="lower this worker's CPU priority by N (0-19; POSIX only) before any thread starts, so a "
                        "station's window and the machine's other programs come first")
    p.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                   help="stop (giving claimed work back) once process PID, the station that started "
                        "this worker, is gone")
    _common(p)
    p.set_defaults(func=_handler("app.commands.worker", "run"))

    p = sub.add_parser("export", help="export reviewed labels as a dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--folder", help="only images of this indexed folder")
    p.add_argument("--format", default="all",
                   help="imagefolder, masks, coco, mvtec, yolo, csv, or 'all' (all but yolo; comma-separated)")
    p.add_argument("--split", default=None, help="train/val/test fractions, e.g. 0.7,0.2,0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the hashed split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous export in --out")
    _common(p)
    p.set_defaults(func=_handler("app.commands.export", "run"))

    p = sub.add_parser("audit", help="write every label decision (who, when, part, model, change) as CSV")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the CSV file to write")
    p.add_argument("--folder", help="only decisions on images of this indexed folder (id, path or name; id:N for an id only)")
    _common(p)
    p.set_defaults(func=_handler("app.commands.audit", "run"))

    p = sub.add_parser("import", help="import existing labels (a dataset folder) as label revisions")
    p.add_argument("source", metavar="FOLDER", help="the dataset (or an export holding several formats)")
    p.add_argument("--format", default="auto",
                   help="the export's format names, or labelme (checked by the import; see docs/import.md); "
                        "auto (the default): the most telling one the dataset's layout holds")
    p.add_argument("--folder", help="match only images of this indexed folder (id, path or name; id:N for an id only)")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument("--overwrite-newer", action="store_true",
                   help="also replace labels saved here after the imported ones were made")
    p.add_argument("--map", action="append", metavar="OLD=NEW", help="rename a dataset class (repeatable)")
    p.add_argument("--author", help="author of the imported revisions (default: your user name)")
    _common(p)
    p.set_defaults(func=_handler("app.commands.import_labels", "run"))

    for verb in ("train", "evaluate"):
        p = sub.add_parser(verb, help=f"{verb} a model family ({', '.join(FAMILIES)})")
        fam = p.add_subparsers(dest="family", metavar="FAMILY", required=True)
        for family in FAMILIES:
            fp = fam.add_parser(family, help=f"{verb} {FAMILY_TITLES[family]}")
            _common(fp)
            mod = importlib.import_module(FAMILY_CLI[family])  # argument definitions only: no torch
            getattr(mod, f"add_{verb}_arguments")(fp)
            run = getattr(mod, f"run_{verb}")
            if verb == "train":
                fp.add_argument("--no-domain-fit", action="store_true",
                                help="do not describe the training images for out-of-domain flags afterwards")
                run = _then_fit_domain(run)
            fp.set_defaults(func=run)

    p = sub.add_parser("retrain", help="train a new model version from the reviewed labels in the database")
    p.add_argument("family", choices=FAMILIES)
    p.add_argument("--folder", help="only the reviewed images of this indexed folder (id, path or name; id:N for an id only)")
    p.add_argument("--version", metavar="NAME",
                   help="retrain this version (one a routing rule names, or the active one): it is the start point "
                        "and the parent, and only the images it answers for are learnt from (default: the active "
                        "version; where rules name versions of the family, the images they leave to it)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default, by how the new version starts: " + "; ".join(
                       f"{f.name} " + ", ".join(f"{mode} {n}" for mode, n in f.auto_epochs.items())
                       for f in families.families()) + "; more steps for a small classifier set)")
    p.add_argument("--name", help="the new version's name (default: FAMILY-retrained-DATE-TIME)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the new model (default: beside the SQLite file, else the user data folder)")
    p.add_argument("--activate", action="store_true",
                   help="promote the new version when it is done (the active one; a version routing rules name: "
                        "those rules name the new one instead)")
    p.add_argument("--from-scratch", action="store_true",
                   help="do not start from the active version's weights (it is still the parent and compared)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the training")
    p.add_argument("--train-args", default="", metavar="ARGS",
                   help="extra options for `train FAMILY`, quoted as one string; they override the plan's")
    p.add_argument("--method", default="auto", choices=("auto", "head", "texture", "defect", "bank", "train"),
                   help="classifier: 'head' fits a linear head on the active version's frozen backbone, 'texture' a "
                        "linear layer on texture features, 'defect' one on small-defect statistics at the image's "
                        "own aspect, 'bank' one on LBP / Gabor / co-occurrence descriptors (alone or beside the "
                        "defect statistics; no network for any of these), each with and without flipped copies of "
                        "the labelled images, 'train' trains the network (transfer / fine-tune / scratch); auto: "
                        "with an active version, the best of head, texture, defect and bank by group "
                        "cross-validation, else train")
    p.add_argument("--groups", default="auto", choices=("auto", "folder", "prefix", "none"),
                   help="classifier and segmenter: what keeps images of one capture session together in the "
                        "held-out part (and the classifier's cross-validation): the image's sub-folder, its file-name "
                        "prefix up to the first _ (exp1_num_3.png -> exp1), none; auto tries folder, then prefix")
    p.add_argument("--keep-if-worse", action="store_true",
                   help="classifier: register the new version even when it loses to the best simple answer")
    p.add_argument("--refit-all", action=argparse.BooleanOptionalAction, default=True,
                   help="classifier, light methods: after the held-out check, register the chosen head refitted on "
                        "all reviewed labels, held-out ones included (the card keeps the check's figures); the "
                        "default since benchmarks/results/refit.md, --no-refit-all registers the checked head")
    p.add_argument("--class-mix", default="acc-folder", choices=("acc-folder", "acc-folder-full", "pool"),
                   help="classifier, feature heads: the prior given to the head: 'acc-folder' (default, ADR 0045), "
                        "the whole folder's class mix, its reviewed labels plus the unreviewed rest by adjusted "
                        "classify-and-count, which does not read the errors of labels saved on 'label next' "
                        "proposals as the folder's (ADR 0049) and is tempered towards equal classes as far as "
                        "'label next' chose the labels (benchmarks/results/temper.md); 'acc-folder-full', the same "
                        "mix untempered; 'pool', the unreviewed images' mix as the head predicts a sample of them "
                        "(ADR 0043)")
    p.add_argument("--unreviewed-in-fit", action=argparse.BooleanOptionalAction, default=True,
                   help="classifier, feature heads with the folder's class mix: the unreviewed images read for the "
                        "mix also teach the class most of them are (a free surface), as far as 'label next' did not "
                        "choose the labels (benchmarks/results/pu.md); --no-unreviewed-in-fit fits on the labels only")
    p.add_argument("--min-per-class", type=int, default=None, metavar="N",
                   help="classifier: a class with fewer reviewed images is left out (default 2 for the light heads, "
                        "benchmarks/results/thin.md; 5 when the network is trained, which needs 5); two classes need "
                        "5 either way")
    p.add_argument("--progress-json", action="store_true",
                   help="progress as JSON lines on stdout (the GUI reads them); messages go to stderr")
    _common(p)
    p.set_defaults(func=_handler("app.commands.retrain", "run"))

    p = sub.add_parser("models", help="model versions: list, compare a challenger, promote, roll back")
    _models_arguments(p)

    p = sub.add_parser("domain", help="what a model was trained on: its out-of-domain statistics")
    dsub = p.add_subparsers(dest="domain_command", metavar="ACTION", required=True)
    fit = dsub.add_parser("fit", help="describe a model directory's training images (domain.safetensors + "
                                      "domain.json), so its predictions get an in-domain score")
    fit.add_argument("--model", required=True, metavar="DIR", help="the model directory")
    fit.add_argument("--data", required=True, metavar="FOLDER", help="its training images (searched recursively)")
    fit.add_argument("--list", metavar="FILE", help="only the images whose stem or relative path is a line of FILE "
                                                   "(a split file such as train.txt)")
    fit.add_argument("--quantile", type=float, default=None,
                     help="threshold: this quantile of the training images' out-of-fold distances (default: the "
                          "smallest of 0.99, 0.995, 0.998, 1 whose group cross-validated own-image rate is at "
                          "most 1 %%; ADR 0036)")
    fit.add_argument("--group-by", default="auto", metavar="RULE",
                     help="what keeps images of one capture session or scene in one fold of the threshold's "
                          "cross-validation: folder, prefix (file name up to the first _), scene (frames whose "
                          "backgrounds look alike), regex:PATTERN, none; auto (default) tries folder, prefix, "
                          "then scene")
    fit.add_argument("--parts", default=None, metavar="LIST",
                     help="what describes the images, comma-separated: descriptor (image descriptor, Gaussian), "
                          "descriptor_range (its per-feature range), symmetry (how the frame is arranged: turned "
                          "and mirrored, ADR 0067), embedding (the backbone's; a forward pass per image). Default: "
                          "the model's family's (descriptor,descriptor_range, ADR 0028; see ADR 0067)")
    fit.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    fit.add_argument("--seed", type=int, default=0)
    _common(fit)
    fit.set_defaults(func=_handler("app.commands.domain", "fit"))
    p = sub.add_parser("pretrain", help="pretrain a family's backbone on a folder's unlabelled images (self-supervised)")
    importlib.import_module("app.commands.pretrain").add_arguments(p)  # argument definitions only: no torch
    _common(p)
    p.set_defaults(func=_handler("app.commands.pretrain", "run"))

    p = sub.add_parser("classes", help="the project's classes (what inspectors label with): list, add, remove, set")
    csub = p.add_subparsers(dest="classes_command", metavar="ACTION", required=True)
    for verb, helptext in (("list", "the classes in hotkey order, where the list comes from, labels per class"),
                           ("add", "append classes (the first change copies the active model's list first)"),
                           ("remove", "take classes off the list (labels keep them)"),
                           ("set", "replace the list, in this order (none: back to the active model's classes)")):
        q = csub.add_parser(verb, help=helptext)
        if verb != "list":
            q.add_argument("names", nargs="+" if verb in ("add", "remove") else "*", metavar="NAME")
        _common(q)
    p.set_defaults(func=_handler("app.commands.classes", "run"))

    p = sub.add_parser("routing", help="the project's model routing: show it, or propose rules from a folder's results")
    rsub = p.add_subparsers(dest="routing_command", metavar="ACTION", required=True)
    q = rsub.add_parser("show", help="the rules in force (first match wins)")
    q.add_argument("--json", action="store_true", help="print them as the JSON `routing set` reads")
    _common(q)
    q = rsub.add_parser("propose", help="a rule per subfolder of a pre-labelled folder, from its in-domain scores")
    q.add_argument("folder", help="an indexed (pre-labelled) folder: its path, name or id")
    q.add_argument("--save", action="store_true", help="store the rules with the proposal merged in")
    q.add_argument("--remove-unrouted", action="store_true",
                   help="with --save: remove the folder's answers of models the rules no longer run on its images")
    _common(q)
    q = rsub.add_parser("set", help="replace the rules with those of a JSON file ({\"rules\": [{\"pattern\", "
                                    "\"families\", \"versions\"}]}): what counts for each image is re-marked")
    q.add_argument("file", help="the rules, as `routing show --json` prints them")
    _common(q)
    p.set_defaults(func=_handler("app.commands.routing", "run"))

    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="migrate the database to this version's schema (refused while other "
                                          "stations or workers use it, unless --force)")
    up.add_argument("--force", action="store_true",
                    help="upgrade even while other stations or workers use the database (those running an older "
                         "version must then be updated)")
    _common(up)
    up.set_defaults(func=_handler("app.commands.db", "upgrade"))
    cur = dbsub.add_parser("current", help="print the database's schema revision")
    _common(cur)
    cur.set_defaults(func=_handler("app.commands.db", "current"))
    sw = dbsub.add_parser("sweep-maps", help="remove the anomaly map files no answer refers to any more (a file "
                                             "whose content changed leaves its old maps behind)")
    sw.add_argument("--older-than-days", type=float, default=1.0,
                    help="only maps untouched this long (a worker writes a map before its answer lands; default 1)")
    sw.add_argument("--dry-run", action="store_true", help="count them, remove nothing")
    _common(sw)
    sw.set_defaults(func=_handler("app.commands.db", "sweep_maps"))
    return top


def _models_arguments(p: argparse.ArgumentParser) -> None:
    """``models list|compare ID|promote ID|rollback FAMILY`` (app/commands/models.py)."""
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every model version: family, id, active or challenger, name")
    _common(ls)
    cmp = sub.add_parser("compare", help="a challenger against its family's active version: held-out figures and "
                                         "the images where they disagree")
    cmp.add_argument("version", type=int, metavar="ID", help="the challenger's version id (see `models list`)")
    cmp.add_argument("--run", action="store_true",
                     help="run the missing predictions in this process first (otherwise they are queued for a worker)")
    cmp.add_argument("--limit", type=int, default=None,
                     help="images compared (default 200: the most recently reviewed, then the newest)")
    cmp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="for --run")
    cmp.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    _common(cmp)
    for verb, helptext in (("promote", "promote a version (the challenger) over its champion: its family's active one, or, where "
                                        "routing rules name the version it was retrained from, in those rules"),
                           ("rollback", "make the version the active one replaced active again")):
        q = sub.add_parser(verb, help=helptext)
        q.add_argument("version" if verb == "promote" else "family", **(
            {"type": int, "metavar": "ID"} if verb == "promote" else {"choices": FAMILIES}))
        q.add_argument("--author", help="recorded as who did it (default: your login name)")
        q.add_argument("--note", help="why, recorded in the audit trail")
        _common(q)
    p.set_defaults(func=_handler("app.commands.models", "run"))


def _normalise_argv(argv: list[str]) -> list[str]:
    """``main.py FOLDER`` and ``main.py --db URL`` mean the gui command."""
    if any(a in ("-h", "--help", "--version") for a in argv[:1]):
        return argv
    first_positional, skip = None, False
    for a in argv:
        if skip:
            skip = False
        elif a == "--db":
            skip = True
        elif not a.startswith("-"):
            first_positional = a
            break
    if first_positional is None or first_positional not in COMMANDS:
        return ["gui", *argv]
    return argv


def _paths_usable(args: argparse.Namespace) -> None:
    """Paths a command writes, checked before it runs: a trainer's --out that is a file, an evaluation's --json that is
    a folder ended in a traceback from deep inside (a session-46 probe)."""
    from pathlib import Path

    command = getattr(args, "command", None)
    out = getattr(args, "out", None)
    if command in ("train", "pretrain") and out and Path(out).expanduser().exists() \
            and not Path(out).expanduser().is_dir():
        raise CommandError(f"--out {out}: a file is there, not a folder the model can be written to")
    report = getattr(args, "json", None)
    if command == "evaluate" and isinstance(report, (str, Path)) and Path(report).expanduser().is_dir():
        raise CommandError(f"--json {report}: a folder is there; give a file to write the figures to")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_normalise_argv(argv))
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "verbose", False):
        logging.getLogger("alembic").setLevel(logging.WARNING)
    # whether --db was typed is kept: the window ranks a given --db above the environment and Settings, and a --db
    # spelled like the default cannot be told from the filled-in default by its value (a session-51 audit)
    args.db_given = getattr(args, "db", None) is not None
    if not args.db_given:
        args.db = default_database_url()
    before = None
    if getattr(args, "command", None) in TERMINATED_AS_INTERRUPT and threading.current_thread() is threading.main_thread():
        before = signal.signal(signal.SIGTERM, _terminated)
    try:
        _paths_usable(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed reader is caught below, not at exit with a traceback
        return code
    except BrokenPipeError:
        # the reader went away (`models list | head -1`): nothing more can be shown, and Python's own flush at exit
        # would print a traceback (a session-51 audit); the rest of stdout goes to devnull, as the Python docs advise
        _stdout_to_devnull()
        return BROKEN_PIPE_EXIT
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


# what a shell reports of a command SIGPIPE ended (128 + 13), as 130 and 143 for the others (Windows has no SIGPIPE)
BROKEN_PIPE_EXIT = 141


def _stdout_to_devnull() -> None:
    """Point the stdout file descriptor at devnull, so the output still buffered is dropped quietly at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (captured): nothing will be flushed to a pipe
        pass


# Commands that write files and clean up what they leave half-written on Ctrl+C: SIGTERM (a job runner's stop) takes
# the same way out. A session-44 probe's SIGTERM during ``export`` left its hidden ``.partial`` folder of copies
# behind. (``gui``, ``worker``, ``prelabel``, ``pretrain`` and ``retrain`` answer SIGTERM themselves.)
TERMINATED_AS_INTERRUPT = frozenset({"export", "import", "audit"})


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so its cleanup runs as for Ctrl+C; exit status 143."""


def _terminated(_signum: int, _frame: object) -> None:
    raise Terminated()
