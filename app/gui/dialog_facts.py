"""What the Export and Import dialogs need to know about the project before they can act, read off the GUI thread.

Why: both dialogs showed the folder's name, its review counts and the project's classes, read from
the database on the GUI thread while the menu action was still running — with another program
holding the SQLite file, or a slow server, the window stood still before the dialog appeared. The
dialog now opens at once, says it is reading, and enables its action when the facts arrive (or
says why they could not be read, and still lets the person go on: the export and import services
read what they need again when they run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtCore import QObject

from app.gui.background import BackgroundCalls


@dataclass(frozen=True)
class FolderFacts:
    """Plain data, read on the helper thread and handed to the GUI thread."""

    name: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    author: str = "import"


def read_folder_facts(review, folder_id: int | None) -> FolderFacts:
    """The folder's name and review counts, the project's classes and the station's author name."""
    name = next((f.name for f in review.folders() if f.id == folder_id), None) if folder_id is not None else None
    return FolderFacts(name=name, counts=dict(review.counts(folder_id)), classes=tuple(review.classes()),
                       author=review.settings.author or "import")


def read_facts_for(dialog: QObject, review, folder_id: int | None,
                   on_done: Callable[[FolderFacts], None], on_error: Callable[[str], None]) -> BackgroundCalls:
    """Start reading on a helper thread owned by ``dialog``; the answer arrives on the GUI thread."""
    calls = BackgroundCalls("dialog-facts", dialog)
    calls.call(lambda: read_folder_facts(review, folder_id), on_done, on_error)
    return calls
