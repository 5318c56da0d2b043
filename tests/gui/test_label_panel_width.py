"""The label panel keeps to its dock's width whatever the file and class names: its scroll area has no horizontal bar,
so anything wider put the decision buttons out of sight."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton

from tests.gui.conftest import open_window, wait_shown
from tests.gui.fixtures import make_folder

LONG_FILE = "coil_2026-11-23_line7_station04_serial_ABCDEFGHIJ0123456789_lot_ZZ998877_camera_B_exposure_long_retake.png"
LONG_CLASS = "delamination_along_the_long_edge_of_the_coil_beyond_tolerance"


def _out_of_sight(win) -> list[str]:
    """The panel's buttons whose right edge lies past the scroll area's visible width."""
    viewport = win.label_dock.widget().viewport()
    return [b.text() for b in win.label_panel.findChildren(QAbstractButton)
            if b.isVisible() and b.mapTo(viewport, b.rect().topRight()).x() > viewport.width()]


def test_a_long_file_or_class_name_leaves_every_button_in_sight(service, tmp_path, qtbot):
    """Before (a session-49 audit): a line camera's 106-character file name with no space widened the panel to 861 px
    in a 349-px dock, and a long class name (on its button, then in the class box's title once chosen) to 571 px:
    Reject, Clear label, Anomalous and every second class button lay past the edge, out of reach. Now the name and
    path end in "…" (whole in the tooltip and the title's text), a class button keeps its hotkey and shortens its name
    (whole in its tooltip), and the box's title is shortened too."""
    folder = make_folder(tmp_path / "parts", n=1)
    (folder / "part_00.png").rename(folder / LONG_FILE)
    win = open_window(service, qtbot, folder)
    win.resize(1500, 920)
    win.resizeDocks([win.label_dock], [360], Qt.Orientation.Horizontal)
    qtbot.wait(50)
    panel = win.label_panel
    assert _out_of_sight(win) == []
    assert LONG_FILE in panel.title.text() and LONG_FILE in panel.title.toolTip()
    classes = ["crazing", "inclusion", "patches", LONG_CLASS, "rust spot"]
    panel.set_classes(classes)
    win.review.set_class(LONG_CLASS)
    qtbot.waitUntil(lambda: LONG_CLASS in panel.class_box.title())
    wait_shown(win, qtbot)
    qtbot.wait(50)
    assert _out_of_sight(win) == []
    buttons = panel.class_group.buttons()
    assert [b.text() for b in buttons] == [f"{i + 1}  {c}" for i, c in enumerate(classes)]
    long_button = buttons[3]
    assert long_button.toolTip() == f"4  {LONG_CLASS}"
    shown = super(type(long_button), long_button).text()   # what is painted
    assert shown.startswith("4  ") and shown.endswith("…")
    assert panel.width() <= win.label_dock.widget().viewport().width()
