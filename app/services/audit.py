"""The audit export: one CSV row per saved decision, for quality records and customer audits.

Each row says who decided what, when, on which part (serial/lot/station as recorded in the
revision, i.e. at the time), which model version's prediction was shown, and what changed from
the previous revision of that image (``class: ok → scratch``). Rows are written as they are read
(bounded memory), into a temporary file moved into place at the end, so a failed export never
leaves half a file under the requested name. The file is UTF-8 with a byte-order mark, so that a spreadsheet reads
its "—" and "→" (and accents) as they are.

Changes of a family's active model version (promote, roll back, activate: ``model_activations``; and
promotions in routing rules, 'route', ADR 0060) follow the label decisions, one row each, with the
folder and image columns empty: they apply to every folder from that moment on, so a folder's audit
lists them too.

Inspectors' flag decisions (F, its undo and redo: ``flag_decisions``) follow those, one row each in the order they
were written, with the folder and image (a folder's audit lists its own only) and ``changed`` "flag: flagged
(inspector)", "flag: cleared (inspector)" or "flag: handed back to the models": the image kept only its latest
decision, so no one could tell who sent a part for a second look or cleared it, and when (a session-51 audit).

The threshold column is the threshold configured *now* for the row's folder and model version
(the anomaly threshold, or the classifier's minimum confidence): the station keeps no history
of thresholds, and the column's name says so.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from app.services.csv_rows import formula_safe_row
from app.services.flags import FlagSettings
from app.services.reflag import card_threshold
from app.services.wording import plural
from database.audit import AuditRecord, FlagAuditRecord, audit_records, flag_audit_records
from database.dto import ModelActivationInfo
from database.labels import TRACE_FIELDS

if TYPE_CHECKING:
    from database.engine import Database

AUDIT_COLUMNS = ("when", "who", "folder", "image", "revision", *TRACE_FIELDS, "state", "class", "verdict",
                 "model_family", "model_version", "threshold_now", "changed", "note", "source", "folder_path")
# The columns holding numbers the station writes; every other cell is text, kept from being a formula (a
# session-51 audit: an author or class "=HYPERLINK(...)" was a live link in a spreadsheet).
AUDIT_NUMBERS = ("revision", "threshold_now")
# The label fields whose before → after the "changed" column spells out.
SPELLED = (("state", "review_state"), ("class", "class_name"), ("verdict", "anomaly_verdict"))


class AuditError(Exception):
    """An audit that cannot be written (destination), in one sentence for the user."""


@dataclass(frozen=True)
class AuditResult:
    rows: int
    path: Path
    model_changes: int = 0  # of ``rows``: changes of the active model versions
    flag_decisions: int = 0  # of ``rows``: inspectors' flag decisions (the rest are label decisions)

    def text(self) -> str:
        """What was written, each kind counted ("7 decisions" counted two model changes as label decisions: a
        session-47 audit)."""
        labels = self.rows - self.model_changes - self.flag_decisions
        others = [plural(n, what) for n, what in ((self.model_changes, "model change"),
                                                  (self.flag_decisions, "flag decision")) if n]
        return (", ".join([plural(labels, "label decision"), *others[:-1]])
                + (f" and {others[-1]}" if others else "") + f" written to {self.path}")


def threshold_now(record: AuditRecord, flags: FlagSettings) -> float | None:
    """The threshold the record's model version has today in the record's folder."""
    if record.model_family == "anomaly":
        own = flags.for_folder(record.folder_id, record.model_version_id).anomaly_threshold
        return own if own is not None else card_threshold(record.model_card or {})
    if record.model_family == "classifier":
        return flags.min_confidence
    return None


def describe_change(record: AuditRecord, previous: AuditRecord | None) -> str:
    """What the revision changed: 'class: ok → scratch; mask' (masks are named, not shown)."""
    parts = []
    for name in record.changed:
        field = dict(SPELLED).get(name)
        if field is None:
            parts.append(name)
            continue
        before = getattr(previous, field) if previous is not None else None
        if field == "review_state" and previous is None:
            before = "unreviewed"
        parts.append(f"{name}: {before or '—'} → {getattr(record, field) or '—'}")
    return "; ".join(parts)


def audit_row(record: AuditRecord, previous: AuditRecord | None, flags: FlagSettings,
              roots: Mapping[int, str] | None = None) -> dict[str, object]:
    trace = record.trace if isinstance(record.trace, dict) else {}
    threshold = threshold_now(record, flags)
    return {
        "when": record.created_at.isoformat(), "who": record.author, "folder": record.folder,
        "image": record.rel_path, "revision": record.revision,
        **{name: trace.get(name) or "" for name in TRACE_FIELDS},
        "state": record.review_state, "class": record.class_name or "", "verdict": record.anomaly_verdict or "",
        "model_family": record.model_family or "", "model_version": record.model_version or "",
        "threshold_now": "" if threshold is None else threshold,
        "changed": describe_change(record, previous), "note": record.note or "",
        "source": record.source or "",   # "label_next": saved on a proposal of "label next" (ADR 0049)
        # the folder as a path too: two folders of one name (parts and other/parts) gave rows no reader could tell
        # apart (a session-46 probe)
        "folder_path": (roots or {}).get(record.folder_id, ""),
    }


def activation_row(a: ModelActivationInfo) -> dict[str, object]:
    """A change of the active model version as an audit row (who, when, from which version)."""
    row: dict[str, object] = {name: "" for name in AUDIT_COLUMNS}
    row.update({"when": a.created_at.isoformat(), "who": a.author, "model_family": a.family,
                "model_version": a.version_name, "note": a.note or "",
                "changed": (f"routed: {a.previous_name or '—'} → {a.version_name} (promote in routing rules)"
                            if a.action == "route" else f"active: {a.previous_name or '—'} → {a.version_name} ({a.action})")})
    return row


FLAG_CHANGES = {True: "flag: flagged (inspector)", False: "flag: cleared (inspector)",
                None: "flag: handed back to the models"}


def flag_row(f: FlagAuditRecord, roots: Mapping[int, str]) -> dict[str, object]:
    """An inspector's flag decision as an audit row (who, when, which image; the shape of ``activation_row``)."""
    row: dict[str, object] = {name: "" for name in AUDIT_COLUMNS}
    row.update({"when": f.created_at.isoformat(), "who": f.author or "", "folder": f.folder, "image": f.rel_path,
                "changed": FLAG_CHANGES[f.flagged], "folder_path": roots.get(f.folder_id, "")})
    return row


