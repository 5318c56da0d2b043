"""Reading a label table: this station's ``summary.csv`` or any CSV with an image column and a class.

The station's own columns (``folder``, ``rel_path``, ``class``, ``anomaly_verdict``, ``state``,
``reviewed_at``) come back as they were written: an empty class or verdict clears it, the review
state and the review time are kept; ``sha256`` (the image's bytes, written since session 52) lets a row whose folder the
station lacks find its image by content, the table holding no copy of it. Other tables need one image column (``rel_path``,
``file_name``, ``filename``, ``image`` or ``path``, relative to the station's folder) and a ``class``
or ``label`` column. The CSV holds no masks: mask columns (``target_count``, region pixels) are
counts, not labels.

The station writes its text cells ``formula_safe`` (a quote before a class or file name starting with ``=``, ``+``,
``-``, ``@``: a session-51 audit); a table with every column of the station's ``summary.csv`` has that quote taken
off again, so an export reads back unchanged. Another tool's table is read as it is: a quote there is its own.
"""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from app.services.csv_rows import formula_unsafe, strict_rows
from app.services.export_formats import CSV_COLUMNS
from app.services.export_items import ANOMALY_ANOMALOUS, ANOMALY_NORMAL
from app.services.import_records import UNCHANGED, ImportRecord, LabelImportError, dataset_path, read_text
from database.states import ReviewState

IMAGE_COLUMNS = ("rel_path", "file_name", "filename", "image", "path")
CLASS_COLUMNS = ("class", "label")
IMPORTED_STATES = {s.value for s in ReviewState} - {ReviewState.UNREVIEWED.value}
# The columns every summary.csv of this station holds: its sha256 came in session 52, and an older export is still the
# station's own table.
OWN_COLUMNS = set(CSV_COLUMNS) - {"sha256"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def table_file(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "summary.csv").is_file():
        return root / "summary.csv"
    tables = sorted(root.glob("*.csv"))
    if len(tables) != 1:
        raise LabelImportError(f"{root}: expected summary.csv or exactly one .csv file "
                               f"(found {len(tables)})")
    return tables[0]


def cell(row: dict[str, Any], column: str | None) -> Any:
    """A column's value; an empty cell clears the field; a column the table lacks keeps it."""
    if column is None:
        return UNCHANGED
    value = (row.get(column) or "").strip()
    return value or None


def read(root: Path) -> list[ImportRecord]:
    path = table_file(root)
    # strict: a quote left open ran to the end of the file as one class name, every later row lost without a word
    # (a session-46 probe); a csv error (a cell over the module's limit) is said with its line, not a traceback
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise LabelImportError(f"{path}, line {reader.line_num}: {exc}") from None
    image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
    class_col = next((c for c in CLASS_COLUMNS if c in columns), None)
    verdict_col = "anomaly_verdict" if "anomaly_verdict" in columns else None
    if image_col is None or (class_col is None and verdict_col is None):
        raise LabelImportError(f"{path}: needs an image column ({', '.join(IMAGE_COLUMNS)}) and a "
                               f"class column ({', '.join(CLASS_COLUMNS)}); found {', '.join(columns) or 'none'}")
    read_columns = [c for c in (image_col, class_col, verdict_col, "state", "reviewed_at", "folder") if c]
    own_table = OWN_COLUMNS <= set(columns)  # this station's summary.csv: its text cells are formula_safe
    records = []
    for row in strict_rows(reader, lambda text: LabelImportError(f"{path}, {text}")):
        where = f"{path}, line {reader.line_num}"
        if None in row:
            raise LabelImportError(f"{where}: more cells than columns")
        if own_table:
            row = {c: formula_unsafe(v) if isinstance(v, str) else v for c, v in row.items()}
        # a line break in a cell this import reads (one in a notes column it does not read is that column's business)
        if any("\n" in v or "\r" in v for c in read_columns if isinstance(v := row.get(c), str)):
            raise LabelImportError(f"{where}: a cell holds a line break (a quote left open?)")
        ref = dataset_path(row.get(image_col), where)
        verdict = cell(row, verdict_col)
        if verdict not in (UNCHANGED, None, ANOMALY_NORMAL, ANOMALY_ANOMALOUS):
            raise LabelImportError(f"{where}: anomaly_verdict must be normal, anomalous or empty (got {verdict!r})")
        state = (row.get("state") or "").strip() or None
        if state is not None and state not in IMPORTED_STATES:
            raise LabelImportError(f"{where}: state must be one of {', '.join(sorted(IMPORTED_STATES))} (got {state!r})")
        when = None
        if (row.get("reviewed_at") or "").strip():
            try:
                when = datetime.fromisoformat(row["reviewed_at"].strip())
            except ValueError:
                raise LabelImportError(f"{where}: reviewed_at {row['reviewed_at']!r} is not an ISO 8601 time") from None
            try:
                if when.tzinfo is None:  # a tool's local time without its offset: read as this computer's (it was read
                    when = when.astimezone()  # as UTC, and a table older than a label here replaced it: a session-47 audit)
            except (ValueError, OverflowError):  # year 1 in a zone east of UTC: a traceback (a session-49 audit)
                raise LabelImportError(f"{where}: reviewed_at {row['reviewed_at']!r} is out of range") from None
        folder = (row.get("folder") or "").strip()
        digest = (row.get("sha256") or "").strip().lower() or None
        if digest is not None and not SHA256.fullmatch(digest):
            raise LabelImportError(f"{where}: sha256 must be 64 hexadecimal digits or empty (got {row['sha256']!r})")
        records.append(ImportRecord(
            label_file=path, image_ref=ref, origin=f"{folder}/{ref}" if folder and image_col == "rel_path" else None,
            # the full path first: two indexed folders of one name made 'folder/rel_path' ambiguous, and the station's
            # own CSV of them came back mostly unmatched (a session-46 probe)
            source_path=(row.get("path") or "").strip() or None if image_col != "path" else None, content_hash=digest,
            class_name=cell(row, class_col), anomaly_verdict=verdict, review_state=state, labelled_at=when))
    return records
