"""Traceability: which part (serial), lot and station each picture shows.

Why per project, in the database: every station and the audit export must agree on which part
an image is, so the rule lives with the project settings (``trace`` key). A rule has two
sources, either or both:

* ``pattern``: a regular expression with named groups ``serial``, ``lot`` and/or ``station``,
  searched in the image's path inside its folder ('/'-separated), e.g.
  ``(?P<lot>L\\d+)/(?P<serial>SN\\d+)_(?P<station>st\\d)``;
* ``use_csv``: a sidecar ``trace.csv`` at the top of the folder with columns
  ``file,serial,lot,station`` (``file`` is the path inside the folder); a value it gives wins
  over the pattern's.

The fields are stored per image at indexing and re-applied to every folder when the rule
changes (``change_trace_rule``: slow on a big project, call it off the GUI thread). Every label
revision records the trace of its image at the time it was saved. Qt-free.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.services.csv_rows import strict_rows
from app.services.wording import agree, plural
from database.labels import TRACE_FIELDS

if TYPE_CHECKING:
    from database.engine import Database

TRACE = "trace"                      # project settings key
CSV_NAME = "trace.csv"
CSV_COLUMNS = ("file", *TRACE_FIELDS)
MAX_CSV_BYTES = 64 * 1024 * 1024     # a million rows of short names fit; a larger file is refused
MAX_PATTERN = 1000                   # characters of a pattern
MAX_VALUE = 255                      # characters of one field (the column's width)
MAX_PROBLEMS = 20                    # bad CSV rows named in a report (the count covers all)

Trace = tuple[str | None, str | None, str | None]  # (serial, lot, station)
NO_TRACE: Trace = (None, None, None)


class TraceRuleError(ValueError):
    """A trace rule that cannot be used, in one sentence for the user."""


class TraceCsvError(ValueError):
    """A trace.csv that cannot be read at all (too big, not text, no header), with the reason."""


@dataclass(frozen=True)
class TraceRule:
    """Plain data: how a project reads serial/lot/station. Empty: no trace."""

    pattern: str = ""
    use_csv: bool = False

    def __post_init__(self) -> None:
        compiled_pattern(self.pattern)  # raises TraceRuleError with the reason

    @property
    def active(self) -> bool:
        return bool(self.pattern) or self.use_csv

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "use_csv": self.use_csv}

    @classmethod
    def from_dict(cls, data: Any) -> TraceRule:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise TraceRuleError(f"a trace rule must be an object, not {data!r}")
        pattern, use_csv = data.get("pattern", ""), data.get("use_csv", False)
        if not isinstance(pattern, str):
            raise TraceRuleError("the trace pattern must be text")
        if not isinstance(use_csv, bool):
            raise TraceRuleError("the trace rule's use_csv must be true or false")
        return cls(pattern=pattern, use_csv=use_csv)


def compiled_pattern(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled, or TraceRuleError saying what is wrong with it (None: no pattern)."""
    if not pattern:
        return None
    if len(pattern) > MAX_PATTERN:
        raise TraceRuleError(f"the trace pattern is longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise TraceRuleError(f"the trace pattern is not a valid regular expression: {exc}") from None
    names = set(compiled.groupindex)
    if not names & set(TRACE_FIELDS):
        raise TraceRuleError("the trace pattern needs at least one named group: "
                             "(?P<serial>…), (?P<lot>…) or (?P<station>…)")
    unknown = sorted(names - set(TRACE_FIELDS))
    if unknown:
        said = "unknown group name" if len(unknown) == 1 else "unknown group names"
        raise TraceRuleError(f"the trace pattern has {said} {', '.join(unknown)}; "
                             "use serial, lot and station")
    return compiled


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:MAX_VALUE] or None


def parse_name(pattern: re.Pattern[str] | None, rel_path: str) -> Trace:
    """The trace the pattern finds in a folder-relative path (NO_TRACE when it does not match)."""
    if pattern is None:
        return NO_TRACE
    found = pattern.search(rel_path.replace("\\", "/"))
    if found is None:
        return NO_TRACE
    groups = found.groupdict()
    serial, lot, station = (_clean(groups.get(name)) for name in TRACE_FIELDS)
    return serial, lot, station


@dataclass(frozen=True)
class CsvTraces:
    rows: dict[str, Trace]                   # file -> trace
    problems: tuple[str, ...] = ()           # the first MAX_PROBLEMS bad rows, each with its line
    bad_rows: int = 0


def parse_trace_csv(text: str) -> CsvTraces:
    """Rows of a trace.csv; bad rows (missing file, wrong column count, duplicate file, value
    too long) are left out and named with their line number; the good ones are kept."""
    # strict: a quote left open ran to the end of the file as one value, every later row lost without a word
    # (a session-46 probe)
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise TraceCsvError(f"{CSV_NAME}, line {reader.line_num}: {exc}") from None
    if header is None:
        raise TraceCsvError(f"{CSV_NAME} is empty (expected the header {','.join(CSV_COLUMNS)})")
    header = [h.strip().lower() for h in header]
    if "file" not in header or not set(header) & set(TRACE_FIELDS):
        raise TraceCsvError(f"{CSV_NAME}'s first line must name the columns file and serial, lot and/or "
                            f"station (got {','.join(header)[:200]})")
    where = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    rows: dict[str, Trace] = {}
    problems: list[str] = []
    bad = 0

    def refuse(line: int, why: str) -> None:
        nonlocal bad
        bad += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"line {line}: {why}")

    for record in strict_rows(reader, lambda text: TraceCsvError(f"{CSV_NAME}, {text}; nothing was read from it")):
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if any("\n" in record[i] or "\r" in record[i] for i in where.values() if i < len(record)):
            refuse(line, "a value holds a line break (a quote left open?)")
            continue
        if len(record) != len(header):
            refuse(line, f"{len(record)} values for {len(header)} columns")
            continue
        name = row_key(record[where["file"]].strip())  # before the duplicate check: "./a.png" is "a.png"
        if not name:
            refuse(line, "no file name")
            continue
        if name in rows:
            refuse(line, f"{name} is listed twice (the first row is used)")
            continue
        values = [record[where[f]].strip() if f in where else "" for f in TRACE_FIELDS]
        if any(len(v) > MAX_VALUE for v in values):
            refuse(line, f"a value longer than {MAX_VALUE} characters")
            continue
        serial, lot, station = (v or None for v in values)
        rows[name] = (serial, lot, station)
    return CsvTraces(rows, tuple(problems), bad)


