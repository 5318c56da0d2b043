"""Counted wording: the noun (``plural``) and the word that agrees with it (``agree``) follow one rule."""
from __future__ import annotations

from app.services.wording import agree, plural


def test_plural_names_the_count_and_its_noun() -> None:
    assert plural(1, "image") == "1 image"
    assert [plural(n, "image") for n in (0, 2)] == ["0 images", "2 images"]
    assert plural(3, "class", "classes") == "3 classes"


def test_agree_picks_the_singular_only_for_one() -> None:
    assert agree(1, "is", "are") == "is"
    assert [agree(n, "is", "are") for n in (0, 2, 40)] == ["are", "are", "are"]
    assert f"{plural(1, 'key')} {agree(1, 'waits', 'wait')}" == "1 key waits"
    assert f"{plural(2, 'key')} {agree(2, 'waits', 'wait')}" == "2 keys wait"
