"""Counted nouns in what the station says: "1 image", "2 images", never "1 images" nor "image(s)" where the count
is known (a session-49 audit found both). Qt-free, so services, commands and widgets word counts alike."""
from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and ``noun``, the noun plural unless the count is one (``nouns`` where adding "s" is wrong)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
