"""Rows of CSV files: those a person hands the station (a label table, a trace.csv), read strictly, and the text
cells of those the station writes (the audit, an export's summary.csv and trace.csv), kept from being formulas.

Why one home: Python's lenient reader takes a quote left open as a value running to the end of the file, so every
later row was lost without a word (a session-46 probe, in both readers). Here a malformed file is an error naming
its line, with a hint where the reader ran out of data inside a quote.

Why the writers' cells are guarded here too: a class, author, serial, note or file name starting with ``=``, ``+``,
``-`` or ``@`` was written as it was, and a spreadsheet opened ``=HYPERLINK(...)`` as a live formula (OWASP CSV
injection, a session-51 audit). ``formula_safe`` puts a quote before such a text cell (a spreadsheet shows the text,
not a formula); ``formula_unsafe`` takes exactly that quote off again, so the station reads its own export back
unchanged. The writers decide per column which cells are text: a number the station writes itself (a score, a count)
stays a number.
"""
from __future__ import annotations

import csv
from typing import Any, Callable, Collection, Iterator, Mapping

# A text cell starting with one of these is taken for a formula by Excel / LibreOffice (tab and carriage return too:
# some spreadsheets drop them and read what follows).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"


def strict_rows(reader: Any, fail: Callable[[str], Exception]) -> Iterator[Any]:
    """The rows of a ``csv.reader`` / ``csv.DictReader`` made with ``strict=True``; a malformed line raises
    ``fail(text)``, the text naming the line and what is wrong."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            hint = " (a quote opened and never closed?)" if "end of data" in str(exc) else ""
            raise fail(f"line {reader.line_num}: {exc}{hint}") from None
        yield row


def _guarded(text: str) -> bool:
    """True for a text the guard is (or, with its quote, was) about: any run of quotes, then a formula start. The
    quotes count so that a text that already starts with a quote and a formula start (``'=x``) gets one more and
    comes back as it was; every other text is written and read as it is."""
    return text.lstrip(FORMULA_GUARD).startswith(FORMULA_STARTS)


def formula_safe(text: str) -> str:
    """A text cell as a spreadsheet shows it as text: a quote put before one starting with a formula start."""
    return FORMULA_GUARD + text if _guarded(text) else text


def formula_unsafe(text: str) -> str:
    """The text ``formula_safe`` was given: its quote taken off again (only where it put one)."""
    return text[1:] if text.startswith(FORMULA_GUARD) and _guarded(text[1:]) else text


def formula_safe_row(row: Mapping[str, Any], numbers: Collection[str] = ()) -> dict[str, Any]:
    """A row for a ``csv.DictWriter`` with every text cell ``formula_safe``; the columns named in ``numbers`` hold
    numbers the station wrote itself (a negative one starts with ``-`` and stays a number)."""
    return {column: formula_safe(value) if isinstance(value, str) and column not in numbers else value
            for column, value in row.items()}
