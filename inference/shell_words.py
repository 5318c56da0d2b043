"""A command line rendered for the shell of the machine it is shown on, for a person to copy: ``shell_join``.

Lives apart from the training code (which imports torch) so the command-line handlers can use it without importing
torch.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from typing import Iterable

# Whether commands are shown as Windows programs read their command line (typed in cmd.exe), not as a POSIX shell does
WINDOWS = os.name == "nt"


def shell_join(argv: Iterable[str]) -> str:
    """``argv`` as one line to type: on Windows as its programs read their command line (``subprocess.list2cmdline``:
    an argument with a space in double quotes; cmd.exe's own ``& | < > ^ %`` are not escaped), elsewhere as a POSIX
    shell reads it (``shlex.join``).

    Why: a command's advice quoted its ``--db`` with ``shlex.join`` alone, in single quotes, which cmd.exe passes on as
    they are (``--db 'sqlite:///D:/line 2/a.sqlite'`` reached the command as two words, quotes and all; a session-52
    audit)."""
    words = list(argv)
    return subprocess.list2cmdline(words) if WINDOWS else shlex.join(words)
