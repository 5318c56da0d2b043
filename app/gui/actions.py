"""QActions built from the shortcut table (one action per id, shared by menus and buttons)."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import SignalInstance
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import QWidget

from app.gui.shortcuts import SHORTCUTS
from app.gui.style import icon
from app.gui.viewer import TOOLS

CHECKABLE = {"toggle_heatmap", "toggle_prediction", "toggle_mask", "compare",
             *(f"tool_{t}" for t in TOOLS), "target_mask", "target_region"}
SHORT = {
    "undo": "Undo", "redo": "Redo", "accept": "Accept", "reject": "Reject", "flag": "Flag", "verdict_normal": "Normal",
    "verdict_anomalous": "Anomalous", "clear_label": "Clear label", "next_unreviewed": "Next unreviewed",
    "prev_unreviewed": "Previous unreviewed", "label_next": "Label next", "next_image": "Next image", "prev_image": "Previous image",
    "tool_pan": "Pan", "tool_brush": "Brush", "tool_eraser": "Eraser", "tool_polygon": "Polygon",
    "tool_grow": "Grow region",
    "compare": "Side by side", "prelabel_folder": "Pre-label folder", "prelabel_selection": "Pre-label selection",
    "prelabel_new": "Pre-label new images", "model_routing": "Model routing…", "project_classes": "Classes…", "operating_point": "Operating point…", "models": "Models…", "export": "Export…", "import_labels": "Import…", "settings": "Settings…",
    "open_folder": "Open folder…", "help_shortcuts": "Keyboard shortcuts", "fit": "Fit", "one_to_one": "1:1",
    "toggle_heatmap": "Heatmap", "toggle_prediction": "Predicted mask", "toggle_mask": "Labelled masks",
    "next_target": "Next target", "prev_target": "Previous target",
    "target_mask": "Edit defect mask", "target_region": "Edit anomaly region", "focus_filter": "Search",
}
CHECKED = {"toggle_heatmap", "toggle_prediction", "toggle_mask", "tool_pan", "target_mask"}
# Keys that decide or step through the image on screen: with none chosen yet (no folder open, the first
# image not listed) they did nothing, silently, or said "There is no class 1" (a session-44 probe).
ON_AN_IMAGE = ("accept", "reject", "flag", "clear_label", "verdict_normal", "verdict_anomalous",
               *(f"class_{i}" for i in range(1, 10)), "next_target", "prev_target")


def build_actions(parent: QWidget, undo_stack: QUndoStack | None = None,
                  steps: dict[str, Callable[[], None]] | None = None,
                  keys_waiting: SignalInstance | None = None) -> dict[str, QAction]:
    """One QAction per shortcut; undo/redo follow ``undo_stack`` (their text and whether they can run) and run
    ``steps["undo"]`` / ``steps["redo"]`` (the review's, which wait behind keys still waiting for an image)."""
    actions: dict[str, QAction] = {}
    for s in SHORTCUTS:
        text = SHORT.get(s.id) or (f"Class {s.id[6:]}" if s.id.startswith("class_") else s.text.split(" (")[0])
        if undo_stack is not None and s.id in ("undo", "redo"):
            a = _stack_action(parent, undo_stack, s.id, text, (steps or {}).get(s.id), keys_waiting)
            if s.icon:
                a.setIcon(icon(s.icon))
        else:
            a = QAction(icon(s.icon) if s.icon else icon("mdi6.label"), text, parent)
        a.setObjectName(f"action_{s.id}")
        a.setShortcuts([QKeySequence(k) for k in s.keys])
        a.setToolTip(f"{s.text}  [{' / '.join(s.keys)}]")
        a.setStatusTip(s.text)
        if s.id in CHECKABLE:
            a.setCheckable(True)
            a.setChecked(s.id in CHECKED)
        parent.addAction(a)  # shortcuts work even when the action is in no visible menu
        actions[s.id] = a
    tools = QActionGroup(parent)
    for t in TOOLS:
        tools.addAction(actions[f"tool_{t}"])
    targets = QActionGroup(parent)
    for t in ("target_mask", "target_region"):
        targets.addAction(actions[t])
    return actions


def enable_with_an_image(actions: dict[str, QAction], image_chosen: SignalInstance) -> None:
    """Keep the actions of ``ON_AN_IMAGE`` disabled until ``image_chosen`` first fires (an image is being read:
    keys pressed while its detail comes are kept for it, so they are enabled from then on)."""
    for key in ON_AN_IMAGE:
        actions[key].setEnabled(False)

    def chosen(_image_id: int) -> None:
        for key in ON_AN_IMAGE:
            actions[key].setEnabled(True)
        image_chosen.disconnect(chosen)
    image_chosen.connect(chosen)


def retint(actions: dict[str, QAction]) -> None:
    """Recreate the actions' icons in the current theme's colours (after a theme change)."""
    for s in SHORTCUTS:
        if s.icon and s.id in actions:
            actions[s.id].setIcon(icon(s.icon))


def _stack_action(parent: QWidget, stack: QUndoStack, which: str, prefix: str,
                  step: Callable[[], None] | None, keys_waiting: SignalInstance | None = None) -> QAction:
    """Undo or redo as ``createUndoAction`` makes it (enabled when the stack can, "Undo <its text>"), running
    ``step`` when given; ``keys_waiting(bool)`` also enables it while keys wait for an image's read
    (Ctrl+Z then waits behind them: a disabled action swallowed it when the stack was empty)."""
    undo = which == "undo"
    a = QAction(prefix, parent)
    waiting = [False]

    def named(text: str) -> None:
        a.setText(f"{prefix} {text}" if text else prefix)

    def enable(_: object = None) -> None:
        try:
            a.setEnabled(waiting[0] or (stack.canUndo() if undo else stack.canRedo()))
        except RuntimeError:   # the window is going away (its stack deleted before the last signal)
            pass

    def keys(now: bool) -> None:
        waiting[0] = now
        enable()
    if keys_waiting is not None:
        keys_waiting.connect(keys)
    enable()
    named(stack.undoText() if undo else stack.redoText())
    (stack.canUndoChanged if undo else stack.canRedoChanged).connect(enable)
    (stack.undoTextChanged if undo else stack.redoTextChanged).connect(named)
    a.triggered.connect(step or (stack.undo if undo else stack.redo))
    return a
