"""``python main.py [FOLDER]``: open the database, build the services, show the review station.

With no folder the bundled demo project opens. Every folder's new images are pre-labelled in
the background as soon as it is indexed (a project setting turns this off), so a new user sees
the whole loop (images → predictions → review) at once.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from app.paths import SAMPLES, default_database_url
from app.services.child_command import DB_ENV, HOME_ENV

if TYPE_CHECKING:
    from app.services.station import StationError

log = logging.getLogger("station.gui")
DEMO = SAMPLES / "demo"


DB_FLAG, DB_SAVED, DB_DEFAULT = "--db", "Settings", "default"   # where the window's URL came from (DB_ENV too)


def resolve_db_url(given: str | None, saved: str) -> tuple[str, str]:
    """The URL the window opens and where it came from: ``--db`` as given (``given``; None where none was), then
    ``INSPECTION_STATION_DB`` (a choice made for this shell, as the command-line tools and the station's worker read
    it), then the URL saved in Settings, then the default file. A session-44 probe: with a URL saved in Settings the
    window ignored the exported variable while every other command used it, so the window and the standing workers
    ran on two databases. A session-51 audit: a --db spelled exactly like the default file was taken for no --db at
    all, and the window opened the saved URL instead."""
    if given:
        return given, DB_FLAG
    env = os.environ.get(DB_ENV)
    if env:
        return env, DB_ENV
    if saved:
        return saved, DB_SAVED
    return default_database_url(), DB_DEFAULT


def given_db(args: argparse.Namespace) -> str | None:
    """The ``--db`` typed on the command line, or None: ``cli.main`` fills ``args.db`` with the default and says
    whether it did (``db_given``); a namespace built without it holds only what was given."""
    return getattr(args, "db", None) if getattr(args, "db_given", True) else None


def run(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from app.gui.qt_runtime import close_on_termination
    from app.gui.settings_store import SettingsStoreError, load_settings
    from app.services.station import StationError, UpgradeDeclined, open_station, upgrade_note, use_path_map

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Inspection Review Station")
    notes: list[str] = []
    try:
        settings = load_settings(notes)
    except SettingsStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    problem = use_path_map(settings.path_map)
    if problem:
        print(f"warning: the saved path map is not used: {problem}", file=sys.stderr)
    url, source = resolve_db_url(given_db(args), settings.database_url)
    folder = getattr(args, "folder", None)
    if folder is not None and not Path(folder).is_dir():
        print(f"error: {folder}: not a folder", file=sys.stderr)
        return 2
    fallback = None
    while True:
        try:
            db = open_station(url, upgrade_ok=functools.partial(confirm_upgrade, url=url))
            break
        except UpgradeDeclined as exc:   # the person's choice: nothing to retry or to open instead
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except StationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if source == DB_FLAG:
                return 2   # --db on the command line: one line, as before
            choice = ask_unreachable(exc, url, source)
            if choice == "retry":
                continue
            if choice != "local":
                return 2
            # this session only: ctx.settings keeps the saved URL, so Settings shows it and an OK there keeps it
            fallback, url, source = url, default_database_url(), DB_DEFAULT
    window = build_window(db, settings, url, interactive=True)
    upgraded = upgrade_note(db.migration)
    if upgraded:   # said on the console and in the window (a station started from an icon shows no console)
        print(f"note: {upgraded}", file=sys.stderr)
        window.status.note(upgraded)
    if fallback is not None:
        from app.services.station import shown_url
        # said where it stays: the title for the session, the status bar ahead of the folder's first messages
        window.setWindowTitle(f"{window.windowTitle()} — this computer's database (the saved one cannot be opened)")
        window.status.note(f"This session uses this computer's database: the one saved in Settings "
                           f"({shown_url(fallback)}) could not be opened. Settings (Ctrl+,) changes it.")
    if notes:  # said where the inspector looks, not only on a console nobody reads
        window.status.note(" · ".join(notes))
    window.restore_layout()   # this user's size, place and docks from the last close
    window.show()
    restore_signals = close_on_termination(window)
    open_initial_folder(window, folder)
    try:
        code = app.exec()
    finally:
        restore_signals()
    db.close()
    return int(code)


def confirm_upgrade(pending, url: str) -> bool:
    """Whether to upgrade an older database's schema at start-up: asked (Upgrade anyway / Quit) where others use it
    now or it is a server database (``ask_before_upgrade``), else yes. A session-52 audit: the station upgraded a
    shared database under a station of the older version, which went on writing without the newer bookkeeping, and
    nobody was asked or told."""
    from PySide6.QtWidgets import QMessageBox

    from app.services.station import ask_before_upgrade, upgrade_question

    if not ask_before_upgrade(pending):
        return True
    box = QMessageBox(QMessageBox.Icon.Warning, "Upgrade the database?", upgrade_question(pending, url))
    upgrade = box.addButton("Upgrade anyway" if pending.users else "Upgrade", QMessageBox.ButtonRole.AcceptRole)
    quit_ = box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(quit_)
    box.exec()
    return box.clickedButton() is upgrade


def ask_unreachable(error: StationError, url: str, source: str) -> str:
    """What to do when the database cannot be opened at start: "retry" (offered where it may help: ``error.retry``),
    "local" (this computer's own database, this session only; offered where the URL saved in Settings failed) or
    "quit". Seen under Xvfb (session 42): a URL with a wrong port, saved in Settings, made every later start print one
    line on stderr and show no window, with no way back but editing settings.ini; a station started from a desktop
    icon shows no stderr either, so this computer's own file failing (locked, damaged) is said in a box too."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Critical, "Database cannot be opened", unreachable_text(error, url, source))
    retry = box.addButton("Retry", QMessageBox.ButtonRole.AcceptRole) if error.retry else None
    local = (box.addButton("Use this computer's database", QMessageBox.ButtonRole.ActionRole)
             if offers_local(error, source) else None)
    quit_ = box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(retry or quit_)
    box.exec()
    clicked = box.clickedButton()
    return "retry" if retry is not None and clicked is retry else "local" if local is not None and clicked is local \
        else "quit"


def offers_local(error: StationError, source: str) -> bool:
    """Whether this computer's own database is offered for the session: where the URL saved in Settings failed, unless
    a broken environment variable would stop that one too."""
    return source == DB_SAVED and error.variable is None


def unreachable_text(error: StationError, url: str, source: str) -> str:
    """The start-up box's words: which database failed, named by where its URL came from, and what may help. A
    session-51 audit: an ``INSPECTION_STATION_DB`` naming an unreachable server or holding "station.sqlite", an
    ``INSPECTION_PATH_MAP=foo`` and a read-only data folder all read "This computer's database (…) cannot be opened …
    Retry (another program may hold it)": the variable to change was never named, and Retry could not help."""
    from app.services.station import shown_url

    if error.variable is not None:
        return (f"The environment variable {error.variable} cannot be used, so no database was opened:\n\n{error}\n\n"
                f"Quit, change or unset {error.variable} where it is set, and start again.")
    again = f"Retry ({error.retry}), or quit" if error.retry else "Quit"
    if source == DB_SAVED:
        what = f"The database saved in Settings ({shown_url(url)})"
        then = ((f"Retry ({error.retry}), open" if error.retry else "Open") + " this computer's own database for this "
                "session (the saved setting stays until you change it in Settings), or quit.")
    elif source == DB_ENV:
        what = f"The database named by the environment variable {DB_ENV} ({shown_url(url)})"
        then = (f"{again}, change or unset {DB_ENV} where it is set (it comes before the URL saved in Settings), and "
                "start again; nothing in the database was changed.")
    else:
        what = f"This computer's database ({shown_url(url)})"
        home = os.environ.get(HOME_ENV)
        where = (f", then fix that folder or change {HOME_ENV} (it names the station's data folder, {home}), and "
                 "start again" if home and not error.retry else "")
        then = f"{again}{where}; nothing in it was changed."
    return f"{what} cannot be opened:\n\n{error}\n\n{then}"


def build_window(db, settings, url: str, interactive: bool = True, jobs: bool = True,
                 model_dirs: dict[str, str] | None = None, worker_args=()):
    """The main window on ``db`` with every optional part that is available in this build."""
    from PySide6.QtWidgets import QApplication

    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.main_window import MainWindow
    from app.gui.review_controller import ReviewController
    from app.gui.theme import apply_theme
    from app.services.model_catalog import ModelCatalog
    from app.services.review import CONFLICTS, ReviewService, recovery_dir
    from app.services.wording import agree, plural

    apply_theme(cast(QApplication, QApplication.instance()), settings.theme)  # main() made it
    said: list[str] = []   # start-up words for the status bar
    project = start_project_settings(db, said)
    review = ReviewService(db, settings.review(project.flags if project is not None else None))
    review.use_maps_folder(project.maps_folder if project is not None else "")
    ctx = StationContext(review=review, settings=settings, db_url=url, interactive=interactive,
                         extensions=default_extensions(), project_settings=project)
    if jobs:
        from app.services.review_jobs import ReviewJobs
        ctx.jobs = ReviewJobs(db, url, settings.device, model_dirs=model_dirs, worker_args=worker_args)
    ctx.export_db = db
    ctx.models = ModelCatalog(db, author=lambda: review.settings.author)   # promotions recorded as the reviewer
    window = MainWindow(ctx)
    read_only = refuses_writes(db)
    if read_only is not None:
        window.setWindowTitle(f"{window.windowTitle()} — read-only database: nothing is saved")
        said.append(f"{read_only[0].upper()}{read_only[1:]} Labels made now wait unsaved (the status bar counts them) "
                    "until it can be written.")
    try:  # each save waits as briefly as the window's own: a locked database must not hold the window
        recovered = review.recover(wait_s=ReviewController.WRITE_WAIT_S)
    except Exception as exc:  # noqa: BLE001 - start-up must open the window; logged
        log.warning("could not replay saved labels: %s", exc)
    else:
        if recovered.saved - recovered.moved:
            said.append(f"Saved {plural(recovered.saved - recovered.moved, 'label')} kept from an earlier session.")
        if recovered.moved or recovered.moved_waiting:
            # taken by the database's id and its file's (st_dev, st_ino), which a copy given the moved file's freed
            # inode shares: said, with where the copies are, never unseen (a session-53 review); those left waiting
            # too, as the window's retry saves them on this file and says nothing of the move
            n, m, kept_for = recovered.moved, recovered.moved_waiting, ", ".join(recovered.moved_from)
            if n:
                done = f"{plural(n, 'label')} kept for {kept_for} {agree(n, 'was', 'were')} saved"
                done += f", and {m} more {agree(m, 'waits', 'wait')} to be saved," if m else ""
            else:
                done = f"{plural(m, 'label')} kept for {kept_for} {agree(m, 'waits', 'wait')} to be saved"
            moved = (f"{done} on {recovered.moved_to}, taken to be that database moved; copies kept in "
                     f"{recovered.replayed}.")
            log.warning(moved)
            said.append(moved)
        if recovered.waiting:
            # kept with the window's own waiting labels: shown, marked "not saved yet", saved by its retry
            window.review.adopt_recovered(recovered.waiting)   # (several of one image: one after the other)
            n = len(recovered.waiting)
            waits = (f"{plural(n, 'label')} kept from an earlier session {agree(n, 'waits', 'wait')}: the database "
                     f"is busy (another program holds it locked); {agree(n, 'it is', 'they are')} saved as soon as it "
                     "accepts writes.")
            window.status.set_pending_reason(waits)
            log.warning(waits)
            said.append(waits)
        if recovered.elsewhere:
            n = recovered.elsewhere
            said.append(f"{plural(n, 'recovery file')} {agree(n, 'belongs', 'belong')} to another database: kept in "
                        f"{recovery_dir()} until the station opens the database {agree(n, 'it was', 'they were')} "
                        "written on.")
        if n := recovered.superseded_stuck:
            said.append(f"{plural(n, 'label')} kept from an earlier session {agree(n, 'was', 'were')} not saved (an "
                        f"inspector labelled {agree(n, 'that image', 'those images')} after {agree(n, 'it', 'them')}) "
                        f"and could not be moved to {recovery_dir() / CONFLICTS} ({recovered.stuck_reason}): "
                        f"{agree(n, 'it stays', 'they stay')} in {recovery_dir()}, never saved.")
        if recovered.kept_aside or recovered.unreadable or recovered.superseded:
            # A person has to look at these: a box once the window is up, not a status line the folder's own
            # messages replace a moment later (seen under Xvfb).
            n = recovered.kept_aside
            parts = ([f"{plural(n, 'label')} kept from an earlier session (the database had refused "
                      f"{agree(n, 'it', 'them')} when the window closed) {agree(n, 'was', 'were')} not saved: "
                      f"{agree(n, 'that image', 'those images')} changed since (someone labelled "
                      f"{agree(n, 'it', 'them')}, or {agree(n, 'its file was', 'their files were')} replaced), and "
                      "what is stored now stands."] if recovered.kept_aside else [])
            if n := recovered.superseded:
                parts.append(f"{plural(n, 'label')} kept from an earlier session {agree(n, 'was', 'were')} not saved: "
                             f"an inspector labelled {agree(n, 'that image', 'those images')} after "
                             f"{agree(n, 'it', 'them')} in the window that kept {agree(n, 'it', 'them')} waiting, and "
                             "that later label stands.")
            if recovered.unreadable:
                parts.append(f"{plural(recovered.unreadable, 'recovery file')} could not be read (damaged or not the "
                             "station's).")
            text = " ".join(parts) + f" They are kept in {recovered.aside}."
            log.warning(text)
            if interactive:
                from PySide6.QtCore import QTimer
                from PySide6.QtWidgets import QMessageBox
                QTimer.singleShot(0, lambda: QMessageBox.information(window, "Labels kept aside", text))
    if said:
        window.status.note(" ".join(said))
    return window


def refuses_writes(db) -> str | None:
    """The sentence saying the database refuses every write (a read-only file, a server role that may not write
    labels), or None. A session-52 audit: a
    station started on a read-only file said so only on stderr, then named each refused label as the inspector made
    it; the window now says it from the start, in its title and status bar. A lock is not this: it is asked about no
    longer than a save waits, and said by the saves it holds up."""
    from app.gui.review_controller import ReviewController
    from database import DatabaseError, ReadOnlyError
    try:
        with db.waiting_at_most(ReviewController.WRITE_WAIT_S):
            db.check_writable()
    except ReadOnlyError as exc:
        log.warning("%s", exc)
        return str(exc)
    except DatabaseError:   # a lock, or no answer: not a refusal of every write (said by the saves it holds up)
        pass
    return None


def start_project_settings(db, said: list[str] | None = None):
    """The project's shared settings at start-up, after copying in, once, what an older station
    kept in files and in this user's QSettings; None (defaults, with the reason logged) when the
    stored ones cannot be read, so a broken value never keeps the station from starting. The copy waits
    as briefly for another program's lock as the window's saves (it stood still the busy timeout, 10 s,
    before any window appeared: a session-52 audit); refused, it is left to the next start, and a
    sentence saying so goes to ``said``."""
    from app.gui.review_controller import ReviewController
    from app.gui.settings_store import legacy_thresholds
    from app.services.project_settings import adopt_legacy_settings, load_project_settings
    from database import LockedError
    try:
        with db.waiting_at_most(ReviewController.WRITE_WAIT_S):
            adopt_legacy_settings(db, legacy_thresholds())
    except LockedError as exc:
        log.warning("project settings: %s", exc)
        if said is not None:
            said.append("The project's settings were not written at start (the database is busy: another program "
                        "holds it locked); this session uses those it holds (the defaults where it holds none), and "
                        "the next start tries again.")
    except Exception as exc:  # noqa: BLE001 - an old file that cannot be read must not cost the stored settings
        log.warning("project settings: %s", exc)
    try:
        return load_project_settings(db)
    except Exception as exc:  # noqa: BLE001 - old settings must not block start-up; logged
        log.warning("project settings: %s", exc)
        return None


def open_initial_folder(window, folder: str | None, wait: bool = False) -> None:
    """Open ``folder``, or the demo project (routed per subfolder on its first launch), indexing
    in the background so the window is up at once."""
    target = str(Path(folder or DEMO).expanduser().resolve())
    window.refresh_folders()
    if folder is None:
        window.ctx.prepare_demo(window)
    window.open_folder(target, wait=wait)
