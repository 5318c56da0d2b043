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


def test_a_failed_save_reopens_the_dialog_with_the_edits(qtbot, monkeypatch):
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QDialog, QMainWindow

    from app.gui import routing_dialog
    from app.services.review_jobs import JobsError

    edited = Routing((RoutingRule("ir/*", ("segmenter",)),))
    shown: list[Routing] = []

    class Jobs:
        saved: list[Routing] = []

        def routing(self):
            return Routing()

        def save_routing(self, routing):
            if not self.saved:
                self.saved.append(None)
                raise JobsError("cannot save the model routing: read-only file system")
            self.saved.append(routing)

    def exec_(dlg):  # the user edits the first dialog; later ones are accepted as shown
        if not shown:
            dlg.add_rule(edited.rules[0])
        shown.append(dlg.routing())
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(routing_dialog.RoutingDialog, "exec", exec_)
    win = QMainWindow()
    qtbot.addWidget(win)
    warnings: list[str] = []
    win.ctx = type("Ctx", (), {"jobs": Jobs()})()
    win.actions = {"model_routing": QAction("Model routing…", win)}
    win._warn = warnings.append
    win.project = None  # the MainWindow declares it: no project settings controller in this test
    routing_dialog.install(win)
    win.actions["model_routing"].trigger()
    assert "read-only" in warnings[0]
    assert shown == [edited, edited] and Jobs.saved[-1] == edited
