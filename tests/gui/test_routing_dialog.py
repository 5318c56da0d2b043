"""Project ▸ Model routing…: the table edits the rules in order; a bad row is refused in place."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from app.gui.routing_dialog import RoutingDialog
from app.services.routing import Routing, RoutingRule
from tests.gui.conftest import tab_leaves


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


class _Jobs:
    """The jobs service's routing calls; each one waits for ``go`` when set (a slow or locked database)."""

    def __init__(self, rules: Routing | None = None, proposal=None) -> None:
        import threading
        self.rules, self.proposal = rules or Routing(), proposal
        self.go = threading.Event()
        self.go.set()
        self.saved: list[Routing] = []
        self.fail_saves = 0
        self.fail_read = ""
        self.versions: dict[str, list[str]] = {}

    def routing(self) -> Routing:
        self.go.wait(10)
        if self.fail_read:
            raise ValueError(self.fail_read)
        return self.rules

    def save_routing(self, routing: Routing, read: Routing | None = None) -> None:
        from app.services.review_jobs import JobsError
        self.go.wait(10)
        if self.fail_saves:
            self.fail_saves -= 1
            raise JobsError("cannot save the model routing: read-only file system")
        self.saved.append(routing)

    def version_names(self) -> dict[str, list[str]]:
        return dict(self.versions)

    def propose_routing(self, folder_id: int, current: Routing | None = None):
        self.go.wait(10)
        self.proposed_beside = current
        return self.proposal

    def remove_unrouted_answers(self, folder_id: int, routing: Routing) -> int:
        self.removed_for = (folder_id, routing)
        return 5


def test_the_dialog_opens_at_once_and_reads_the_rules_off_the_gui_thread(qtbot):
    jobs = _Jobs(Routing((RoutingRule("ir/*", ("segmenter",)),)))
    jobs.go.clear()                                        # the database holds the read
    dlg = RoutingDialog(None, jobs=jobs, folder_id=1)
    qtbot.addWidget(dlg)
    ok = dlg.buttons.button(dlg.buttons.StandardButton.Ok)
    assert "Reading" in dlg.status.text() and not ok.isEnabled() and not dlg.table.isEnabled()
    jobs.go.set()
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1 and ok.isEnabled())
    assert dlg.routing() == jobs.rules and dlg.status.text() == ""


def test_rules_that_cannot_be_read_are_never_saved_over(qtbot):
    jobs = _Jobs()
    jobs.fail_read = "rule 1 must have a 'pattern'"
    dlg = RoutingDialog(None, jobs=jobs, folder_id=1)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.readable)
    assert "cannot be read" in dlg.error.text() and "pattern" in dlg.error.text()
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()
    dlg._accept()
    assert jobs.saved == [] and dlg.result() != QDialog.DialogCode.Accepted


def test_a_failed_save_keeps_the_dialog_and_the_edits_and_ok_tries_again(qtbot):
    edited = RoutingRule("ir/*", ("segmenter",))
    jobs = _Jobs()
    jobs.fail_saves = 1
    dlg = RoutingDialog(None, jobs=jobs, folder_id=1)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy)
    dlg.add_rule(edited)
    dlg._accept()
    qtbot.waitUntil(lambda: "read-only" in dlg.error.text())
    assert dlg.result() != QDialog.DialogCode.Accepted and dlg.routing() == Routing((edited,))
    jobs.go.clear()
    dlg._accept()
    assert dlg.status.text() == "Saving…" and not dlg.buttons.isEnabled()
    jobs.go.set()
    qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
    assert jobs.saved == [Routing((edited,))]


