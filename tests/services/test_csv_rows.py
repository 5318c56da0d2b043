"""The guard against formulas in the CSV files the station writes (a session-51 audit)."""
from __future__ import annotations

import pytest

from app.services.csv_rows import formula_safe, formula_safe_row, formula_unsafe


@pytest.mark.parametrize("text, written", [
    ("=1+2", "'=1+2"), ("+a", "'+a"), ("-3+4", "'-3+4"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("'=x", "''=x"), ("'plain", "'plain"), ("a=b", "a=b"), ("", ""), ("é", "é")])
def test_a_text_starting_like_a_formula_gets_a_quote_that_comes_off_again(text: str, written: str) -> None:
    """A session-51 audit: such a cell was a live formula in a spreadsheet; the reader gets the text back exactly."""
    assert formula_safe(text) == written
    assert formula_unsafe(written) == text


def test_the_number_columns_stay_numbers() -> None:
    """A negative score the station writes is a number, not a text to guard (decided per column)."""
    assert formula_safe_row({"score": -0.5, "offset": "-3", "who": "-me", "n": 2}, numbers=("offset",)) == {
        "score": -0.5, "offset": "-3", "who": "'-me", "n": 2}
