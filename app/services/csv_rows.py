"""Rows of a CSV file a person hands the station (a label table, a trace.csv), read strictly.

Why one home: Python's lenient reader takes a quote left open as a value running to the end of the file, so every
later row was lost without a word (a session-46 probe, in both readers). Here a malformed file is an error naming
its line, with a hint where the reader ran out of data inside a quote.
"""
from __future__ import annotations

import csv
from typing import Any, Callable, Iterator


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