def test_a_proposal_goes_above_the_rules_and_replaces_a_rule_of_the_same_pattern(qtbot):
    from app.services.routing_proposal import propose_from_scores

    rows = ([(f"ir/{i}.png", f, s) for i in range(4) for f, s in (("classifier", 0.0), ("segmenter", 0.9),
                                                                    ("anomaly", 0.0))]
            + [(f"tiles/{i}.png", f, s) for i in range(3) for f, s in (("classifier", 0.1), ("segmenter", 0.0),
                                                                       ("anomaly", 0.8))])
    jobs = _Jobs(Routing((RoutingRule("LINE/tiles/*", ("classifier",)), RoutingRule("*", ("anomaly",)))),
                 propose_from_scores("line", rows))
    dlg = RoutingDialog(None, jobs=jobs, folder_id=7)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.propose_button.isEnabled())
    dlg.propose()
    qtbot.waitUntil(lambda: dlg.evidence.isVisible() or dlg.evidence.text() != "")
    assert [(r.pattern, r.families) for r in dlg.routing().rules] == [
        ("line/ir/*", ("segmenter",)), ("LINE/tiles/*", ("anomaly",)), ("*", ("anomaly",))]
    assert "segmenter in domain 4 of 4" in dlg.evidence.text() and jobs.saved == []   # nothing saved yet
    assert jobs.proposed_beside == jobs.rules   # the rules on screen decide families with no answer
    # the proposal came from the earlier run's answers: removing those of unrouted models is offered, ticked
    assert not dlg.clear_answers.isHidden() and dlg.clear_answers.isChecked()
    dlg._accept()
    qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
    assert jobs.saved == [dlg.routing()] and jobs.removed_for == (7, dlg.routing()) and dlg.removed == 5


def test_answers_are_removed_only_when_asked(qtbot):
    jobs = _Jobs()
    dlg = RoutingDialog(None, jobs=jobs, folder_id=7)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy)
    assert not dlg.clear_answers.isChecked()
    dlg.add_rule(RoutingRule("ir/*", ("segmenter",)))
    dlg._accept()
    qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
    assert not hasattr(jobs, "removed_for") and dlg.removed == 0


def test_esc_while_saving_waits_and_a_failed_removal_still_closes_with_the_rules_saved(qtbot):
    jobs = _Jobs()
    dlg = RoutingDialog(None, jobs=jobs, folder_id=7)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy)
    dlg.add_rule(RoutingRule("ir/*", ("segmenter",)))
    dlg.clear_answers.setChecked(True)

    def broken(folder_id, routing):
        raise RuntimeError("disk full")
    jobs.remove_unrouted_answers = broken
    closed: list[int] = []
    dlg.rejected.connect(lambda: closed.append(1))
    jobs.go.clear()
    dlg._accept()
    dlg.reject()                                   # Esc while the save is on its way: ignored
    assert closed == [] and dlg.saving
    jobs.go.set()
    qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
    assert jobs.saved == [dlg.routing()] and dlg.removed == 0 and dlg.removal_error == "disk full"


def test_no_folder_no_proposal(qtbot):
    dlg = RoutingDialog(None, jobs=_Jobs(), folder_id=None)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy)
    assert not dlg.propose_button.isEnabled() and dlg.clear_answers.isHidden()


def test_the_menu_action_saves_through_the_jobs_service_and_says_so(qtbot, monkeypatch):
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QMainWindow

    from app.gui import routing_dialog

    edited = Routing((RoutingRule("ir/*", ("segmenter",)),))

    def exec_(dlg):  # the user waits for the rules, edits and presses OK; the save lands
        qtbot.waitUntil(lambda: not dlg.calls.busy)
        dlg.add_rule(edited.rules[0])
        dlg._accept()
        qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
        return dlg.result()

    monkeypatch.setattr(routing_dialog.RoutingDialog, "exec", exec_)
    win = QMainWindow()
    qtbot.addWidget(win)
    jobs = _Jobs()
    win.ctx = type("Ctx", (), {"jobs": jobs})()
    win.actions = {"model_routing": QAction("Model routing…", win)}
    win.current_folder = 3
    win.project = None  # the MainWindow declares it: no project settings controller in this test
    routing_dialog.install(win)
    win.actions["model_routing"].trigger()
    assert jobs.saved == [edited] and "saved" in win.statusBar().currentMessage()


