"""Optional parts of the window (jobs, export, settings), each added by one function.

A part whose service is missing from this build leaves its actions disabled with the reason
in the tooltip, instead of failing the whole window.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable

log = logging.getLogger(__name__)

PARTS = (
    ("app.gui.settings_dialog", "install", ("settings",)),
    ("app.gui.jobs_panel", "install", ("prelabel_folder", "prelabel_selection", "prelabel_new")),
    ("app.gui.export_dialog", "install", ("export",)),
    ("app.gui.import_dialog", "install", ("import_labels",)),
    ("app.gui.routing_dialog", "install", ("model_routing",)),
    ("app.gui.classes_dialog", "install", ("project_classes",)),
    ("app.gui.models_dialog", "install", ("models",)),
    ("app.gui.operating_point_dialog", "install", ("operating_point",)),
    ("app.gui.label_next_panel", "install", ("label_next",)),
    # after the settings (the project's settings controller) and the jobs dock they extend
    ("app.gui.auto_prelabel", "install", ()),
    ("app.gui.folder_follow", "install", ()),  # after auto_prelabel: new files are pre-labelled through it
    ("app.gui.routing_notice", "install", ()),
)


def _unavailable(actions: tuple[str, ...], reason: str) -> Callable:
    def install(window) -> None:
        for key in actions:
            a = window.actions[key]
            a.setEnabled(False)
            a.setToolTip(f"{a.toolTip()} — not available: {reason}")
    return install


def default_extensions() -> list[Callable]:
    out = []
    for module, func, actions in PARTS:
        try:
            out.append(getattr(importlib.import_module(module), func))
        except ImportError as exc:
            log.warning("%s unavailable: %s", module, exc)
            out.append(_unavailable(actions, str(exc)))
    return out
