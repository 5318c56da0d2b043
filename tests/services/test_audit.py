"""The audit export: one row per decision with who, when, the part, the model shown and the change."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.cli import main
from app.services.audit import write_audit
from app.services.flags import FlagSettings, FolderThreshold
from app.services.indexing import index_folder
from app.services.project_settings import save_flag_settings
from app.services.trace import TraceRule, change_trace_rule
from database.dto import LabelChange, PredictionIn
from database.engine import open_database
from database.states import AnomalyVerdict, LabelSource, ReviewState

PATTERN = r"(?P<lot>L\d+)/(?P<serial>SN\d+)"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def project(tmp_path: Path):
    """A folder of two parts with a trace rule, an anomaly model's predictions and three decisions."""
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = open_database(url)
    root = tmp_path / "parts"
    for name in ("L1/SN1.png", "L2/SN2.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    change_trace_rule(db, TraceRule(pattern=PATTERN))
    folder_id = index_folder(db, root).folder_id
    ids = {p: i for page in db.images.trace_rows(folder_id) for i, p, _ in page}
    version = db.model_versions.register("anomaly", "patchcore-v2", str(tmp_path / "m"),
                                         card={"threshold": {"image": 0.5}})
    db.predictions.upsert_many([PredictionIn(image_id=ids["L1/SN1.png"], model_version_id=version.id,
                                             anomaly_score=0.9)])
    [pred] = db.predictions.for_image(ids["L1/SN1.png"])
    db.labels.append(ids["L1/SN1.png"], LabelChange(ReviewState.ACCEPTED, anomaly_verdict=AnomalyVerdict.ANOMALOUS,
                                                    from_prediction_id=pred.id), "ann")
    db.labels.append(ids["L1/SN1.png"], LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict.NORMAL,
                                                    note="glare"), "bob")
    db.labels.append(ids["L2/SN2.png"], LabelChange(ReviewState.CORRECTED, class_name="scratch",
                                                    source=LabelSource.LABEL_NEXT), "ann")
    save_flag_settings(db, FlagSettings(folder_thresholds=(FolderThreshold(folder_id, version.id, 0.7),)))
    db.close()
    return url, root


def test_audit_command_writes_every_decision_with_part_model_and_change(project, tmp_path: Path, capsys) -> None:
    url, _ = project
    out = tmp_path / "audit.csv"
    db = open_database(url)
    version = db.model_versions.register("classifier", "steel-v1", "/m")
    db.model_versions.change_active(version.id, "dee")
    db.close()
    assert main(["audit", "--db", url, "--out", str(out)]) == 0
    # counted apart: "4 decisions" counted the model change as a label decision (a session-47 audit)
    assert capsys.readouterr().out.strip() == f"3 label decisions and 1 model change written to {out}"
    rows = [r for r in _read(out) if r["image"]]
    assert [(r["who"], r["image"], r["revision"]) for r in rows] == [
        ("ann", "L1/SN1.png", "1"), ("bob", "L1/SN1.png", "2"), ("ann", "L2/SN2.png", "1")]
    first, second, third = rows
    assert (first["serial"], first["lot"], first["station"]) == ("SN1", "L1", "")
    assert (first["state"], first["verdict"], first["model_family"], first["model_version"]) == (
        "accepted", "anomalous", "anomaly", "patchcore-v2")
    assert float(first["threshold_now"]) == 0.7  # the folder's own threshold for that version
    assert first["changed"] == "verdict: — → anomalous; state: unreviewed → accepted"
    assert second["changed"] == "verdict: anomalous → normal; state: accepted → corrected"
    assert (second["model_version"], second["threshold_now"], second["note"]) == ("", "", "glare")
    assert third["changed"] == "class: — → scratch; state: unreviewed → corrected"
    assert (first["source"], third["source"]) == ("", "label_next")  # saved on a "label next" proposal
    assert first["when"] <= second["when"]
    # the folder's path beside its name (two folders of one name gave rows no reader could tell apart; a session-46
    # probe)
    import sqlite3
    root = sqlite3.connect(url.removeprefix("sqlite:///")).execute("SELECT root_path FROM folders").fetchone()[0]
    assert all(r["folder_path"] == root for r in rows)


