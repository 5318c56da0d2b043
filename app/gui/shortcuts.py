"""Every keyboard shortcut in one table: menus, the Help dialog and docs/shortcuts.md read it.

Keyboard-first: an inspector should review a whole folder without touching the mouse except
to paint. Keys are QKeySequence strings; ``id`` names the action the main window wires.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    id: str
    keys: tuple[str, ...]
    text: str
    group: str
    icon: str | None = None


# The one line the 1–9 keys get in docs/shortcuts.md and the Help dialog.
CLASS_KEYS_TEXT = ("Set the image's class (the n-th class of the label panel); while an object is selected "
                   "(Tab, a click on it, or the Objects list), that object's own class; with several images selected "
                   "in the gallery, each of them gets that class")

SHORTCUTS: tuple[Shortcut, ...] = (
    # Review
    Shortcut("accept", ("A", "Space"), "Accept the label on screen: your corrections as they are, the prediction "
             "for what you did not set (and go to the next unreviewed); with several images selected in the "
             "gallery, accept each one's own label", "Review", "mdi6.check-bold"),
    Shortcut("reject", ("X",), "Reject the image (unusable; excluded from export) and go to the next unreviewed; "
             "with several selected, reject them all", "Review", "mdi6.close-thick"),
    Shortcut("flag", ("F",), "Flag / unflag the image for a second look: your decision stands when the models "
             "flag the image again (a later pre-label run or threshold change leaves it as you set it); undone, "
             "the flag is back as it was, the models' again where it was theirs", "Review",
             "mdi6.flag"),
    Shortcut("verdict_normal", ("G",), "Anomaly verdict: normal (good part); with several images selected in the "
             "gallery, each of them", "Review", "mdi6.thumb-up"),
    Shortcut("verdict_anomalous", ("D",), "Anomaly verdict: anomalous (defective part); with several selected, each "
             "of them", "Review", "mdi6.alert-octagon"),
    Shortcut("clear_label", ("Ctrl+Backspace",), "Clear the label (back to unreviewed)", "Review", "mdi6.eraser-variant"),
    *(Shortcut(f"class_{i}", (str(i),), f"Set class {i} (as listed in the label panel) of the image, the selected object, or each selected image", "Review") for i in range(1, 10)),
    # Navigation
    Shortcut("next_unreviewed", ("N",), "Next unreviewed image", "Navigate", "mdi6.skip-next"),
    Shortcut("prev_unreviewed", ("Shift+N",), "Previous unreviewed image", "Navigate", "mdi6.skip-previous"),
    Shortcut("next_image", ("PgDown", "J"), "Next image in the queue", "Navigate", "mdi6.chevron-right"),
    Shortcut("prev_image", ("PgUp", "K"), "Previous image in the queue", "Navigate", "mdi6.chevron-left"),
    Shortcut("label_next", ("P",), "Label next: the next proposed image (uncertain and unlike those labelled; "
             "the queue switches to the \"label next\" order)", "Navigate", "mdi6.lightbulb-on-outline"),
    Shortcut("focus_filter", ("Ctrl+F",), "Search the queue by file name", "Navigate", "mdi6.magnify"),
    # Edit
    Shortcut("undo", ("Ctrl+Z",), "Undo the last label change or flag, on whichever image (the status bar says "
             "which)", "Edit", "mdi6.undo"),
    Shortcut("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo", "Edit", "mdi6.redo"),
    Shortcut("tool_pan", ("V", "Esc"), "Pan tool (drag to move; the middle button pans with any tool; a click "
             "selects the object under it, or the image)", "Edit", "mdi6.hand-back-right"),
    Shortcut("tool_brush", ("B",), "Brush: paint the mask (on an image whose label has none, from the predicted targets)", "Edit", "mdi6.brush"),
    Shortcut("tool_eraser", ("E",), "Eraser: erase the mask (a false predicted target; erasing every target saves \"no target\")", "Edit", "mdi6.eraser"),
    Shortcut("tool_polygon", ("L",), "Polygon: click vertices, double-click/Enter fills (Shift erases)", "Edit", "mdi6.vector-polygon"),
    Shortcut("tool_grow", ("W",), "Grow: click the heatmap to add the connected hot area to the anomaly region",
             "Edit", "mdi6.auto-fix"),
    Shortcut("brush_smaller", ("[",), "Smaller brush (the Layers panel's Radius; a stroke is twice as wide)", "Edit", "mdi6.minus-circle-outline"),
    Shortcut("brush_larger", ("]",), "Larger brush (the Layers panel's Radius)", "Edit", "mdi6.plus-circle-outline"),
    Shortcut("target_mask", ("M",), "Tools edit the defect mask", "Edit", "mdi6.texture-box"),
    Shortcut("target_region", ("R",), "Tools edit the anomaly region", "Edit", "mdi6.select-drag"),
    # View
    Shortcut("fit", ("Ctrl+0",), "Fit the image to the window", "View", "mdi6.fit-to-screen-outline"),
    Shortcut("one_to_one", ("Ctrl+1",), "Actual pixels (1:1)", "View", "mdi6.numeric-1-box-outline"),
    Shortcut("zoom_in", ("+", "="), "Zoom in", "View", "mdi6.magnify-plus-outline"),
    Shortcut("zoom_out", ("-",), "Zoom out", "View", "mdi6.magnify-minus-outline"),
    Shortcut("toggle_heatmap", ("H",), "Show / hide the anomaly heatmap", "View", "mdi6.fire"),
    Shortcut("toggle_prediction", ("T",), "Show / hide the predicted mask and its target rings", "View",
             "mdi6.shape-outline"),
    Shortcut("toggle_mask", ("Shift+M",), "Show / hide the labelled masks", "View", "mdi6.layers-outline"),
    Shortcut("next_target", ("Tab",), "Next predicted target: centre the view on it (target k/n) and select "
             "its object; on an image without predicted targets, the mask's next object", "View",
             "mdi6.target"),
    Shortcut("prev_target", ("Shift+Tab",), "Previous predicted target (or object)", "View", "mdi6.target-variant"),
    Shortcut("compare", ("C",), "Side by side: original beside the overlays, in step (the wheel, a middle-button "
             "drag, the scroll bars or the arrow keys in either pane move both)", "View", "mdi6.compare"),
    # Project
    Shortcut("open_folder", ("Ctrl+O",), "Open a folder of images", "Project", "mdi6.folder-open"),
    Shortcut("prelabel_folder", ("Ctrl+Shift+P",), "Pre-label the current folder", "Project", "mdi6.robot"),
    Shortcut("prelabel_selection", ("Ctrl+Alt+P",), "Pre-label the selected images", "Project", "mdi6.robot-outline"),
    Shortcut("prelabel_new", ("Ctrl+P",), "Pre-label what is new (images without predictions)", "Project", "mdi6.robot-happy-outline"),
    Shortcut("model_routing", ("Ctrl+Shift+M",), "Model routing: which models pre-label which subfolders", "Project", "mdi6.source-branch"),
    Shortcut("project_classes", ("Ctrl+Shift+K",), "Classes: the names inspectors label with, in hotkey order "
             "(add, remove, reorder; labels are never changed)", "Project", "mdi6.tag-multiple"),
    Shortcut("operating_point", ("Ctrl+Shift+O",), "Operating point: a folder's anomaly threshold from the costs of "
             "escapes and false calls", "Project", "mdi6.chart-bell-curve"),
    Shortcut("models", ("Ctrl+Shift+V",), "Model versions: see them, make one active, add a model folder, retrain",
             "Project", "mdi6.brain"),
    Shortcut("export", ("Ctrl+E",), "Export the reviewed images", "Project", "mdi6.export"),
    Shortcut("import_labels", ("Ctrl+Shift+I",), "Import labels from a dataset (preview, then import)", "Project",
             "mdi6.import"),
    Shortcut("settings", ("Ctrl+,",), "Settings: yours (reviewer, device, database, theme) and the project's (thresholds, automatic pre-label)", "Project", "mdi6.cog"),
    Shortcut("quit", ("Ctrl+Q",), "Quit (everything is already saved)", "Project", "mdi6.exit-run"),
    Shortcut("help_shortcuts", ("F1",), "This list of shortcuts", "Help", "mdi6.keyboard"),
)

BY_ID = {s.id: s for s in SHORTCUTS}


def as_markdown() -> str:
    """The table for docs/shortcuts.md (kept in sync by a test)."""
    out = ["# Keyboard shortcuts", "",
           "Every change is saved at once as a label revision; undo/redo works across images (the last 100 steps).",
           "The same list is in the application under Help → Keyboard shortcuts (F1).", ""]
    group = None
    for s in SHORTCUTS:
        if s.id.startswith("class_") and s.id != "class_1":
            continue
        if s.group != group:
            group = s.group
            out += ["", f"## {group}", "", "| Keys | Action |", "|---|---|"]
        keys = " / ".join(f"`{k}`" for k in s.keys)
        text = s.text
        if s.id == "class_1":
            keys, text = "`1` … `9`", CLASS_KEYS_TEXT
        out.append(f"| {keys} | {text} |")
    out += ["", f"## {GALLERY_GROUP}", "", "| Keys | Action |", "|---|---|"]
    out += [f"| {' / '.join(f'`{k}`' for k in keys)} | {text} |" for keys, text in GALLERY_KEYS]
    return "\n".join(out) + "\n"


# The gallery list's own keys (Qt's, not actions): in docs/shortcuts.md and the Help dialog alike. The dialog left them
# out while the page said it held "the same list" (a session-52 audit).
GALLERY_GROUP = "In the gallery (when it has the focus)"
GALLERY_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("↑", "↓", "←", "→", "Home", "End", "PageUp", "PageDown"),
     "Move through the queue; the image moved to opens as with J / K (a row whose page is not read yet opens once "
     "it is)"),
    (("Shift", "Ctrl"), "With a click or an arrow: choose several images for one decision"),
    (("Enter", "Esc", "↓"), "In the search field (Ctrl+F): give the keys back to the queue; the search stays"),
)