def read_trace_csv(folder: str | Path) -> CsvTraces | None:
    """The folder's trace.csv (None when it has none); TraceCsvError when it cannot be read."""
    path = Path(folder) / CSV_NAME
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise TraceCsvError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CSV_BYTES:
        raise TraceCsvError(f"{path}: larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB, not read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TraceCsvError(f"{path}: not UTF-8 text") from None
    try:
        return parse_trace_csv(text)
    except csv.Error as exc:
        raise TraceCsvError(f"{path}: {exc}") from None


def merge(name: Trace, sidecar: Trace | None) -> Trace:
    """A field the sidecar CSV gives wins over the one the pattern found."""
    if sidecar is None:
        return name
    serial, lot, station = (s or n for s, n in zip(sidecar, name))
    return serial, lot, station


def load_trace_rule(db: Database) -> TraceRule:
    """The project's trace rule (empty when never set; TraceRuleError when the stored one is broken)."""
    return TraceRule.from_dict(db.project_settings.get(TRACE))


@dataclass(frozen=True)
class TraceReport:
    images: int = 0               # images looked at
    traced: int = 0               # images with at least one field
    updated: int = 0              # images whose stored trace changed
    problems: tuple[str, ...] = field(default=())  # why some of the trace could not be read

    def summary(self, changes: bool = False) -> str:
        """One line; ``changes``: with how many images' trace it changed (a new rule's re-read)."""
        text = (f"trace: {self.traced} of {plural(self.images, 'image')} {agree(self.traced, 'has', 'have')} a serial, lot or station"
                + (f" ({self.updated} changed)" if changes and self.updated else ""))
        return text + (f"; {plural(len(self.problems), 'problem')}: " + "; ".join(self.problems[:3]) if self.problems else "")


def apply_trace_rule(db: Database, folder_id: int, rule: TraceRule | None = None) -> TraceReport:
    """Compute every image's trace in a folder from the rule and store what changed.

    A trace.csv that cannot be read, or bad rows in it, are reported and the rest applied (the
    pattern still applies); nothing else is touched. Reads and writes in pages.
    """
    rule = load_trace_rule(db) if rule is None else rule
    folder = db.folders.get(folder_id)
    if folder is None:
        return TraceReport()
    pattern = compiled_pattern(rule.pattern)
    sidecar: dict[str, Trace] = {}
    problems: list[str] = []
    if rule.use_csv:
        try:
            read = read_trace_csv(folder.root_path)
        except TraceCsvError as exc:
            read, problems = None, [str(exc)]
        if read is None and not problems:
            problems.append(f"{folder.name} has no {CSV_NAME}")
        if read is not None:
            sidecar = read.rows  # keyed by ``row_key`` already
            problems += [f"{CSV_NAME} {p}" for p in read.problems]
            if read.bad_rows > len(read.problems):
                problems.append(f"{CSV_NAME}: {plural(read.bad_rows - len(read.problems), 'more bad row')}")
    images = traced = updated = 0
    unused = set(sidecar)
    for page in db.images.trace_rows(folder_id):
        changes: dict[int, Trace] = {}
        for image_id, rel_path, stored in page:
            key = row_key(rel_path)
            unused.discard(key)
            new = merge(parse_name(pattern, rel_path), sidecar.get(key))
            images += 1
            traced += any(new)
            if new != tuple(stored):
                changes[image_id] = new
        db.images.set_traces(changes)
        updated += len(changes)
    if unused:  # a row that matches no image was ignored in silence (a session-44 probe: "./Part_2.png")
        problems.append(f"{CSV_NAME}: {plural(len(unused), 'row')} {agree(len(unused), 'names', 'name')} no "
                        f"image of {folder.name}, e.g. "
                        + ", ".join(sorted(unused)[:3]))
    return TraceReport(images, traced, updated, tuple(problems))


def row_key(name: str) -> str:
    """A file name as trace.csv rows and indexed images are matched: '/' separated, no leading './', Unicode in one
    composed form (a name copied from a Mac is stored decomposed, one typed in a spreadsheet composed)."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/"))
    while name.startswith("./"):
        name = name[2:]
    return name


def change_trace_rule(db: Database, rule: TraceRule, by: str | None = None) -> list[TraceReport]:
    """Store a new rule and re-apply it to every folder (off the GUI thread on a big project)."""
    db.project_settings.put(TRACE, rule.to_dict(), by=by)
    return [apply_trace_rule(db, f.id, rule) for f in db.folders.list()]


def preview(rule_pattern: str, names: Iterable[str]) -> list[tuple[str, Trace]]:
    """What a pattern (not saved yet) finds in some names: the Settings dialog's live preview.
    Raises TraceRuleError for a pattern that cannot be used."""
    pattern = compiled_pattern(rule_pattern)
    return [(name, parse_name(pattern, name)) for name in names]
