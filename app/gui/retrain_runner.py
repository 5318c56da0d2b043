"""The retraining process as Qt signals: start it, read its JSON-line events, cancel it.

Training runs in its own process (the station's ``retrain`` command, see
``app.services.retrain_protocol``), never in the GUI's: the window imports no torch and never
waits on a model. QProcess delivers its output on the GUI thread without blocking it.

Closing while the command registers its version waits for it, but not for good (``stop``): a small modal dialog says
whose registration it waits for and offers **Close anyway**; after ``REGISTER_WAIT_S`` or that button the process is
killed. Killing it then is safe: the version's row is written in one transaction (committed or not) and its files in
the database in another (a version without them is shared by the first load that sees its folder), and a model folder
left with no version is removed by the next retraining's sweep (``sweep_dead_work``). What is not known is whether it
got in, and the dialog says so.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

from PySide6.QtCore import QEventLoop, QObject, QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from app.paths import REPO_ROOT
from app.services.child_command import ChildCommand
from app.services.retrain_protocol import (
    RetrainCancelled,
    RetrainDone,
    RetrainError,
    RetrainProgress,
    RetrainStage,
    is_refusal,
    parse_event,
)


class RetrainRunner(QObject):
    """One retraining process at a time; every run ends in exactly one of succeeded, refused, failed, cancelled."""

    stage = Signal(object)       # RetrainStage
    progress = Signal(object)    # RetrainProgress
    succeeded = Signal(object)   # RetrainDone
    failed = Signal(str)         # what went wrong, in a sentence (with the last stderr lines if nothing else)
    refused = Signal(object)     # RetrainError: the classifier lost to the best simple answer; nothing registered
    declined = Signal(str)       # the command declined its input (too few reviewed labels, …): nothing ran or changed
    cancelled = Signal()

    KILL_AFTER_MS = 5000         # after terminate(): time to save and leave before kill()
    REGISTER_WAIT_S = 60.0       # closing waits this long for a version being registered, then kills the process
    STDERR_LINES = 6

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self._stopping = False   # stop() is waiting (its nested event loop must not start another wait)
        self.wait_dialog: QProgressDialog | None = None   # shown while stop() waits for a registration
        self._reset()

    def _reset(self) -> None:
        self._out = b""
        self._err = b""
        self._stderr: deque[str] = deque(maxlen=self.STDERR_LINES)
        self._done: RetrainDone | None = None
        self._error: RetrainError | None = None
        self._cancel_requested = False
        self._cancelled_event = False
        self._registering = False  # the command said it is registering its version: never killed then
        self._version = ""         # the version it registers, as its register stage named it
        self._abandoned = False    # stop() killed it while it registered ("Close anyway" or REGISTER_WAIT_S)

    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def registering(self) -> bool:
        """The running process said it is registering its version: a cancel comes too late then, the command
        finishes and the version stays as the challenger (it defers the signal)."""
        return self._proc is not None and self._registering

    def pid(self) -> int | None:
        return int(self._proc.processId()) if self._proc is not None else None

    def start(self, command: ChildCommand | Sequence[str]) -> None:
        """Run ``command`` (a station command with its environment, or a plain argv) in the repository's folder, with
        the environment ``ChildCommand.environment`` gives every child: the folders the station names by a relative
        path made absolute (a session-51 review: this built its own from the system's and the command's additions,
        so the retraining read a relative ``INSPECTION_STATION_ARTIFACTS`` and ``INSPECTION_STATION_HOME`` from the
        repository's folder, other folders than the station's)."""
        if self.running:
            raise RuntimeError("a retraining is already running")
        child = command if isinstance(command, ChildCommand) else ChildCommand(tuple(command))
        self._reset()
        proc = QProcess(self)
        proc.setProgram(str(child.argv[0]))
        proc.setArguments([str(a) for a in child.argv[1:]])
        proc.setWorkingDirectory(str(REPO_ROOT))
        env = QProcessEnvironment()
        for key, value in child.environment().items():
            env.insert(key, value)
        env.insert("PYTHONUNBUFFERED", "1")   # each event as soon as it is printed
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(self._read_out)
        proc.readyReadStandardError.connect(self._read_err)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error_occurred)
        self._proc = proc
        proc.start()

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM: it saves nothing half-done and exits); kill it if it
        is still there after KILL_AFTER_MS."""
        if self._proc is None:
            return
        self._cancel_requested = True
        self._proc.terminate()
        self._kill_timer.start(self.KILL_AFTER_MS)

    def stop(self, parent: QWidget | None = None) -> None:
        """Cancel and wait until the process is gone (closing the dialog or the station: no orphan process). One
        that is registering its version is not killed by the cancel's timer (``_kill`` decides), and is waited for
        with the events going on, for at most REGISTER_WAIT_S: with ``parent`` (a person closing) a modal dialog
        under it says whose registration it waits for and offers Close anyway. Then it is killed: safe, as the
        module says, though the version may or may not be in (``failed`` says so). A session-51 review: this waited
        in a loop on the GUI thread for as long as the registration took, forever for one stuck on a row lock, a
        hung disk or a stopped process, the station unable to close and nothing on screen saying why."""
        proc = self._proc
        if proc is None or self._stopping:
            return
        self._stopping = True
        try:
            self.cancel()
            if not self._registering and proc.waitForFinished(self.KILL_AFTER_MS):
                return   # a cancel out of training takes moments (it saves nothing half-done)
            if self._proc is not proc:
                return
            if self._kill():   # still there after KILL_AFTER_MS, and not registering
                proc.waitForFinished(3000)
                return
            self._await_registration(proc, parent)
        finally:
            self._stopping = False

    def _await_registration(self, proc: QProcess, parent: QWidget | None) -> None:
        """Wait for the registration with the events going on (the station redraws; the dialog's modality keeps
        what it shows from being used meanwhile), until the process ends, REGISTER_WAIT_S passes or Close anyway is
        pressed; the last two kill it."""
        loop = QEventLoop()
        proc.finished.connect(loop.quit)
        deadline = QTimer()
        deadline.setSingleShot(True)
        deadline.timeout.connect(lambda: self._abandon(proc, loop))
        deadline.start(int(self.REGISTER_WAIT_S * 1000))
        if parent is not None:
            version = self._version or "the new version"
            dialog = QProgressDialog(
                f"Waiting for {version}'s registration…\n\nThe retraining is writing {version} into the database; "
                f"closing waits for it (at most {int(self.REGISTER_WAIT_S)} s). Close anyway stops it now: the "
                "version may not be registered then; the Models window shows which.",
                "Close anyway", 0, 0, parent)
            dialog.setWindowTitle("Closing")
            dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
            dialog.setMinimumDuration(0)
            dialog.setAutoClose(False)
            dialog.setAutoReset(False)
            dialog.canceled.connect(lambda: self._abandon(proc, loop))
            self.wait_dialog = dialog
            dialog.show()
        try:
            if self._proc is proc:
                loop.exec()
        finally:
            deadline.stop()
            if self.wait_dialog is not None:
                self.wait_dialog.canceled.disconnect()
                self.wait_dialog.close()
                self.wait_dialog.deleteLater()
                self.wait_dialog = None

    def _abandon(self, proc: QProcess, loop: QEventLoop) -> None:
        """Close anyway, or REGISTER_WAIT_S passed: the registering process is killed (see the module's why)."""
        if self._proc is proc:
            self._abandoned = True
            proc.kill()
            proc.waitForFinished(3000)   # SIGKILL ends it at once; a process in the kernel's D state need not
        loop.quit()

    # -- process output -----------------------------------------------------------------
    def _read_out(self) -> None:
        if self._proc is None:
            return
        self._out += self._proc.readAllStandardOutput().data()
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            self._handle(line)

    def _read_err(self) -> None:
        if self._proc is None:
            return
        self._err += self._proc.readAllStandardError().data()
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", errors="replace").strip()
            if text:
                self._stderr.append(text)

    def _handle(self, line: bytes) -> None:
        event = parse_event(line)
        if isinstance(event, RetrainStage):
            if event.stage == "register":
                self._registering = True
                self._version = event.version
            self.stage.emit(event)
        elif isinstance(event, RetrainProgress):
            self.progress.emit(event)
        elif isinstance(event, RetrainDone):
            self._done = event
        elif isinstance(event, RetrainError):
            self._error = event
        elif isinstance(event, RetrainCancelled):
            self._cancelled_event = True

    def _kill(self) -> bool:
        """Kill a process that did not stop on SIGTERM, unless it is registering its version: it defers the signal
        there and answers when the version is in (a kill then left a registered version while the dialog said "no
        version was added", its files half kept: a session-44 probe). False: not killed."""
        if self._proc is None or self.registering:
            return False
        self._proc.kill()
        return True

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_out()
        self._read_err()
        if self._out.strip():   # a last line without its newline
            self._handle(self._out)
        if self._err.strip():
            self._stderr.append(self._err.decode("utf-8", errors="replace").strip())
        self._out = self._err = b""
        self._end()
        if self._done is not None:
            self.succeeded.emit(self._done)
        elif self._abandoned:
            self.failed.emit(f"closed while it registered {self._version or 'the new version'}: the process was "
                             "stopped before it said the version is in, so the version may not be registered; the "
                             "versions table shows which")
        elif self._cancelled_event:   # the command said so, also where an error came of the cancel
            self.cancelled.emit()
        elif self._error is not None and is_refusal(self._error):
            self.refused.emit(self._error)
        elif self._error is not None and self._error.not_retrained:
            self.declined.emit(self._error.message)
        elif self._error is not None:
            self.failed.emit(self._error.message)
        elif self._cancel_requested:
            self.cancelled.emit()
        else:
            # its "note:" lines are not why it ended: a kill -9 read "crashed without saying why: note: … is a
            # texture_linear version" (a session-48 probe)
            last = " | ".join(line for line in self._stderr if not line.lstrip().startswith("note:"))
            if status == QProcess.ExitStatus.CrashExit:   # a signal ended it: a crash of native code, or a kill
                self.failed.emit("the retraining process crashed or was killed (a signal ended it"
                                 + (f"; its last words: {last})" if last else ", before it said why)"))
            else:
                self.failed.emit(f"the process stopped with exit code {code} without saying why"
                                 + (f": {last}" if last else ""))

    def _error_occurred(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._proc is not None:
            reason = self._proc.errorString()
            self._end()
            self.failed.emit(f"the process could not start: {reason}")

    def _end(self) -> None:
        self._kill_timer.stop()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.deleteLater()