def test_in_the_station_a_proposal_saved_with_its_answers_removed_clears_the_stale_out_of_domain_badges(
        service, db, tmp_path, qtbot, monkeypatch):
    """As seen under Xvfb: a folder of ir/ and tiles/ pre-labelled without routing, every image badged
    "out of domain" by the models of the other line; Propose, OK: the badges go, the routed answers stay."""
    from app.gui import routing_dialog
    from app.services.flags import OUT_OF_DOMAIN
    from database.dto import ImageQuery, PredictionIn
    from tests.gui.conftest import wait_shown
    from tests.gui.fixtures import make_folder
    from tests.gui.test_jobs_panel import _jobs_window

    root = tmp_path / "line"
    make_folder(root / "ir", 3)
    make_folder(root / "tiles", 3)
    info = service.open_folder(root)
    v = {f: db.model_versions.register(f, f"{f}-x", "/nowhere", activate=True)
         for f in ("classifier", "segmenter", "anomaly")}
    fits = {"ir": "segmenter", "tiles": "anomaly"}
    rows, images = [], db.images.query(ImageQuery(folder_id=info.id))
    for im in images:
        for family, version in v.items():
            inside = fits[im.rel_path.split("/")[0]] == family
            rows.append(PredictionIn(im.id, version.id, target_count=1 if family == "segmenter" else None,
                                     anomaly_score=0.1 if family == "anomaly" else None,
                                     in_domain=0.9 if inside else 0.0, flags=() if inside else (OUT_OF_DOMAIN,)))
    db.predictions.upsert_many(rows)
    db.images.set_flagged([im.id for im in images], True)

    win = _jobs_window(service, db, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    try:
        assert all(it.out_of_domain for it in win.gallery_model.items())

        def exec_(dlg):  # the inspector proposes, reads the evidence and presses OK
            qtbot.waitUntil(lambda: not dlg.calls.busy)
            dlg.propose()
            qtbot.waitUntil(lambda: dlg.evidence.text() != "")
            dlg._accept()
            qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted)
            return dlg.result()

        monkeypatch.setattr(routing_dialog.RoutingDialog, "exec", exec_)
        before = {j.id for j in db.jobs.list()}
        win.actions["model_routing"].trigger()
        # the proposal's rules are for this folder: "then pre-label" was ticked with them and its job submitted
        qtbot.waitUntil(lambda: any(j.id not in before and j.kind == "prelabel" for j in db.jobs.list()), timeout=10000)
        qtbot.waitUntil(lambda: not any(it.out_of_domain for it in win.gallery_model.items()), timeout=10000)
        assert [(r.pattern, r.families) for r in win.ctx.jobs.routing().rules] == [
            ("line/ir/*", ("segmenter",)), ("line/tiles/*", ("anomaly",))]
        win.queue_panel.out_of_domain.setChecked(True)
        qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 0)
    finally:
        win.close()


