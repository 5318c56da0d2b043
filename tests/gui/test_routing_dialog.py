"""Project ▸ Model routing…: the table edits the rules in order; a bad row is refused in place."""
from __future__ import annotations

from PySide6.QtCore import Qt

from app.gui.routing_dialog import RoutingDialog
from app.services.routing import Routing, RoutingRule


def test_table_round_trips_rules_and_edits_them(qtbot):
    rules = Routing((RoutingRule("ir/*", ("segmenter",)), RoutingRule("steel/*", ("classifier", "anomaly"))))
    dlg = RoutingDialog(rules)
    qtbot.addWidget(dlg)
    assert dlg.routing() == rules
    dlg.table.setCurrentCell(1, 0)
    dlg.move_selected(-1)                                   # steel first now
    assert [r.pattern for r in dlg.routing().rules] == ["steel/*", "ir/*"]
    dlg.add_rule(RoutingRule("tiles/*", ("anomaly",)))
    dlg.table.item(2, 1).setCheckState(Qt.CheckState.Checked)   # tick the classifier too
    assert dlg.routing().rules[2] == RoutingRule("tiles/*", ("classifier", "anomaly"))
    dlg.table.clearSelection()
    dlg.table.setCurrentCell(0, 0)
    dlg.remove_selected()
    assert [r.pattern for r in dlg.routing().rules] == ["ir/*", "tiles/*"]


def test_an_empty_pattern_keeps_the_dialog_open_with_the_row_named(qtbot):
    dlg = RoutingDialog(Routing())
    qtbot.addWidget(dlg)
    dlg.add_rule(RoutingRule("*", ("anomaly",)))
    dlg.table.item(0, 0).setText("  ")
    dlg._accept()
    assert dlg.result() != dlg.DialogCode.Accepted and "row 1" in dlg.error.text()