def write_audit(db: Database, out: str | os.PathLike[str], folder_id: int | None, flags: FlagSettings,
                progress: Callable[[int], None] | None = None) -> AuditResult:
    """Write every decision (of one folder, or all) to ``out`` as CSV; returns the row count."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise AuditError(f"{path} is a folder; give a file name, e.g. {path / 'audit.csv'}")
    if not path.parent.is_dir():
        raise AuditError(f"{path.parent}: folder not found")
    tmp = path.with_name(path.name + ".partial")
    rows = changes = flag_rows = 0
    try:
        # with a byte-order mark: the audit is handed to people who open it in a spreadsheet, and Excel on a Western
        # Windows read a file without one as cp1252, every "—" / "→" of `changed` shown as "â€”" / "â†’" (a session-51
        # audit); the station's own CSV readers (utf-8-sig) and pandas take the mark as it is
        with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=AUDIT_COLUMNS)
            writer.writeheader()
            previous: AuditRecord | None = None
            roots = {f.id: f.root_path for f in db.folders.list()}
            for record in audit_records(db, folder_id):
                same_image = previous is not None and previous.image_id == record.image_id
                writer.writerow(formula_safe_row(audit_row(record, previous if same_image else None, flags, roots),
                                                 AUDIT_NUMBERS))
                previous = record
                rows += 1
                if progress is not None and rows % 1000 == 0:
                    progress(rows)
            for activation in db.model_versions.activations():
                writer.writerow(formula_safe_row(activation_row(activation), AUDIT_NUMBERS))
                rows += 1
                changes += 1
            for decision in flag_audit_records(db, folder_id):
                writer.writerow(formula_safe_row(flag_row(decision, roots), AUDIT_NUMBERS))
                rows += 1
                flag_rows += 1
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AuditError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    except BaseException:  # Ctrl+C, SIGTERM, a database error: half the rows are no audit (a session-44 probe)
        tmp.unlink(missing_ok=True)
        raise
    return AuditResult(rows, path, changes, flag_rows)