def test_audit_of_one_folder_and_bad_destinations(project, tmp_path: Path, capsys) -> None:
    url, root = project
    out = tmp_path / "one.csv"
    assert main(["audit", "--db", url, "--out", str(out), "--folder", str(root)]) == 0
    assert len(_read(out)) == 3
    assert main(["audit", "--db", url, "--out", str(out), "--folder", "nowhere"]) == 2
    assert "no indexed folder 'nowhere'" in capsys.readouterr().err
    assert main(["audit", "--db", url, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert len(_read(out)) == 3  # the earlier audit is untouched


def test_audit_streams_in_pages(project) -> None:
    from database.audit import audit_records
    url, _ = project
    db = open_database(url)
    try:
        assert [(r.rel_path, r.revision) for r in audit_records(db, page=1)] == [
            ("L1/SN1.png", 1), ("L1/SN1.png", 2), ("L2/SN2.png", 1)]
    finally:
        db.close()


def test_an_audit_interrupted_midway_leaves_no_half_file(tmp_path: Path, monkeypatch) -> None:
    """Found by a session-44 CLI probe: Ctrl+C during ``audit`` left ``audit.csv.partial`` holding half the rows (only
    an OSError removed it)."""
    from app.services import audit
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")

    def rows_then_ctrl_c(*_args, **_kwargs):
        yield from ()
        raise KeyboardInterrupt
    monkeypatch.setattr(audit, "audit_records", rows_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        audit.write_audit(db, tmp_path / "audit.csv", None, FlagSettings())
    assert list(p.name for p in tmp_path.iterdir() if p.name.startswith("audit")) == []
    db.close()


def test_a_decision_keeps_its_model_once_the_prediction_row_has_gone(project, tmp_path: Path) -> None:
    """Found by a session-44 probe: the audit read a decision's model through its prediction row; once that row went
    (the file re-indexed as changed, the routing clean-up), the decision read as made without a model. The revision
    keeps the model version itself (migration 0018), and a revert to it keeps it too."""
    url, root = project
    db = open_database(url)
    (root / "L1" / "SN1.png").write_bytes(b"the part re-shot")
    index_folder(db, root)  # the old picture's answers are dropped
    image = next(im.id for im in db.images.query() if im.rel_path == "L1/SN1.png")
    db.labels.revert(image, 1, "cy")
    db.close()
    out = tmp_path / "audit.csv"
    assert main(["audit", "--db", url, "--out", str(out)]) == 0
    rows = [r for r in _read(out) if r["image"] == "L1/SN1.png"]
    assert rows[0]["model_version"] == "patchcore-v2" and rows[-1]["model_version"] == "patchcore-v2"


def test_the_windows_restore_of_a_revision_keeps_its_model(project, tmp_path: Path) -> None:
    """A session-47 audit: the window's restore (ReviewService.revision_label, then save) of a decision whose
    prediction row had gone read as made without a model in the audit, where db.labels.revert kept it."""
    from app.services.review import ReviewService, ReviewSettings
    url, root = project
    db = open_database(url)
    (root / "L1" / "SN1.png").write_bytes(b"the part re-shot")
    index_folder(db, root)  # the old picture's answers are dropped
    image = next(im.id for im in db.images.query() if im.rel_path == "L1/SN1.png")
    review = ReviewService(db, ReviewSettings(reviewer="cy"))
    review.save(image, review.revision_label(image, 1), "restored revision 1")
    db.close()
    out = tmp_path / "audit.csv"
    assert main(["audit", "--db", url, "--out", str(out)]) == 0
    rows = [r for r in _read(out) if r["image"] == "L1/SN1.png"]
    assert rows[-1]["note"] == "restored revision 1" and rows[-1]["model_version"] == "patchcore-v2"


def test_a_text_cell_starting_like_a_formula_is_written_as_text(tmp_path: Path) -> None:
    """A session-51 audit: an author, class, note, file name, serial or model version starting with = + - @ was
    written as it was, and a spreadsheet opened "=HYPERLINK(...)" as a live formula; such a cell now starts with a
    quote (shown as text), while the numbers the station writes (revision, threshold) stay numbers."""
    root = tmp_path / "parts"
    root.mkdir()
    (root / "=x.png").write_bytes(b"x")
    (root / "trace.csv").write_text('file,serial,lot,station\n=x.png,=1+2,@SUM(A1),-3+4\n', encoding="utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    change_trace_rule(db, TraceRule(use_csv=True))
    folder_id = index_folder(db, root).folder_id
    [image] = db.images.query()
    version = db.model_versions.register("anomaly", "-v1", str(tmp_path / "m"))
    db.predictions.upsert_many([PredictionIn(image_id=image.id, model_version_id=version.id, anomaly_score=-0.1)])
    [pred] = db.predictions.for_image(image.id)
    db.labels.append(image.id, LabelChange(ReviewState.CORRECTED, class_name="=HYPERLINK(\"http://x\",\"y\")",
                                           note="+note", from_prediction_id=pred.id), "=evil()")
    db.model_versions.change_active(version.id, "@ann")
    out = tmp_path / "audit.csv"
    write_audit(db, out, None, FlagSettings(folder_thresholds=(FolderThreshold(folder_id, version.id, -0.25),)))
    db.close()
    label, change = _read(out)
    assert (label["who"], label["image"], label["class"], label["note"]) == (
        "'=evil()", "'=x.png", "'=HYPERLINK(\"http://x\",\"y\")", "'+note")
    assert (label["serial"], label["lot"], label["station"]) == ("'=1+2", "'@SUM(A1)", "'-3+4")
    assert (label["revision"], label["threshold_now"], label["model_version"]) == ("1", "-0.25", "'-v1")  # a number
    assert (change["who"], change["model_version"]) == ("'@ann", "'-v1")
    assert change["changed"] == "active: — → -v1 (activate)"  # not at the cell's start: a text, written as it is


def test_the_audit_starts_with_a_byte_order_mark(project, tmp_path: Path) -> None:
    """A session-51 audit: without a byte-order mark Excel on a Western Windows read the audit as cp1252, and every
    "—" / "→" of the changed column showed as "â€”" / "â†’"; the file now starts with UTF-8's mark, and a reader
    that takes it (utf-8-sig, as the station's readers do) gets the columns and the text as they were."""
    url, _ = project
    out = tmp_path / "audit.csv"
    assert main(["audit", "--db", url, "--out", str(out)]) == 0
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfwhen,who,")
    assert raw.count(b"\xef\xbb\xbf") == 1 and "→".encode() in raw
    assert _read(out)[0]["changed"] == "verdict: — → anomalous; state: unreviewed → accepted"


def test_inspectors_flag_decisions_are_listed_after_the_label_decisions(project, tmp_path: Path, capsys) -> None:
    """A session-51 audit: an inspector's flag (F, its undo and redo) overwrote the image's flag in place and the
    audit listed only label decisions and model activations, so a quality engineer could not tell who sent a part
    for a second look, or who cleared it, and when. Each decision is now a row after the label decisions, in the
    order written, with its image and folder, and a folder's audit lists its own only."""
    from app.services.review import ReviewService, ReviewSettings
    from app.services.review_types import FlagDecision

    url, root = project
    db = open_database(url)
    ids = {p: i for f in db.folders.list() for page in db.images.trace_rows(f.id) for i, p, _ in page}
    other = tmp_path / "other"
    other.mkdir()
    (other / "=x.png").write_bytes(b"x")
    other_id = index_folder(db, other).folder_id
    [(other_image, _, _)] = next(iter(db.images.trace_rows(other_id)))
    ann = ReviewService(db, ReviewSettings(reviewer="ann"))
    bob = ReviewService(db, ReviewSettings(reviewer="bob"))
    sn1 = ids["L1/SN1.png"]
    models = FlagDecision.of(ann.item(sn1))
    ann.set_flag(sn1, True)                     # F: a second look
    before_bob = FlagDecision.of(bob.item(sn1))
    bob.set_flag(sn1, False)                    # F again, by another inspector
    bob.put_flag(sn1, before_bob)               # bob's undo: ann's flag back
    ann.put_flag(sn1, models)                   # and hers: the models' flag again
    bob.set_flag(other_image, True)
    db.close()
    out = tmp_path / "audit.csv"
    assert main(["audit", "--db", url, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"3 label decisions and 5 flag decisions written to {out}"
    rows = _read(out)
    assert [r["changed"] for r in rows[:3]] == [
        "verdict: — → anomalous; state: unreviewed → accepted", "verdict: anomalous → normal; state: accepted → corrected",
        "class: — → scratch; state: unreviewed → corrected"]
    flags = [(r["who"], r["image"], r["changed"]) for r in rows[3:]]
    assert flags == [("ann", "L1/SN1.png", "flag: flagged (inspector)"), ("bob", "L1/SN1.png", "flag: cleared (inspector)"),
                     ("bob", "L1/SN1.png", "flag: flagged (inspector)"),
                     ("ann", "L1/SN1.png", "flag: handed back to the models"),
                     ("bob", "'=x.png", "flag: flagged (inspector)")]   # a text cell, kept from being a formula
    assert all(r["when"] and r["folder"] and r["folder_path"] for r in rows[3:])
    assert [r["when"] for r in rows[3:]] == sorted(r["when"] for r in rows[3:])
    assert (rows[3]["folder_path"], rows[-1]["folder_path"]) == (str(root), str(other))
    assert main(["audit", "--db", url, "--out", str(out), "--folder", str(other)]) == 0
    assert capsys.readouterr().out.strip() == f"0 label decisions and 1 flag decision written to {out}"
    assert [(r["who"], r["changed"]) for r in _read(out)] == [("bob", "flag: flagged (inspector)")]
