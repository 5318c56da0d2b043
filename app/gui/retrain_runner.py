"""The retraining process as Qt signals: start it, read its JSON-line events, cancel it.

Training runs in its own process (the station's ``retrain`` command, see
``app.services.retrain_protocol``), never in the GUI's: the window imports no torch and never
waits on a model. QProcess delivers its output on the GUI thread without blocking it.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

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
    STDERR_LINES = 6

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
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

    def stop(self) -> None:
        """Cancel and wait until the process is gone (closing the dialog or the station: no orphan process). One
        that is registering its version is waited for, not killed, as ``_kill`` decides (it was killed after
        KILL_AFTER_MS while registering, skipping that guard: a session-51 audit)."""
        proc = self._proc
        if proc is None:
            return
        self.cancel()
        while self._proc is proc and not proc.waitForFinished(self.KILL_AFTER_MS):
            if self._kill():
                proc.waitForFinished(3000)
                return

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
        if self._proc is None or self._registering:
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