def test_a_family_cell_names_the_version_that_runs_there(qtbot):
    from PySide6.QtWidgets import QComboBox
    tiles = RoutingRule("tiles/*", ("classifier", "anomaly"), (("classifier", "classifier-tile"),))
    jobs = _Jobs(Routing((tiles,)))
    jobs.versions = {"classifier": ["classifier-neu", "classifier-tile"], "segmenter": [],
                     "anomaly": ["anomaly-magnetic_tile"]}
    dlg = RoutingDialog(None, jobs=jobs)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1 and bool(dlg.versions))
    assert dlg.routing() == Routing((tiles,))
    assert [dlg.table.item(0, c).text() for c in (1, 2, 3)] == ["classifier-tile", "", "active version"]
    dlg.table.editItem(dlg.table.item(0, 3))   # double-click: the anomaly cell's versions
    box = dlg.table.findChild(QComboBox)
    assert [box.itemText(i) for i in range(box.count())] == ["active version", "anomaly-magnetic_tile"]
    box.setCurrentIndex(1)
    index = dlg.table.model().index(0, 3)
    dlg.table.itemDelegateForColumn(3).setModelData(box, dlg.table.model(), index)
    dlg.table.itemDelegateForColumn(3).closeEditor.emit(box)   # as leaving the cell does
    qtbot.waitUntil(lambda: dlg.table.findChild(QComboBox) is None)
    assert dlg.routing().rules[0].named == {"classifier": "classifier-tile", "anomaly": "anomaly-magnetic_tile"}
    dlg.table.item(0, 1).setCheckState(Qt.CheckState.Unchecked)   # the classifier off: its name goes with it
    assert dlg.routing().rules[0] == RoutingRule("tiles/*", ("anomaly",), (("anomaly", "anomaly-magnetic_tile"),))
    assert dlg.table.item(0, 1).text() == ""
    dlg.table.editItem(dlg.table.item(0, 2))   # choosing a version for an unticked family ticks it
    box = dlg.table.findChild(QComboBox)
    assert [box.itemText(i) for i in range(box.count())] == ["active version"]
    dlg.table.itemDelegateForColumn(2).setModelData(box, dlg.table.model(), dlg.table.model().index(0, 2))
    assert dlg.routing().rules[0].families == ("segmenter", "anomaly")
    assert dlg.table.item(0, 2).text() == "active version"
    dlg.table.item(0, 2).setCheckState(Qt.CheckState.Unchecked)
    dlg._accept()
    qtbot.waitUntil(lambda: bool(jobs.saved))
    assert jobs.saved[0].rules[0].named == {"anomaly": "anomaly-magnetic_tile"}


def test_ok_over_rules_saved_at_another_station_meanwhile_is_refused_then_saves_on_a_second_ok(tmp_path, qtbot):
    """Found by a session-44 probe (two stations, one SQLite file): station B opened Model routing with no rules;
    station A saved ``ir/*``; B added ``steel/*`` and pressed OK: A's rule was gone, and nothing was said. Now the
    OK is refused, the line names the rules stored now, and B's edits stay; a second OK saves them knowingly."""
    from app.services.project_settings import load_project_settings, save_routing
    from app.services.review_jobs import ReviewJobs
    from database import open_database
    url = f"sqlite:///{(tmp_path / 'shared.sqlite').as_posix()}"
    a, b = open_database(url), open_database(url)
    dlg = RoutingDialog(None, jobs=ReviewJobs(b, url))
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: not dlg.calls.busy, timeout=5000)
    save_routing(a, Routing((RoutingRule("ir/*", ("anomaly",)),)), by="alice")
    dlg.add_rule(RoutingRule("steel/*", ("classifier",)))
    dlg._accept()
    qtbot.waitUntil(lambda: "Not saved" in dlg.error.text(), timeout=5000)
    assert "changed at another station" in dlg.error.text() and "ir/* → anomaly" in dlg.error.text()
    assert [r.pattern for r in load_project_settings(a).routing.rules] == ["ir/*"]
    assert dlg.result() != QDialog.DialogCode.Accepted and [r.pattern for r in dlg.routing().rules] == ["steel/*"]
    dlg._accept()
    qtbot.waitUntil(lambda: dlg.result() == QDialog.DialogCode.Accepted, timeout=5000)
    assert [r.pattern for r in load_project_settings(a).routing.rules] == ["steel/*"]
    a.close()
    b.close()


def test_tab_leaves_the_rules_table(qtbot):
    """Before (a session-49 audit): Tab moved from cell to cell and never left the table, so a keyboard user could not
    reach the buttons or OK at all."""
    dlg = RoutingDialog(Routing((RoutingRule("ir/*", ("segmenter",)), RoutingRule("steel/*", ("classifier",)))))
    qtbot.addWidget(dlg)
    assert tab_leaves(qtbot, dlg.table)
